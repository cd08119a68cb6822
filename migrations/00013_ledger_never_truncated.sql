-- process-transaction: the ledger refuses TRUNCATE as it refuses DELETE.
--
-- Accounts are never deleted (00010) and, since the postings became a view
-- of the transfers, neither are transfers (00012): both refuse DELETE with
-- a statement trigger. TRUNCATE removes every row without firing a DELETE
-- trigger, so `TRUNCATE transfers`, or `TRUNCATE accounts CASCADE` (which
-- takes the transfers with it), emptied the books without a word. A
-- BEFORE TRUNCATE trigger on each table refuses it, naming the table
-- (TestTheLedgerIsNeverTruncated).

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION ledger_is_never_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are never deleted: TRUNCATE is refused like DELETE', TG_TABLE_NAME;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER transfers_never_truncated BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_never_truncated();
CREATE TRIGGER accounts_never_truncated BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_never_truncated();

-- +goose Down
DROP TRIGGER accounts_never_truncated ON accounts;
DROP TRIGGER transfers_never_truncated ON transfers;
DROP FUNCTION ledger_is_never_truncated();
