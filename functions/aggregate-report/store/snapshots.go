package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/postgres"
)

// readSnapshot reads a report the tick computed ahead of time.
func (s *Store) readSnapshot(ctx context.Context, kind string, day time.Time, v any) (bool, error) {
	var body []byte
	err := s.Pool.QueryRow(ctx, `SELECT body FROM report_snapshots WHERE kind = $1 AND day = $2::date`, kind, day).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(body, v)
}

// ReconMismatches counts the payments whose gateway and ledger sides
// disagree, once per settled day: when the day's reconciliation snapshot
// is written (after the grace period), by the mismatch's first reason
// (its capture side, else its refund side; the rest are in the report).
// A mismatch that stays into later days counts again on each day it is
// active, as the daily report lists it.
var ReconMismatches = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_reconciliation_mismatches_total",
	Help: "Payments whose gateway and ledger sides disagree in a settled day's reconciliation, by first reason " +
		"(capture_not_posted, capture_posted_in_excess, refund_not_posted, refund_posted_in_excess).",
}, []string{"reason"})

// MismatchReasons are every first reason Reconciliation gives a mismatch.
var MismatchReasons = []string{"capture_not_posted", "capture_posted_in_excess", "refund_not_posted", "refund_posted_in_excess"}

func init() {
	for _, r := range MismatchReasons {
		ReconMismatches.WithLabelValues(r) // at zero: "no mismatch", not "no data"
	}
}

// Collectors returns the store's metrics.
func Collectors() []prometheus.Collector { return []prometheus.Collector{ReconMismatches} }

// SnapshotJob is one report the tick keeps ahead of time: the day it is
// filed under and the days whose figures it reads.
type SnapshotJob struct {
	Kind     string
	Day      time.Time
	From, To time.Time
	Compute  func(context.Context) (any, error)
}

// WriteSnapshots writes the missing snapshots and returns how many it wrote.
func (s *Store) WriteSnapshots(ctx context.Context) (int, error) {
	today := rollup.DayStart(s.Now())
	first := today.AddDate(0, 0, -s.SnapshotDays)
	have := map[string]bool{}
	rows, err := s.Pool.Query(ctx, `SELECT kind, day FROM report_snapshots WHERE day >= $1::date - 31`, first)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var kind string
		var day time.Time
		if err := rows.Scan(&kind, &day); err != nil {
			rows.Close()
			return 0, err
		}
		have[kind+day.Format(time.DateOnly)] = true
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	all := Scope{All: true}
	var jobs []SnapshotJob
	for d := first; d.Before(today); d = d.AddDate(0, 0, 1) {
		d := d
		jobs = append(jobs,
			SnapshotJob{"summary", d, d, d.AddDate(0, 0, 1), func(ctx context.Context) (any, error) {
				return s.Summary(ctx, all, d, d.AddDate(0, 0, 1), "")
			}},
			SnapshotJob{"aging", d, Beginning, d.AddDate(0, 0, 1), func(ctx context.Context) (any, error) {
				return s.Aging(ctx, all, d, "")
			}},
		)
		// A day's reconciliation waits for the grace period after it.
		if !d.AddDate(0, 0, 1).Add(s.ReconGrace).After(s.Now()) {
			jobs = append(jobs, SnapshotJob{"reconciliation", d, Beginning, d.AddDate(0, 0, 2), func(ctx context.Context) (any, error) {
				return s.Reconciliation(ctx, all, d)
			}})
		}
	}
	month := today.AddDate(0, 0, 1-today.Day()).AddDate(0, -1, 0)
	jobs = append(jobs, SnapshotJob{"mrr", month.AddDate(0, 1, -1), Beginning, month.AddDate(0, 1, 0),
		func(ctx context.Context) (any, error) { return s.MRR(ctx, all, month, "") }})

	written := 0
	for _, j := range jobs {
		if have[j.Kind+j.Day.Format(time.DateOnly)] {
			continue
		}
		ok, err := s.WriteSnapshot(ctx, j)
		if apperr.HasCode(err, CodeAmountOverflow) {
			// A day whose figures do not add up in int64 has no snapshot
			// (its report answers the overflow problem); the other days'
			// snapshots are still written, and the tick does not fail
			// forever on it.
			slog.WarnContext(ctx, "report snapshot skipped: a figure overflows int64", "kind", j.Kind, "day", j.Day.Format(time.DateOnly))
			continue
		}
		if err != nil {
			return written, fmt.Errorf("snapshot %s %s: %w", j.Kind, j.Day.Format(time.DateOnly), err)
		}
		if ok {
			written++
		}
	}
	if written > 0 {
		slog.InfoContext(ctx, "report snapshots written", "count", written)
	}
	return written, nil
}

// WriteSnapshot computes a report and stores it unless events of the days
// it reads landed meanwhile (their version moved): then the next tick
// tries again. The version check and the insert run under the writers'
// lock, so no event can slip in between.
func (s *Store) WriteSnapshot(ctx context.Context, j SnapshotJob) (bool, error) {
	v, err := s.Version(ctx, j.From, j.To)
	if err != nil {
		return false, err
	}
	rep, err := j.Compute(ctx)
	if err != nil {
		return false, err
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return false, err
	}
	stored := false
	err = postgres.Tx(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := Lock(ctx, tx); err != nil {
			return err
		}
		var now int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM report_changes WHERE day >= $1::date AND day < $2::date`,
			j.From, j.To).Scan(&now); err != nil {
			return err
		}
		if now != v {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO report_snapshots (kind, day, body) VALUES ($1, $2::date, $3)
			ON CONFLICT (kind, day) DO UPDATE SET body = excluded.body, created_at = now()`, j.Kind, j.Day, body)
		stored = err == nil
		return err
	})
	if rec, ok := rep.(Reconciliation); ok && stored && err == nil {
		for _, m := range rec.Mismatches {
			ReconMismatches.WithLabelValues(m.Reasons[0]).Inc()
		}
	}
	return stored, err
}
