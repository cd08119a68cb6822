-- generate-invoice: invoices (the original table, reshaped), their line
-- items, tax rates, coupons, subscriptions, invoice number sequences, the
-- payments recorded against invoices and asynchronous invoice requests.
-- Money is BIGINT minor units beside an ISO 4217 code; percentages are
-- BIGINT ten-thousandths of a percent (8.875% = 88750); quantities are
-- BIGINT millionths (1.5 = 1500000).

-- +goose Up
CREATE TABLE tax_rates (
    id            uuid        PRIMARY KEY,
    display_name  text        NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    jurisdiction  text        NOT NULL DEFAULT '',
    country       text        NOT NULL DEFAULT '',
    state         text        NOT NULL DEFAULT '',
    description   text        NOT NULL DEFAULT '',
    percentage_e4 bigint      NOT NULL CHECK (percentage_e4 BETWEEN 0 AND 1000000),
    inclusive     boolean     NOT NULL,
    compound      boolean     NOT NULL DEFAULT false,
    metadata      jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE coupons (
    id                 text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name               text        NOT NULL DEFAULT '',
    percent_off_e4     bigint      CHECK (percent_off_e4 > 0 AND percent_off_e4 <= 1000000),
    amount_off         bigint      CHECK (amount_off > 0),
    currency           text,
    duration           text        NOT NULL CHECK (duration IN ('once', 'repeating', 'forever')),
    duration_in_months int         CHECK (duration_in_months BETWEEN 1 AND 1200),
    max_redemptions    int         CHECK (max_redemptions > 0),
    times_redeemed     int         NOT NULL DEFAULT 0,
    redeem_by          timestamptz,
    metadata           jsonb       NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((percent_off_e4 IS NULL) <> (amount_off IS NULL)),
    CHECK ((amount_off IS NULL) = (currency IS NULL)),
    CHECK ((duration = 'repeating') = (duration_in_months IS NOT NULL)),
    CHECK (max_redemptions IS NULL OR times_redeemed <= max_redemptions)
);

-- One row per number series ('INV-2026'); the finalizing transaction bumps
-- it, so a rolled-back finalization leaves no gap and concurrent ones queue
-- on the row lock.
CREATE TABLE invoice_number_sequences (
    prefix     text   PRIMARY KEY,
    last_value bigint NOT NULL CHECK (last_value >= 0)
);

CREATE TABLE subscriptions (
    id                   uuid        PRIMARY KEY,
    account_id           uuid        NOT NULL,
    owner_user_id        uuid        NOT NULL,
    status               text        NOT NULL CHECK (status IN ('trialing', 'active', 'canceled')),
    plan_name            text        NOT NULL,
    plan_amount          bigint      NOT NULL CHECK (plan_amount >= 0),
    currency             text        NOT NULL,
    interval             text        NOT NULL CHECK (interval IN ('day', 'week', 'month', 'year')),
    interval_count       int         NOT NULL CHECK (interval_count BETWEEN 1 AND 365),
    start_at             timestamptz NOT NULL,
    trial_end            timestamptz,
    billing_start        timestamptz NOT NULL,  -- the start, or the trial end
    cycle_anchor         timestamptz NOT NULL,  -- boundary 0 of the cycle
    anchor_day           int         NOT NULL CHECK (anchor_day BETWEEN 1 AND 31),
    periods_billed       int         NOT NULL DEFAULT 0 CHECK (periods_billed >= 0),
    next_billing_at      timestamptz,           -- start of the next period to bill; NULL once canceled
    current_period_start timestamptz,
    current_period_end   timestamptz,
    tax_rate_ids         uuid[]      NOT NULL DEFAULT '{}',
    coupon_id            text        REFERENCES coupons (id),
    coupon_start         timestamptz,
    coupon_uses          int         NOT NULL DEFAULT 0,
    collection_method    text        NOT NULL CHECK (collection_method IN ('charge_automatically', 'send_invoice')),
    net_terms_days       int         NOT NULL DEFAULT 0 CHECK (net_terms_days BETWEEN 0 AND 365),
    customer             jsonb       NOT NULL DEFAULT '{}',
    metadata             jsonb       NOT NULL DEFAULT '{}',
    pending_lines        jsonb       NOT NULL DEFAULT '[]', -- proration lines for the next invoice
    cancel_at            timestamptz,
    canceled_at          timestamptz,
    latest_invoice_id    uuid,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_due_idx ON subscriptions (next_billing_at) WHERE status <> 'canceled';
CREATE INDEX subscriptions_cancel_at_idx ON subscriptions (cancel_at) WHERE status <> 'canceled' AND cancel_at IS NOT NULL;
CREATE INDEX subscriptions_owner_idx ON subscriptions (owner_user_id, id);
CREATE INDEX subscriptions_account_idx ON subscriptions (account_id, id);

CREATE TABLE invoices (
    id                      uuid        PRIMARY KEY,          -- UUIDv7: lists are ordered by id
    account_id              uuid        NOT NULL,             -- a process-transaction account
    owner_user_id           uuid        NOT NULL,             -- who may see it (JWT subject)
    subscription_id         uuid        REFERENCES subscriptions (id),
    period_start            timestamptz,                      -- set for subscription cycle invoices
    period_end              timestamptz,
    billing_reason          text        NOT NULL CHECK (billing_reason IN ('manual', 'subscription_cycle', 'subscription_update')),
    number                  text        UNIQUE,               -- assigned at finalization
    number_prefix           text        NOT NULL,
    status                  text        NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void', 'uncollectible')),
    currency                text        NOT NULL,
    customer                jsonb       NOT NULL DEFAULT '{}',
    memo                    text        NOT NULL DEFAULT '',
    metadata                jsonb       NOT NULL DEFAULT '{}',
    collection_method       text        NOT NULL CHECK (collection_method IN ('charge_automatically', 'send_invoice')),
    net_terms_days          int         CHECK (net_terms_days BETWEEN 0 AND 365),
    due_date                date,
    coupon_id               text,
    discounts               jsonb       NOT NULL DEFAULT '[]', -- invoice-level discounts with their amounts
    subtotal                bigint      NOT NULL DEFAULT 0,
    discount                bigint      NOT NULL DEFAULT 0,
    tax                     bigint      NOT NULL DEFAULT 0,
    tax_exclusive           bigint      NOT NULL DEFAULT 0,
    total_excluding_tax     bigint      NOT NULL DEFAULT 0,
    total                   bigint      NOT NULL DEFAULT 0 CHECK (total >= 0),
    amount_paid             bigint      NOT NULL DEFAULT 0 CHECK (amount_paid >= 0),
    amount_refunded         bigint      NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    amount_due              bigint      NOT NULL DEFAULT 0 CHECK (amount_due >= 0),
    tax_breakdown           jsonb       NOT NULL DEFAULT '[]',
    line_count              int         NOT NULL DEFAULT 0,
    overdue                 boolean     NOT NULL DEFAULT false,
    overdue_at              timestamptz,
    dunning_attempts        int         NOT NULL DEFAULT 0,
    next_dunning_at         timestamptz,
    payment_failures        int         NOT NULL DEFAULT 0,
    last_payment_error      text,
    last_payment_failed_at  timestamptz,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL,
    finalized_at            timestamptz,
    paid_at                 timestamptz,
    voided_at               timestamptz,
    marked_uncollectible_at timestamptz,
    CHECK (status = 'draft' OR number IS NOT NULL),
    -- a subscription period is invoiced exactly once
    CONSTRAINT invoices_subscription_period_key UNIQUE (subscription_id, period_start)
);
CREATE INDEX invoices_owner_idx ON invoices (owner_user_id, id);
CREATE INDEX invoices_account_idx ON invoices (account_id, id);
CREATE INDEX invoices_status_idx ON invoices (status, id);
CREATE INDEX invoices_due_date_idx ON invoices (due_date);
-- the overdue sweep reads open invoices not yet flagged, by due date
CREATE INDEX invoices_overdue_scan_idx ON invoices (due_date) WHERE status = 'open' AND NOT overdue;
CREATE INDEX invoices_dunning_idx ON invoices (next_dunning_at) WHERE next_dunning_at IS NOT NULL;

CREATE TABLE invoice_line_items (
    id              uuid    PRIMARY KEY,
    invoice_id      uuid    NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    position        int     NOT NULL,
    description     text    NOT NULL,
    quantity_e6     bigint  NOT NULL CHECK (quantity_e6 > 0),
    unit_amount     bigint  NOT NULL,
    amount          bigint  NOT NULL,           -- quantity x unit_amount, half-even
    discount_def    jsonb,                      -- the line's own discount as given
    discount_amount bigint  NOT NULL DEFAULT 0, -- line discount + share of invoice discounts
    taxable_amount  bigint  NOT NULL,           -- net of discounts and taxes
    tax_amount      bigint  NOT NULL DEFAULT 0,
    total           bigint  NOT NULL,
    taxes           jsonb   NOT NULL DEFAULT '[]', -- rate snapshots with their amounts
    proration       boolean NOT NULL DEFAULT false,
    period_start    timestamptz,
    period_end      timestamptz,
    metadata        jsonb   NOT NULL DEFAULT '{}',
    UNIQUE (invoice_id, position)
);

-- Money received against an invoice: one row per gateway payment (its
-- cumulative captured amount, so duplicate or reordered capture events are
-- harmless) or per out-of-band payment.
CREATE TABLE invoice_payments (
    invoice_id      uuid        NOT NULL REFERENCES invoices (id),
    payment_id      text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('gateway', 'out_of_band')),
    amount_captured bigint      NOT NULL DEFAULT 0 CHECK (amount_captured >= 0),
    currency        text        NOT NULL,
    reference       text        NOT NULL DEFAULT '',
    failures        int         NOT NULL DEFAULT 0,
    last_failure    text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (invoice_id, payment_id)
);

CREATE TABLE invoice_refunds (
    refund_id  text        PRIMARY KEY,
    invoice_id uuid        NOT NULL REFERENCES invoices (id),
    payment_id text        NOT NULL,
    amount     bigint      NOT NULL CHECK (amount > 0),
    currency   text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoice_refunds_invoice_idx ON invoice_refunds (invoice_id);

-- billfn.invoice.requested, from Prefer: respond-async or from any
-- producer: its outcome, queryable at GET /invoice-requests/{id}.
CREATE TABLE invoice_requests (
    id            text        NOT NULL,           -- the CloudEvent id
    source        text        NOT NULL,           -- the CloudEvent source
    owner_user_id uuid,
    account_id    uuid,
    status        text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    invoice_id    uuid,
    problem       jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (source, id)
);
CREATE INDEX invoice_requests_id_idx ON invoice_requests (id);

-- +goose Down
DROP TABLE invoice_requests;
DROP TABLE invoice_refunds;
DROP TABLE invoice_payments;
DROP TABLE invoice_line_items;
DROP TABLE invoices;
DROP TABLE subscriptions;
DROP TABLE invoice_number_sequences;
DROP TABLE coupons;
DROP TABLE tax_rates;
