-- process-transaction: the ledger refuses TRUNCATE as it refuses DELETE.
--
-- Accounts are never deleted (00010) and, since the postings became a view
-- of the transfers, neither are transfers (00012): both refuse DELETE with
-- a statement trigger. TRUNCATE removes every row without firing a DELETE
-- trigger, so `TRUNCATE transfers`, or `TRUNCATE accounts CASCADE` (which
-- takes the transfers and postings with it), emptied the books without a
-- word. A BEFORE TRUNCATE trigger on each table refuses it with the same
-- message (TestTheLedgerIsNeverTruncated).

-- +goose Up
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION transfers_are_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'transfers are never deleted: correct a mistake with a new transfer';
    END IF;
    RAISE EXCEPTION 'transfer % is %, which is final: correct a mistake with a new transfer', OLD.id, OLD.status;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER transfers_never_truncated BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION transfers_are_final();
CREATE TRIGGER accounts_never_truncated BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION accounts_are_never_deleted();

-- +goose Down
DROP TRIGGER accounts_never_truncated ON accounts;
DROP TRIGGER transfers_never_truncated ON transfers;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION transfers_are_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'transfers are never deleted: correct a mistake with a new transfer';
    END IF;
    RAISE EXCEPTION 'transfer % is %, which is final: correct a mistake with a new transfer', OLD.id, OLD.status;
END;
$$;
-- +goose StatementEnd
