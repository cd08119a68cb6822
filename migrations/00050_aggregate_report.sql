-- aggregate-report's tables. The function reads only these (and the shared
-- platform tables through shared/). Everything here is derived from
-- report_events, the log of every event the function aggregated, which is
-- written in the same transaction as the rollups; cmd/report rebuild
-- recomputes the rest from it.

-- +goose Up
CREATE TABLE report_events (
    seq         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- application order
    source      text        NOT NULL,
    id          text        NOT NULL,
    type        text        NOT NULL,
    time        timestamptz NOT NULL,                 -- CloudEvent time (receipt time when absent)
    subject     text        NOT NULL DEFAULT '',
    data        jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, id)
);

-- Additive rollups for everyone: grain 'h' (hour) and 'd' (day), UTC.
CREATE TABLE report_rollups (
    grain    char(1) NOT NULL CHECK (grain IN ('h', 'd')),
    bucket   timestamptz NOT NULL,
    currency text    NOT NULL CHECK (length(currency) = 3),
    metric   text    NOT NULL,
    dim      text    NOT NULL DEFAULT '',
    count    bigint  NOT NULL,
    amount   bigint  NOT NULL,
    PRIMARY KEY (grain, bucket, currency, metric, dim)
);

-- The same rollups per account and day: customers' figures and top accounts.
CREATE TABLE report_account_rollups (
    account_id uuid   NOT NULL,
    day        date   NOT NULL,
    currency   text   NOT NULL CHECK (length(currency) = 3),
    metric     text   NOT NULL,
    dim        text   NOT NULL DEFAULT '',
    count      bigint NOT NULL,
    amount     bigint NOT NULL,
    PRIMARY KEY (account_id, day, currency, metric, dim)
);
-- Ranking accounts by volume reads only this index.
CREATE INDEX report_account_rollups_rank_idx ON report_account_rollups (currency, metric, day)
    INCLUDE (account_id, amount, count);

-- Account ownership, learnt from billfn.account.created/updated.
CREATE TABLE report_accounts (
    account_id uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    number     text        NOT NULL DEFAULT '',
    currency   text        NOT NULL DEFAULT '',
    status     text        NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL
);
CREATE INDEX report_accounts_user_idx ON report_accounts (user_id);

-- Current MRR of each subscription, to classify the next movement.
CREATE TABLE report_subscriptions (
    subscription_id uuid        PRIMARY KEY,
    account_id      uuid        NOT NULL,
    currency        text        NOT NULL,
    mrr             bigint      NOT NULL,  -- effective: 0 unless active
    status          text        NOT NULL,
    had_mrr         boolean     NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- Which account and gateway a payment belongs to (disputes name only the payment).
CREATE TABLE report_payments (
    payment_id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    gateway    text NOT NULL,
    currency   text NOT NULL
);

-- Disputes seen, so each counts once however many updates it gets.
CREATE TABLE report_disputes (
    gateway    text        NOT NULL,
    object_id  text        NOT NULL,
    payment_id text        NOT NULL DEFAULT '',
    currency   text        NOT NULL,
    amount     bigint      NOT NULL,
    opened_at  timestamptz NOT NULL,
    PRIMARY KEY (gateway, object_id)
);

-- Invoice receivables for aging as of any date.
CREATE TABLE report_invoices (
    invoice_id   uuid        PRIMARY KEY,
    account_id   uuid        NOT NULL,
    currency     text        NOT NULL,
    total        bigint      NOT NULL,
    amount_due   bigint      NOT NULL,   -- receivable when finalized
    due_date     date,
    finalized_at timestamptz,
    closed_at    timestamptz,            -- paid, voided or uncollectible
    status       text        NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX report_invoices_open_idx ON report_invoices (finalized_at) WHERE finalized_at IS NOT NULL;

-- Captures applied to invoices (reduce the receivable from their time on).
CREATE TABLE report_invoice_payments (
    source     text        NOT NULL,
    event_id   text        NOT NULL,
    invoice_id uuid        NOT NULL,
    at         timestamptz NOT NULL,
    amount     bigint      NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX report_invoice_payments_invoice_idx ON report_invoice_payments (invoice_id, at);
CREATE INDEX report_invoice_payments_at_idx ON report_invoice_payments (at);

-- Cash reconciliation entries: the gateway side (captures, refunds) and the
-- ledger side (transfers with metadata.kind payment_capture or refund).
CREATE TABLE report_recon (
    source     text        NOT NULL,
    event_id   text        NOT NULL,
    side       text        NOT NULL CHECK (side IN ('gateway', 'ledger')),
    kind       text        NOT NULL CHECK (kind IN ('capture', 'refund')),
    payment_id text        NOT NULL,
    account_id uuid,
    gateway    text        NOT NULL,
    currency   text        NOT NULL,
    amount     bigint      NOT NULL,
    status     text        NOT NULL,     -- posted | rejected (ledger), succeeded (gateway)
    ref        text        NOT NULL,     -- transfer id, refund id or event id
    at         timestamptz NOT NULL,
    PRIMARY KEY (source, event_id)
);
CREATE INDEX report_recon_at_idx ON report_recon (at);
CREATE INDEX report_recon_payment_idx ON report_recon (payment_id, at);

-- A version per day that changes whenever events of that day land: cached
-- reports are keyed by the versions of the days they read.
CREATE SEQUENCE report_change_seq;
CREATE TABLE report_changes (
    day     date   PRIMARY KEY,
    version bigint NOT NULL
);

-- Reports computed ahead of time by the schedule tick (one indexed read).
CREATE TABLE report_snapshots (
    kind       text        NOT NULL,
    day        date        NOT NULL,
    body       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, day)
);

-- +goose Down
DROP TABLE report_snapshots;
DROP TABLE report_changes;
DROP SEQUENCE report_change_seq;
DROP TABLE report_recon;
DROP TABLE report_invoice_payments;
DROP TABLE report_invoices;
DROP TABLE report_disputes;
DROP TABLE report_payments;
DROP TABLE report_subscriptions;
DROP TABLE report_accounts;
DROP TABLE report_account_rollups;
DROP TABLE report_rollups;
DROP TABLE report_events;
