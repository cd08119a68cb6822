package store

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
)

// Weekly compaction: a ranking of accounts by volume reads one row per
// account and closed week where it can, day rows elsewhere (see migration
// 00051). A week's rows are trusted only while the data version of its
// days is the one they were folded at.

// weekStart is the Monday (UTC) of t's week.
func weekStart(t time.Time) time.Time {
	d := rollup.DayStart(t)
	return d.AddDate(0, 0, -((int(d.Weekday()) + 6) % 7))
}

// compactionsPerTick bounds the tick's work; a backlog of weeks (after a
// backfill or a rebuild) is folded over the following ticks.
const compactionsPerTick = 4

// CompactWeeks folds the closed weeks whose rows are missing or stale,
// newest first, and returns how many it folded.
func (s *Store) CompactWeeks(ctx context.Context) (int, error) {
	thisWeek := weekStart(s.Now())
	rows, err := s.Pool.Query(ctx, `
		SELECT w.week FROM (
			SELECT date_trunc('week', day)::date AS week, max(version) AS version
			FROM report_changes WHERE day < $1::date GROUP BY 1) w
		LEFT JOIN report_week_compactions c USING (week)
		WHERE c.version IS DISTINCT FROM w.version AND c.version IS DISTINCT FROM -w.version
		ORDER BY w.week DESC LIMIT $2`, thisWeek, compactionsPerTick)
	if err != nil {
		return 0, err
	}
	weeks, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return 0, err
	}
	for _, w := range weeks {
		if err := s.compactWeek(ctx, w); err != nil {
			return 0, err
		}
	}
	return len(weeks), nil
}

// compactWeek folds one week in a repeatable-read transaction, so the
// version it records and the rows it sums come from one snapshot. Writers
// never touch the week tables, so this cannot conflict with them.
//
// A week whose folded row of some account does not fit in int64 (the day
// rows are numeric sums: a week of them, or one of them, may not) is not
// folded: its compaction is recorded at the negated version, which
// RankingSources never uses (the day rows answer, and a ranking that adds
// them up beyond int64 is the amount_overflow problem) and CompactWeeks
// does not retry until the week's figures change. Before, the tick failed on it every time.
func (s *Store) compactWeek(ctx context.Context, week time.Time) error {
	var version int64
	err := s.foldWeek(ctx, week, &version)
	var pg *pgconn.PgError
	if !errors.As(err, &pg) || pg.Code != "22003" {
		return err
	}
	slog.WarnContext(ctx, "week not compacted: an account's weekly figure does not fit in int64", "week", week.Format(time.DateOnly))
	_, err = s.Pool.Exec(ctx, `WITH gone AS (DELETE FROM report_account_weeks WHERE week = $1::date)
		INSERT INTO report_week_compactions (week, version) VALUES ($1::date, $2)
		ON CONFLICT (week) DO UPDATE SET version = excluded.version, compacted_at = now()`, week, -version)
	return err
}

func (s *Store) foldWeek(ctx context.Context, week time.Time, version *int64) error {
	return pgx.BeginTxFunc(ctx, s.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM report_changes WHERE day >= $1::date AND day < $1::date + 7`,
			week).Scan(version); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM report_account_weeks WHERE week = $1::date`, week)
		b.Queue(`INSERT INTO report_account_weeks (currency, week, account_id, sent_count, sent, recv_count, recv)
			SELECT currency, $1::date, account_id,
			       coalesce(sum(count) FILTER (WHERE metric = 'transfer.posted'), 0),
			       coalesce(sum(amount) FILTER (WHERE metric = 'transfer.posted'), 0),
			       coalesce(sum(count) FILTER (WHERE metric = 'transfer.received'), 0),
			       coalesce(sum(amount) FILTER (WHERE metric = 'transfer.received'), 0)
			FROM report_account_rollups
			WHERE currency = ANY(ARRAY(SELECT DISTINCT currency FROM report_rollups
			                           WHERE grain = 'd' AND bucket >= $1::date AND bucket < $1::date + 7))
			  AND metric IN ('transfer.posted', 'transfer.received') AND day >= $1::date AND day < $1::date + 7
			GROUP BY currency, account_id`, week)
		b.Queue(`INSERT INTO report_week_compactions (week, version) VALUES ($1::date, $2)
			ON CONFLICT (week) DO UPDATE SET version = excluded.version, compacted_at = now()`, week, *version)
		return tx.SendBatch(ctx, b).Close()
	})
}

// RankingSources splits [from, to) into the closed weeks whose folded rows
// are current and the days to read from the day rollups.
func (s *Store) RankingSources(ctx context.Context, from, to time.Time) (weeks, days []time.Time, err error) {
	thisWeek := weekStart(s.Now())
	var candidates []time.Time
	first := weekStart(from)
	if first.Before(from) {
		first = first.AddDate(0, 0, 7)
	}
	for w := first; !w.AddDate(0, 0, 7).After(to) && !w.AddDate(0, 0, 7).After(thisWeek); w = w.AddDate(0, 0, 7) {
		candidates = append(candidates, w)
	}
	usable := map[int64]bool{}
	if len(candidates) > 0 {
		rows, err := s.Pool.Query(ctx, `
			SELECT c.week FROM report_week_compactions c JOIN unnest($1::date[]) AS w(week) USING (week)
			WHERE c.version = (SELECT coalesce(max(version), 0) FROM report_changes WHERE day >= c.week AND day < c.week + 7)`,
			candidates)
		if err != nil {
			return nil, nil, err
		}
		good, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		if err != nil {
			return nil, nil, err
		}
		for _, w := range good {
			usable[rollup.DayStart(w).Unix()] = true
			weeks = append(weeks, rollup.DayStart(w))
		}
	}
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		if !usable[weekStart(d).Unix()] {
			days = append(days, d)
		}
	}
	return weeks, days, nil
}
