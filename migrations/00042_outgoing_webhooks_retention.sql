-- handle-webhook's outgoing delivery log is pruned (issue 18): a finished
-- delivery (succeeded or failed) is deleted WEBHOOK_DELIVERY_RETENTION after
-- its last attempt, by the tick, oldest first; this index finds them.

-- +goose Up
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (last_attempt_at) WHERE status <> 'pending';

-- +goose Down
DROP INDEX webhook_deliveries_finished_idx;
