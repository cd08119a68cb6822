-- capture-payment's read model of the invoices it is asked to collect: the
-- account, currency, total, what is paid and due, and the status, learnt
-- from generate-invoice's billing-events (finalized, paid, voided,
-- uncollectible, overdue, payment_retry_requested) and read through from
-- generate-invoice's GET /invoices/{id} for an invoice whose event has not
-- arrived yet. A payment naming an invoice is checked against it, and the
-- row is locked while a payment for the invoice is started, so at most one
-- is in flight.
--
-- Monotonic: status_rank never decreases (draft 0, open 1, uncollectible 2,
-- paid and void 3), and within a rank amount_paid never decreases, so
-- replays and reordered events change nothing.

-- +goose Up
CREATE TABLE payment_invoices (
    id          uuid        PRIMARY KEY,
    account_id  uuid        NOT NULL,
    user_id     uuid,
    currency    text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total       bigint      NOT NULL CHECK (total >= 0),
    amount_paid bigint      NOT NULL DEFAULT 0 CHECK (amount_paid >= 0),
    amount_due  bigint      NOT NULL DEFAULT 0 CHECK (amount_due >= 0),
    status      text        NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    status_rank int         NOT NULL,
    source      text        NOT NULL,                          -- event | read_through
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE payment_invoices;
