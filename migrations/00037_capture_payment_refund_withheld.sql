-- refunds.withheld is what generate-invoice's report of money an invoice
-- did not need (billfn.invoice.payment_unapplied) left out of the
-- account's credit because this refund, pending then, was to take it from
-- revenue. The refund failing (at the gateway, or its hold refused) gives
-- it back: credited to the account then, so revenue keeps none of the
-- money its invoice did not need, whichever came first.

-- +goose Up
ALTER TABLE refunds ADD COLUMN withheld bigint NOT NULL DEFAULT 0 CHECK (withheld >= 0);

-- +goose Down
ALTER TABLE refunds DROP COLUMN withheld;
