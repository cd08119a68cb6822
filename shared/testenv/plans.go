package testenv

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OneConnectionPool is a pool of at most one connection to a fresh
// migrated database, so that what a test counts per connection (round
// trips, prepared statements and their plans) is all on that one; tracer,
// when not nil, sees every statement (RoundTrips counts them).
func OneConnectionPool(tb testing.TB, tracer pgx.QueryTracer) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(FreshDatabase(tb, true))
	if err != nil {
		tb.Fatal(err)
	}
	if tracer != nil {
		cfg.ConnConfig.Tracer = tracer
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Plans is how a prepared statement was planned on its connection
// (pg_prepared_statements): the runs of its generic plan, and the custom
// plans made for single runs.
type Plans struct {
	Statement       string // its first 60 characters, white space collapsed
	Generic, Custom int64
}

// PreparedPlans reads the plans of the prepared statements of pool's
// connection whose text is LIKE any of likes (OneConnectionPool: the
// connection every statement ran on).
func PreparedPlans(tb testing.TB, pool *pgxpool.Pool, likes ...string) []Plans {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `SELECT left(regexp_replace(statement, '\s+', ' ', 'g'), 60), generic_plans, custom_plans
		FROM pg_prepared_statements WHERE statement NOT LIKE '%pg_prepared_statements%' AND statement LIKE ANY ($1)`, likes)
	if err != nil {
		tb.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (p Plans, err error) {
		return p, r.Scan(&p.Statement, &p.Generic, &p.Custom)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return got
}
