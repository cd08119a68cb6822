-- A refund reserves its amount in the ledger (a hold in process-transaction)
-- before the gateway is asked; the hold's transfer id is kept with the
-- refund so the gateway's answer captures or voids exactly that hold.
-- hold_source says which ledger account the hold draws on: the payment's
-- account, or SYS-REVENUE for the part of an invoice payment the invoice
-- kept. payments.amount_unapplied is the part of an invoice payment its
-- invoice did not need (credited to the account,
-- billfn.invoice.payment_unapplied): a refund of it comes from the account.

-- +goose Up
ALTER TABLE refunds ADD COLUMN ledger_hold_id uuid;
ALTER TABLE refunds ADD COLUMN hold_source text CHECK (hold_source IN ('account', 'revenue'));
ALTER TABLE payments ADD COLUMN amount_unapplied bigint NOT NULL DEFAULT 0 CHECK (amount_unapplied >= 0);

-- +goose Down
ALTER TABLE payments DROP COLUMN amount_unapplied;
ALTER TABLE refunds DROP COLUMN hold_source;
ALTER TABLE refunds DROP COLUMN ledger_hold_id;
