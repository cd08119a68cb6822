// Package store is all of aggregate-report's SQL: the rollup engine's
// tables (rollups.go: the event log, the rollups and the state rows, written
// by Ingest in the delivery's transaction; rebuild.go: Replay, Check and
// Rebuild over the log), the report queries over the rollups (summary,
// time series, aging, MRR, reconciliation, top accounts) and the read
// models they return, the daily snapshots, the weekly compaction for
// rankings, the account read model that scopes a customer, and the data
// version that keys the cache. The rules are package rollup's (pure Apply,
// Replayed, Compare); package api serves both.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/httpx"
)

// Store reads and writes aggregate-report's report tables.
type Store struct {
	Pool *pgxpool.Pool
	Now  func() time.Time
	// ReconGrace is how long after a day's end a ledger posting still
	// counts for that day's reconciliation (postings follow captures by
	// moments, so a capture at 23:59:59 is not a mismatch).
	ReconGrace time.Duration
	// SnapshotDays is how many past days the tick keeps snapshots of.
	SnapshotDays int
}

// New is a store on pool with the defaults the function runs with.
func New(pool *pgxpool.Pool, now func() time.Time) *Store {
	return &Store{Pool: pool, Now: now, ReconGrace: 15 * time.Minute, SnapshotDays: 7}
}

// Scope is whose figures a request sees: everything, or a set of accounts.
type Scope struct {
	All      bool
	Accounts []string // sorted account ids
}

// Key names the scope in cache keys: a set of accounts always has the same
// figures, whoever asks.
func (sc Scope) Key() string {
	if sc.All {
		return "all"
	}
	h := sha256.Sum256([]byte(strings.Join(sc.Accounts, ",")))
	return "acct:" + hex.EncodeToString(h[:12])
}

// ErrNoAccount is AccountOwner's answer for an account it has not seen.
var ErrNoAccount = errors.New("no such account in the account read model")

// AccountOwner is the user who owns account id (ErrNoAccount when none).
func (s *Store) AccountOwner(ctx context.Context, id string) (string, error) {
	var owner string
	err := s.Pool.QueryRow(ctx, `SELECT user_id::text FROM report_accounts WHERE account_id = $1`, id).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", ErrNoAccount
	}
	return owner, err
}

// AccountsOf lists the accounts user owns, sorted.
func (s *Store) AccountsOf(ctx context.Context, user string) ([]string, error) {
	rows, err := s.Pool.Query(ctx, `SELECT account_id::text FROM report_accounts WHERE user_id = $1 ORDER BY account_id`, user)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Version is the data version of the days in [from, to): it changes
// whenever an event of one of those days lands, so it is part of every
// cache key and a newer event makes older entries unreachable at once.
func (s *Store) Version(ctx context.Context, from, to time.Time) (int64, error) {
	var v int64
	err := s.Pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM report_changes WHERE day >= $1::date AND day < $2::date`,
		from, to).Scan(&v)
	return v, err
}

// Beginning is the first day any figure can belong to.
var Beginning = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)

// encodeCursor is an opaque page cursor for a keyset position.
func encodeCursor(pos any) string { return httpx.EncodeCursor(pos) }
