-- refunds.failed_at is when a refund stopped counting at its gateway: the
-- gateway's time of the news that it failed or was canceled (its event's
-- created), or when billfn learned it. A gateway's charge event carries
-- the charge's total refunded as of its own created time, and Stripe does
-- not order its events: a total created at or before a refund's failure
-- still counts that refund, and must not be read as a refund made in the
-- gateway's dashboard. Refunds that failed before this column have their
-- last update (when billfn learned it, no earlier than the gateway's time).

-- +goose Up
ALTER TABLE refunds ADD COLUMN failed_at timestamptz;
UPDATE refunds SET failed_at = updated_at WHERE status IN ('failed', 'canceled');

-- +goose Down
ALTER TABLE refunds DROP COLUMN failed_at;
