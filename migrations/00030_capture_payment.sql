-- capture-payment: payments (Stripe PaymentIntent semantics), their gateway
-- attempts, refunds and saved payment methods (gateway tokens only, never a
-- card number).

-- +goose Up
CREATE TABLE payments (
    id                    uuid        PRIMARY KEY,
    account_id            uuid        NOT NULL,                 -- a process-transaction account
    user_id               uuid        NOT NULL,                 -- the owner (JWT subject of a customer)
    invoice_id            uuid,
    amount                bigint      NOT NULL CHECK (amount > 0),
    currency              text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status                text        NOT NULL CHECK (status IN ('requires_payment_method', 'requires_confirmation',
                              'requires_action', 'processing', 'requires_capture', 'succeeded', 'canceled')),
    capture_method        text        NOT NULL CHECK (capture_method IN ('automatic', 'manual')),
    payment_method        text,                                 -- a gateway token or a saved method id
    gateway               text,                                 -- gateway of the current attempt
    gateway_payment_id    text,                                 -- its object id (pi_…)
    requested_gateway     text,                                 -- the caller's choice, if any
    amount_capturable     bigint      NOT NULL DEFAULT 0 CHECK (amount_capturable >= 0),
    amount_captured       bigint      NOT NULL DEFAULT 0 CHECK (amount_captured >= 0),
    amount_refunded       bigint      NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    amount_refund_pending bigint      NOT NULL DEFAULT 0 CHECK (amount_refund_pending >= 0),
    capture_count         int         NOT NULL DEFAULT 0,       -- ledger posting sequence
    refund_count          int         NOT NULL DEFAULT 0,
    attempt_count         int         NOT NULL DEFAULT 0,
    announced             boolean     NOT NULL DEFAULT true,    -- payment.created emitted (false while a
                                                                -- creation's first attempt runs)
    pending_op            text,                                 -- capture|cancel while the gateway call runs
    op_started_at         timestamptz,
    description           text        NOT NULL DEFAULT '',
    metadata              jsonb       NOT NULL DEFAULT '{}',
    last_error            jsonb,
    cancellation_reason   text,
    gateway_updated_at    timestamptz,                          -- time of the newest gateway state applied
    disputed_at           timestamptz,
    authorized_at         timestamptz,
    captured_at           timestamptz,
    canceled_at           timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    CHECK (amount_captured <= amount),
    CHECK (amount_refunded + amount_refund_pending <= amount_captured)
);
CREATE INDEX payments_account_idx ON payments (account_id, created_at DESC, id DESC);
CREATE INDEX payments_user_idx ON payments (user_id, created_at DESC, id DESC);
CREATE INDEX payments_list_idx ON payments (created_at DESC, id DESC);
CREATE INDEX payments_invoice_idx ON payments (invoice_id, created_at DESC, id DESC) WHERE invoice_id IS NOT NULL;
CREATE UNIQUE INDEX payments_gateway_object_idx ON payments (gateway, gateway_payment_id) WHERE gateway_payment_id IS NOT NULL;
-- The reconciliation sweep reads only payments waiting on a gateway.
CREATE INDEX payments_unsettled_idx ON payments (updated_at) WHERE status = 'processing' OR pending_op IS NOT NULL;
-- Authorizations that may expire.
CREATE INDEX payments_authorized_idx ON payments (authorized_at) WHERE status = 'requires_capture';

CREATE TABLE payment_attempts (
    payment_id         uuid        NOT NULL REFERENCES payments (id),
    n                  int         NOT NULL,
    gateway            text        NOT NULL,
    payment_method     text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('pending', 'processing', 'requires_action',
                           'requires_capture', 'succeeded', 'failed', 'canceled')),
    gateway_payment_id text,
    failure_code       text,                                    -- the gateway's own code
    decline_code       text,
    failure_reason     text,                                    -- normalized reason
    failure_message    text,
    gateway_error      boolean     NOT NULL DEFAULT false,      -- failed on the gateway's side (failover)
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz,
    PRIMARY KEY (payment_id, n)
);

CREATE TABLE refunds (
    id                uuid        PRIMARY KEY,
    payment_id        uuid        NOT NULL REFERENCES payments (id),
    n                 int         NOT NULL,
    account_id        uuid        NOT NULL,
    user_id           uuid        NOT NULL,
    invoice_id        uuid,
    amount            bigint      NOT NULL CHECK (amount > 0),
    currency          text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('pending', 'requires_action', 'succeeded', 'failed', 'canceled')),
    reason            text        NOT NULL DEFAULT '',
    gateway           text        NOT NULL,
    gateway_refund_id text,
    failure_reason    text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    UNIQUE (payment_id, n)
);
CREATE INDEX refunds_payment_idx ON refunds (payment_id, created_at, id);
CREATE UNIQUE INDEX refunds_gateway_object_idx ON refunds (gateway, gateway_refund_id) WHERE gateway_refund_id IS NOT NULL;
CREATE INDEX refunds_pending_idx ON refunds (updated_at) WHERE status = 'pending';

CREATE TABLE payment_methods (
    id         uuid        PRIMARY KEY,
    account_id uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    gateway    text,                                           -- null: usable at any gateway
    token      text        NOT NULL,                           -- the gateway's token (pm_…), never a PAN
    brand      text        NOT NULL DEFAULT '',
    last4      text        NOT NULL DEFAULT '' CHECK (last4 ~ '^([0-9]{4})?$'),
    exp_month  int         CHECK (exp_month BETWEEN 1 AND 12),
    exp_year   int         CHECK (exp_year BETWEEN 2000 AND 2200),
    is_default boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL
);
CREATE INDEX payment_methods_account_idx ON payment_methods (account_id, created_at, id);
CREATE UNIQUE INDEX payment_methods_default_idx ON payment_methods (account_id) WHERE is_default;

-- +goose Down
DROP TABLE payment_methods;
DROP TABLE refunds;
DROP TABLE payment_attempts;
DROP TABLE payments;
