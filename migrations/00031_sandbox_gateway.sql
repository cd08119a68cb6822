-- capture-payment's built-in sandbox gateway keeps its own books, as a real
-- gateway would: its payment intents, refunds and the webhooks it owes
-- handle-webhook. billfn's tables never reference these (the sandbox is
-- reached only through the gateway interface).

-- +goose Up
CREATE TABLE sandbox_intents (
    id                text        PRIMARY KEY,                 -- pi_sbx_…
    payment_id        uuid        NOT NULL,                    -- metadata billfn_payment_id
    amount            bigint      NOT NULL,
    currency          text        NOT NULL,                    -- lower case, as Stripe
    capture_method    text        NOT NULL,
    payment_method    text        NOT NULL,
    status            text        NOT NULL,
    amount_capturable bigint      NOT NULL DEFAULT 0,
    amount_received   bigint      NOT NULL DEFAULT 0,
    amount_refunded   bigint      NOT NULL DEFAULT 0,
    last_error        jsonb,
    confirm_key       text        NOT NULL,                    -- idempotency key of the last confirmation
    settle_at         timestamptz,                             -- pm_sandbox_delayed: when it settles
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX sandbox_intents_settle_idx ON sandbox_intents (settle_at) WHERE settle_at IS NOT NULL;

CREATE TABLE sandbox_refunds (
    id         text        PRIMARY KEY,                        -- re_sbx_…
    intent_id  text        NOT NULL REFERENCES sandbox_intents (id),
    key        text        NOT NULL UNIQUE,                    -- idempotency key
    amount     bigint      NOT NULL,
    status     text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE sandbox_webhooks (
    id         text        PRIMARY KEY,                        -- evt_sbx_…
    type       text        NOT NULL,
    payload    bytea       NOT NULL,                           -- the Stripe-shaped event body
    created_at timestamptz NOT NULL,
    sent_at    timestamptz,
    attempts   int         NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX sandbox_webhooks_unsent_idx ON sandbox_webhooks (created_at) WHERE sent_at IS NULL;

-- +goose Down
DROP TABLE sandbox_webhooks;
DROP TABLE sandbox_refunds;
DROP TABLE sandbox_intents;
