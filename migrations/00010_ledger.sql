-- process-transaction's ledger: accounts (the original billing_accounts),
-- transfers (the original transactions: one money movement between two
-- accounts, kept even when rejected) and postings (immutable double-entry
-- lines, one debit and one credit per posted amount).
--
-- Sign convention: balance = credits − debits. A transfer debits "from" and
-- credits "to", so for every currency the balances sum to zero; money comes
-- into the system through accounts allowed to go negative (SYS-EXTERNAL-*).

-- +goose Up
CREATE TABLE accounts (
    id             uuid        PRIMARY KEY,
    user_id        uuid        NOT NULL,
    account_number text        NOT NULL UNIQUE CHECK (account_number ~ '^[A-Z0-9][A-Z0-9-]{3,33}$'),
    currency       char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance        bigint      NOT NULL DEFAULT 0,                  -- posted
    held           bigint      NOT NULL DEFAULT 0 CHECK (held >= 0), -- open holds (pending debits)
    allow_negative boolean     NOT NULL DEFAULT false,
    status         text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    version        bigint      NOT NULL DEFAULT 1,
    metadata       jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- The last line of defence: no code path can overdraw an account.
    CONSTRAINT accounts_no_overdraft CHECK (allow_negative OR balance - held >= 0)
);
-- The original index on billing_accounts(user_id), keyset-ready.
CREATE INDEX accounts_user_idx ON accounts (user_id, id);

CREATE TABLE transfers (
    id              uuid        PRIMARY KEY,                         -- UUIDv7: time-ordered
    from_account_id uuid        NOT NULL,                            -- accounts(id), see below
    to_account_id   uuid        NOT NULL,
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        char(3)     NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'posted', 'rejected', 'held', 'captured', 'voided', 'expired')),
    reject_reason   text,
    pending         boolean     NOT NULL DEFAULT false,              -- a hold (two-phase)
    captured_amount bigint      NOT NULL DEFAULT 0,
    expires_at      timestamptz,
    description     text        NOT NULL DEFAULT '',
    reference_id    text        NOT NULL DEFAULT '',
    metadata        jsonb,
    from_balance    bigint,                                          -- balances right after, as answered
    to_balance      bigint,
    from_available  bigint,
    to_available    bigint,
    idem_scope      text        NOT NULL,                            -- caller (or event source)
    idem_key        text        NOT NULL,                            -- Idempotency-Key (or event id)
    request_hash    bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    posted_at       timestamptz,
    CHECK (from_account_id <> to_account_id),
    CHECK (captured_amount BETWEEN 0 AND amount),
    CHECK ((status = 'rejected') = (reject_reason IS NOT NULL)),
    CHECK (pending OR status IN ('pending', 'posted', 'rejected'))
);
CREATE UNIQUE INDEX transfers_idempotency_idx ON transfers (idem_scope, idem_key);
-- Account history, newest first (the original (account_id, status,
-- created_at) index, split by side so each side is one index range scan).
CREATE INDEX transfers_from_idx ON transfers (from_account_id, created_at DESC, id DESC);
CREATE INDEX transfers_to_idx ON transfers (to_account_id, created_at DESC, id DESC);
-- The hold-expiry sweep reads only open holds with a deadline.
CREATE INDEX transfers_expiring_idx ON transfers (expires_at) WHERE status = 'held' AND expires_at IS NOT NULL;
-- The original partial index for recent activity: what is still in flight.
CREATE INDEX transfers_pending_idx ON transfers (created_at DESC) WHERE status = 'pending';

-- Transfers and postings carry no foreign keys, on purpose: they are written
-- only in a transaction that has just locked both accounts (FOR UPDATE), and
-- accounts are never deleted (the trigger below refuses it; an account is
-- closed instead), so a reference cannot dangle. The foreign-key triggers
-- cost a quarter of the database's CPU per transfer on the hot path. The
-- ledger invariant tests check that every reference resolves and that
-- postings add up.
CREATE TABLE postings (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id   uuid        NOT NULL,
    account_id    uuid        NOT NULL,
    amount        bigint      NOT NULL CHECK (amount <> 0),          -- + credit, − debit
    balance_after bigint      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX postings_account_idx ON postings (account_id, id);

-- +goose StatementBegin
CREATE FUNCTION accounts_are_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'accounts are never deleted: close the account instead';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER accounts_never_deleted BEFORE DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION accounts_are_never_deleted();

-- +goose StatementBegin
CREATE FUNCTION postings_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'postings are immutable: correct a mistake with a new transfer';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION postings_are_immutable();

-- +goose Down
DROP TABLE postings;
DROP FUNCTION postings_are_immutable();
DROP TABLE transfers;
DROP TABLE accounts;
DROP FUNCTION accounts_are_never_deleted();
