-- generate-invoice's read model of the accounts it bills: who owns each,
-- its currency and status, learnt from billfn.account.created/updated
-- (user-events) and read through from process-transaction for an account
-- whose event has not arrived yet. Authorization is decided from it.

-- +goose Up
CREATE TABLE invoice_accounts (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    currency   text        NOT NULL,
    status     text        NOT NULL,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoice_accounts_user_idx ON invoice_accounts (user_id);

-- +goose Down
DROP TABLE invoice_accounts;
