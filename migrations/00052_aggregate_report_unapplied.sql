-- aggregate-report: money a payment brought that its invoice did not need
-- (billfn.invoice.payment_unapplied from generate-invoice; capture-payment
-- credits it to the customer's account). One row per event, derived from
-- report_events like every other table here; the daily reconciliation
-- lists the rows of its day.

-- +goose Up
CREATE TABLE report_unapplied (
    source         text        NOT NULL,
    event_id       text        NOT NULL,
    payment_id     uuid        NOT NULL,
    invoice_id     uuid        NOT NULL,
    account_id     uuid        NOT NULL,  -- the account credited
    user_id        text        NOT NULL DEFAULT '',
    currency       text        NOT NULL CHECK (length(currency) = 3),
    amount         bigint      NOT NULL,
    reason         text        NOT NULL,  -- invoice_paid | invoice_void | overpayment | currency_mismatch
    invoice_status text        NOT NULL DEFAULT '',
    at             timestamptz NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX report_unapplied_at_idx ON report_unapplied (at);

-- +goose Down
DROP TABLE report_unapplied;
