// Package postgres opens the pgx v5 pool every function uses, runs
// transactions that retry serialization failures and deadlocks, and
// classifies Postgres errors. The migrations are applied by package
// migrations' Migrator (cmd/migrate, the local stack), never by a function.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is the database part of a function's configuration.
type Config struct {
	URL      string `envconfig:"DATABASE_URL" secret:"database-url" required:"true"`
	MaxConns int32  `envconfig:"DB_MAX_CONNS" default:"10"`
	// EnableSeqScan leaves Postgres free to plan sequential scans. Off by
	// default for functions: every query of an OLTP function is meant to be
	// index-driven, and pgx's prepared statements keep the generic plan
	// Postgres made the first times they ran — while a table was nearly
	// empty a scan was cheapest, and that cached scan stays as the table
	// grows (measured: process-transaction's throughput halved run over run
	// until its connections were recycled). With sequential scans disabled
	// the planner still uses one where no index applies.
	EnableSeqScan bool `envconfig:"DB_ENABLE_SEQSCAN" default:"false"`
}

// OpenWith returns a pool for cfg (see Open).
func OpenWith(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	return open(ctx, cfg.URL, cfg.MaxConns, cfg.EnableSeqScan)
}

// Open returns a pool for url. It does not connect: the first query or
// Ping does, so a function starts in milliseconds and readiness reports
// the database separately.
func Open(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	return open(ctx, url, maxConns, true)
}

func open(ctx context.Context, url string, maxConns int32, seqScan bool) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "billfn"
	}
	if !seqScan {
		cfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
	}
	cfg.ConnConfig.Tracer = queryTracer{} // spans of sampled requests only (tracer.go)
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		presizeOn(c.TypeMap()) // Presized (presized.go)
		return nil
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}

// GenericPlans is the statement that makes the rest of its transaction
// run its prepared statements on their generic plans (plan_cache_mode,
// transaction-local). Postgres plans a prepared statement anew for each of
// its first five runs on a connection and then keeps a custom plan whenever
// the generic one looks dearer than their average: a statement over arrays
// (unnest($1), = ANY($1)) estimates ten elements for a parameter and the
// real count for a value, so with the few elements a group usually holds
// the custom plan always looks cheaper, and the statement is planned again
// on every run — a bulk CTE costs more to plan than to execute (measured
// in the payments bench: process-transaction's group write, 854 µs of
// PostgreSQL's time planning each run). Queue it first (after BEGIN) in a
// transaction whose statements have plans that do not depend on their
// values: index lookups by key and bulk writes, never an optional filter
// (a parameter tested for "none" ORed with a column compared to it), whose
// generic plan cannot use the index a value would choose. Nor a join
// whose best plan depends on a table's size: the generic plan is made
// once per connection with the statistics of that moment, often those of
// a near-empty table (a fresh deployment; without autovacuum no ANALYZE
// ever makes it again), and a join against unnest($1) planned then as a
// scan and a hash join scans the whole table as it grows. Look rows up
// per element (a LATERAL subquery with LIMIT 1 on a unique key, as
// process-transaction's ownKeysSQL) and check the plan made on an empty
// table with enable_seqscan off, as Pool sets it. Not for a connection's
// whole session: the functions' list queries are such filters.
const GenericPlans = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true)`

// MaxAttempts bounds how often Tx runs fn when Postgres reports a
// serialization failure (40001) or a deadlock (40P01).
const MaxAttempts = 5

// Tx runs fn in a read-committed transaction and commits it. It retries on
// serialization failures and deadlocks; fn must therefore be safe to run
// again (it only talks to tx).
func Tx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return TxWith(ctx, pool, pgx.TxOptions{}, fn)
}

// TxWith is Tx with explicit options (isolation level, read-only).
func TxWith(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = pgx.BeginTxFunc(ctx, pool, opts, fn)
		if err == nil || !Retryable(err) || attempt == MaxAttempts {
			return err
		}
		// Jittered backoff so the conflicting transactions do not meet again.
		d := time.Duration(attempt*attempt)*time.Millisecond + rand.N(2*time.Millisecond)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(d):
		}
	}
}

// Retryable reports whether err is a serialization failure or deadlock.
func Retryable(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40001" || pg.Code == "40P01")
}

// UniqueViolation reports whether err is a unique violation, and of which constraint.
func UniqueViolation(err error) (constraint string, ok bool) {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23505" {
		return pg.ConstraintName, true
	}
	return "", false
}

// CheckViolation reports whether err is a CHECK constraint violation, and of which constraint.
func CheckViolation(err error) (constraint string, ok bool) {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "23514" {
		return pg.ConstraintName, true
	}
	return "", false
}

// EnsureDatabase creates the database named in url when it does not exist,
// connecting to the "postgres" maintenance database of the same server.
func EnsureDatabase(ctx context.Context, dbURL string) error {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return nil
	}
	admin, err := replaceDatabase(dbURL, "postgres")
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(admin), err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if _, dup := UniqueViolation(err); dup {
		return nil // created concurrently
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "42P04" {
		return nil
	}
	return err
}

// replaceDatabase returns url pointing at another database on the same server.
func replaceDatabase(dbURL, name string) (string, error) {
	if strings.HasPrefix(dbURL, "postgres://") || strings.HasPrefix(dbURL, "postgresql://") {
		u, err := url.Parse(dbURL)
		if err != nil {
			return "", fmt.Errorf("DATABASE_URL: %w", err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	// keyword/value form: dbname=...
	parts := strings.Fields(dbURL)
	found := false
	for i, p := range parts {
		if strings.HasPrefix(p, "dbname=") {
			parts[i] = "dbname=" + name
			found = true
		}
	}
	if !found {
		parts = append(parts, "dbname="+name)
	}
	return strings.Join(parts, " "), nil
}

// ReplaceDatabase returns url pointing at database name on the same server.
func ReplaceDatabase(dbURL, name string) (string, error) { return replaceDatabase(dbURL, name) }

// redact hides a password in a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
