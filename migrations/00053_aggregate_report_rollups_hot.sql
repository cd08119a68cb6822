-- aggregate-report: the accounts' day rollups are updated in place (HOT).
--
-- Every transfer adds to its two accounts' rows of the day, which mostly
-- exist already, so report_account_rollups is written by UPDATE: 1.12 per
-- transfer and 2.54 per payment in make bench's transfers-gateway and
-- payments scenarios (2026-12-04), and none of them was HOT, because
-- amount, which every update changes, was in the ranking index (00051's
-- INCLUDE (amount)) and the pages were full: each update added an entry to
-- both indexes and left a dead tuple for VACUUM.
--
-- The ranking index loses amount, so an update changes no indexed column,
-- and the table keeps a fifth of each new page free for the new versions of
-- its rows. Pages already full keep their layout (their days are closed;
-- a late event's update there is not HOT, as before); no rewrite. In make
-- bench -only '^transfers-gateway$' (2026-12-04 20:07/20:08 UTC, before and
-- after): 0 % -> 96 % of its updates HOT, 2.02 -> 0.11 index entries per
-- transfer; -only '^payments$' (20:11/20:12 UTC): 0 % -> 96 %, 4.96 -> 0.26
-- per payment.
--
-- What it costs the ranking (EXPLAIN (ANALYZE, BUFFERS) of its day-row part,
-- 10,000 accounts x 30 days, 463,000 rows; same rows in both layouts):
--   two days of the open week, one of them being updated:
--     before 13,763 buffers (an index-only scan that fetched 13,446 heap
--     rows anyway: pages being updated are not all-visible), 27 ms;
--     after 742 buffers (bitmap heap scan), 23 ms;
--   seven days (four closed edge days + three open): 14,556 -> 2,559 buffers,
--     57 -> 64 ms;
--   all thirty days (no folded week usable; a sequential scan either way):
--     5,318 -> 6,629 buffers (the heap a quarter larger), 114 -> 117 ms.
-- A ranking reads day rows only for the days outside closed, folded weeks
-- (report_account_weeks): the open week's, which were never all-visible,
-- and the range's edges. Index-only scans of amount bought little there;
-- they cost two index entries per update on every write.

-- +goose Up
DROP INDEX report_account_rollups_rank_idx;
CREATE INDEX report_account_rollups_rank_idx ON report_account_rollups (currency, metric, day, account_id);
ALTER TABLE report_account_rollups SET (fillfactor = 80);

-- +goose Down
ALTER TABLE report_account_rollups RESET (fillfactor);
DROP INDEX report_account_rollups_rank_idx;
CREATE INDEX report_account_rollups_rank_idx ON report_account_rollups (currency, metric, day, account_id) INCLUDE (amount);
