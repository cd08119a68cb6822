package postgres_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestTxRetriesSerializationFailures(t *testing.T) {
	pool := testenv.Pool(t)
	var attempts int
	err := postgres.Tx(context.Background(), pool, func(tx pgx.Tx) error {
		attempts++
		if attempts < 3 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
		}
		return nil
	})
	if err != nil || attempts != 3 {
		t.Fatalf("err = %v, attempts = %d; want nil after 3 attempts", err, attempts)
	}
}

func TestTxGivesUpAfterMaxAttempts(t *testing.T) {
	pool := testenv.Pool(t)
	var attempts int
	err := postgres.Tx(context.Background(), pool, func(tx pgx.Tx) error {
		attempts++
		return &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}
	})
	if !postgres.Retryable(err) || attempts != postgres.MaxAttempts {
		t.Fatalf("err = %v after %d attempts; want the deadlock after %d", err, attempts, postgres.MaxAttempts)
	}
}

func TestTxDoesNotRetryOtherErrors(t *testing.T) {
	pool := testenv.Pool(t)
	var attempts int
	boom := errors.New("boom")
	err := postgres.Tx(context.Background(), pool, func(tx pgx.Tx) error { attempts++; return boom })
	if !errors.Is(err, boom) || attempts != 1 {
		t.Fatalf("err = %v, attempts = %d", err, attempts)
	}
}

// Two transactions lock two rows in opposite orders: Postgres kills one with
// a real deadlock (40P01); Tx retries it, so both callers succeed.
func TestTxSurvivesARealDeadlock(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Pool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS deadlock_probe (id int PRIMARY KEY, n int NOT NULL);
		INSERT INTO deadlock_probe VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	var firstLocks sync.WaitGroup
	firstLocks.Add(2)
	var deadlocks atomic.Int32
	run := func(a, b int) error {
		first := true
		return postgres.Tx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE deadlock_probe SET n = n + 1 WHERE id = $1`, a); err != nil {
				return err
			}
			if first {
				first = false
				firstLocks.Done()
				firstLocks.Wait() // both hold their first row now
			}
			_, err := tx.Exec(ctx, `UPDATE deadlock_probe SET n = n + 1 WHERE id = $1`, b)
			if postgres.Retryable(err) {
				deadlocks.Add(1)
			}
			return err
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = run(1, 2) }()
	go func() { defer wg.Done(); errs[1] = run(2, 1) }()
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("errors: %v, %v", errs[0], errs[1])
	}
	if deadlocks.Load() == 0 {
		t.Fatal("no deadlock happened; the test did not exercise the retry")
	}
	var sum int
	if err := pool.QueryRow(ctx, `SELECT sum(n) FROM deadlock_probe`).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if sum != 4 {
		t.Fatalf("sum = %d, want 4: each transaction committed exactly once", sum)
	}
}

func TestEnsureDatabaseCreatesAMissingDatabase(t *testing.T) {
	ctx := context.Background()
	url := testenv.FreshDatabase(t, false)
	conn, err := pgx.Connect(ctx, testenv.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cfg, _ := pgx.ParseConfig(url)
	if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{cfg.Database}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if err := postgres.EnsureDatabase(ctx, url); err != nil {
		t.Fatalf("ensure: %v", err)
	}
	if err := postgres.EnsureDatabase(ctx, url); err != nil {
		t.Fatalf("ensure twice: %v", err)
	}
	c2, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("database not created: %v", err)
	}
	c2.Close(ctx)
}

func TestUniqueAndCheckViolationsAreClassified(t *testing.T) {
	ctx := context.Background()
	pool := testenv.Pool(t)
	_, err := pool.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, method, path, state)
		VALUES ('t', 'k', '\x00', 'POST', '/', 'in_flight')`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, method, path, state)
		VALUES ('t', 'k', '\x00', 'POST', '/', 'in_flight')`)
	if c, ok := postgres.UniqueViolation(err); !ok || c != "idempotency_keys_pkey" {
		t.Fatalf("UniqueViolation(%v) = %q, %v", err, c, ok)
	}
	_, err = pool.Exec(ctx, `INSERT INTO idempotency_keys (scope, key, request_hash, method, path, state)
		VALUES ('t', 'k2', '\x00', 'POST', '/', 'bogus')`)
	if _, ok := postgres.CheckViolation(err); !ok {
		t.Fatalf("CheckViolation(%v) = false", err)
	}
}

func TestFunctionPoolsPlanWithoutSequentialScansUnlessAsked(t *testing.T) {
	ctx := context.Background()
	url := testenv.DatabaseURL(t)
	for _, c := range []struct {
		seq  bool
		want string
	}{{false, "off"}, {true, "on"}} {
		pool, err := postgres.OpenWith(ctx, postgres.Config{URL: url, MaxConns: 1, EnableSeqScan: c.seq})
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = pool.QueryRow(ctx, "SHOW enable_seqscan").Scan(&got)
		pool.Close()
		if err != nil || got != c.want {
			t.Fatalf("EnableSeqScan=%v: enable_seqscan = %q (%v), want %q", c.seq, got, err, c.want)
		}
	}
}
