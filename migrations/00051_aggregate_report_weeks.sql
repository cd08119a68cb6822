-- aggregate-report: ranking accounts by volume over long ranges.
--
-- The ranking index keeps only what a ranking reads (account and amount),
-- half the size of the first one, so an index-only scan of a month of
-- account rollups stays in memory. report_account_weeks folds each closed
-- week's transfer volumes into one row per account (written by the
-- schedule tick, stamped with the data version of that week's days): a
-- ranking over three months reads thirteen weeks of rows instead of ninety
-- days, and a week whose version moved since (a late event) is read from
-- the day rows instead, so rankings stay exact.

-- +goose Up
DROP INDEX report_account_rollups_rank_idx;
CREATE INDEX report_account_rollups_rank_idx ON report_account_rollups (currency, metric, day, account_id) INCLUDE (amount);

CREATE TABLE report_account_weeks (
    currency   text   NOT NULL,
    week       date   NOT NULL,  -- the Monday (UTC) the week starts
    account_id uuid   NOT NULL,
    sent_count bigint NOT NULL,
    sent       bigint NOT NULL,
    recv_count bigint NOT NULL,
    recv       bigint NOT NULL,
    PRIMARY KEY (currency, week, account_id)
);

CREATE TABLE report_week_compactions (
    week         date        PRIMARY KEY,
    version      bigint      NOT NULL,   -- max(report_changes.version) of the week's days when folded
    compacted_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE report_week_compactions;
DROP TABLE report_account_weeks;
DROP INDEX report_account_rollups_rank_idx;
CREATE INDEX report_account_rollups_rank_idx ON report_account_rollups (currency, metric, day)
    INCLUDE (account_id, amount, count);
