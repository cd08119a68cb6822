-- process-transaction: postings are a view of the transfers that post them.
--
-- A posted transfer (or a captured hold) is one row that names both sides:
-- the account debited, the account credited, the amount, and each side's
-- balance right after. The two postings the table held per posted transfer
-- said the same again: two more heap rows and two more index entries on
-- every transfer, the ledger's hottest write, written by no query and read
-- only by operators and the ledger's invariant checks (make bench, issue 20:
-- 9 of the 15 rows and index entries a batched transfer wrote were not
-- transfers). This is TigerBeetle's model: a transfer is the double entry
-- (debit_account_id, credit_account_id, amount); its postings are derived.
--
-- The view has the table's columns (without its identity id): one debit
-- (amount < 0) and one credit per transfer that moved money — posted, its
-- amount; captured, the amount captured — at the time it moved.
-- Immutability moves with them: a transfer in a final state can no longer
-- change (transfers_final_immutable), and no transfer is ever deleted, so
-- a posting, once there, stays as it was.
--
-- Up refuses to drop stored postings that the view would not give back
-- (a posting without its transfer, or one that differs): nothing is lost
-- silently. Down stores them again from the view.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION ledger_postings_view_check() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    WITH derived AS (
        SELECT id AS transfer_id, from_account_id AS account_id,
               -(CASE WHEN status = 'captured' THEN captured_amount ELSE amount END) AS amount, from_balance AS balance_after
          FROM transfers WHERE status IN ('posted', 'captured')
        UNION ALL
        SELECT id, to_account_id, CASE WHEN status = 'captured' THEN captured_amount ELSE amount END, to_balance
          FROM transfers WHERE status IN ('posted', 'captured')
    ), stored AS (
        SELECT transfer_id, account_id, amount, balance_after FROM postings
    )
    SELECT count(*) INTO n FROM ((TABLE stored EXCEPT ALL TABLE derived) UNION ALL (TABLE derived EXCEPT ALL TABLE stored)) d;
    IF n > 0 THEN
        RAISE EXCEPTION '% postings differ from the transfers that post them: reconcile them before this migration', n;
    END IF;
END;
$$;
-- +goose StatementEnd
SELECT ledger_postings_view_check();
DROP FUNCTION ledger_postings_view_check();

DROP TABLE postings;
DROP FUNCTION postings_are_immutable();

CREATE VIEW postings AS
SELECT id AS transfer_id, from_account_id AS account_id,
       -(CASE WHEN status = 'captured' THEN captured_amount ELSE amount END) AS amount,
       from_balance AS balance_after, posted_at AS created_at
  FROM transfers WHERE status IN ('posted', 'captured')
UNION ALL
SELECT id, to_account_id, CASE WHEN status = 'captured' THEN captured_amount ELSE amount END,
       to_balance, posted_at
  FROM transfers WHERE status IN ('posted', 'captured');

-- +goose StatementBegin
CREATE FUNCTION transfers_are_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'transfers are never deleted: correct a mistake with a new transfer';
    END IF;
    RAISE EXCEPTION 'transfer % is %, which is final: correct a mistake with a new transfer', OLD.id, OLD.status;
END;
$$;
-- +goose StatementEnd
-- Only updates of final rows call the function (the WHEN is evaluated
-- in place): deciding a pending transfer or resolving a hold costs nothing.
CREATE TRIGGER transfers_final_immutable BEFORE UPDATE ON transfers
    FOR EACH ROW WHEN (OLD.status IN ('posted', 'captured', 'rejected', 'voided', 'expired'))
    EXECUTE FUNCTION transfers_are_final();
CREATE TRIGGER transfers_never_deleted BEFORE DELETE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION transfers_are_final();

-- +goose Down
DROP TRIGGER transfers_never_deleted ON transfers;
DROP TRIGGER transfers_final_immutable ON transfers;
DROP FUNCTION transfers_are_final();
CREATE TABLE postings_stored (
    id            bigint      GENERATED ALWAYS AS IDENTITY,
    transfer_id   uuid        NOT NULL,
    account_id    uuid        NOT NULL,
    amount        bigint      NOT NULL CHECK (amount <> 0),
    balance_after bigint      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id)
);
INSERT INTO postings_stored (transfer_id, account_id, amount, balance_after, created_at)
SELECT transfer_id, account_id, amount, balance_after, created_at FROM postings
 ORDER BY created_at, transfer_id, amount;
DROP VIEW postings;
ALTER TABLE postings_stored RENAME TO postings;
ALTER TABLE postings RENAME CONSTRAINT postings_stored_pkey TO postings_pkey;
ALTER SEQUENCE postings_stored_id_seq RENAME TO postings_id_seq;
-- +goose StatementBegin
CREATE FUNCTION postings_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'postings are immutable: correct a mistake with a new transfer';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION postings_are_immutable();
