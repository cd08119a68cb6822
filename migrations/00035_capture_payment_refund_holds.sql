-- A refund reserves its amount in the ledger (a hold in process-transaction)
-- before the gateway is asked; the hold's transfer id is kept with the
-- refund so the gateway's answer captures or voids exactly that hold.

-- +goose Up
ALTER TABLE refunds ADD COLUMN ledger_hold_id uuid;

-- +goose Down
ALTER TABLE refunds DROP COLUMN ledger_hold_id;
