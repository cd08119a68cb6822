-- aggregate-report: rollup amounts are numeric, so no fact is refused.
--
-- A rollup row held its amounts' sum in a bigint, and an event that would
-- overflow it was parked. Anyone may ask process-transaction for a
-- transfer of 9223372036854775807; refused (insufficient funds), it is
-- still billfn.transaction.rejected with that amount, counted as
-- transfer.rejected, and its rows (the day's and the hour's, per currency
-- and reason, and the account's) stood at the int64 maximum: every later,
-- legitimate event of those rows overflowed and was parked, and the day's
-- reports silently lost real figures.
--
-- A numeric of scale 0 holds any sum of int64 amounts exactly (the Go side
-- adds them up in 128 bits, rollup.Wide). Reports still hand out int64
-- figures: they read sum(amount)::bigint, and a total beyond it is the
-- amount_overflow problem (422), as it was for totals of several rows.
-- The account rollups' index holds no amount (00053), so the rewrite keeps
-- their updates HOT, and the table keeps its fillfactor of 80.
-- report_account_weeks stays bigint: a week whose fold of these rows does
-- not fit is not folded (store/weeks.go), as before.

-- +goose Up
ALTER TABLE report_rollups ALTER COLUMN amount TYPE numeric;
ALTER TABLE report_account_rollups ALTER COLUMN amount TYPE numeric;

-- +goose Down
-- (fails when a row holds more than int64: those figures have nowhere to go)
ALTER TABLE report_account_rollups ALTER COLUMN amount TYPE bigint;
ALTER TABLE report_rollups ALTER COLUMN amount TYPE bigint;
