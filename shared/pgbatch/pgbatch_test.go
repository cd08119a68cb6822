package pgbatch_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestQueuedStatementsCommitTogetherOrNotAtAll(t *testing.T) {
	pool := testenv.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE pgbatch_t (id int PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	write := func(id int, guard int) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO pgbatch_t VALUES ($1, 'direct')`, id)
		q := pgbatch.Queue(b)
		if _, err := q.Exec(ctx, `INSERT INTO pgbatch_t VALUES ($1, 'through Exec')`, id+1000); err != nil {
			return err
		}
		b.Queue(`SELECT 1 / $1::int`, guard)
		return pgbatch.Send(ctx, pool, b)
	}
	if err := write(1, 1); err != nil {
		t.Fatal(err)
	}
	if err := write(2, 0); err == nil {
		t.Fatal("a failing guard did not fail the pipeline")
	}
	var n int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM pgbatch_t`).Scan(&n)
	if n != 2 {
		t.Fatalf("%d rows: want the two of the first write and none of the second", n)
	}
}

func TestGuardedWritesTheRestOnlyWhenTheGuardSaysSo(t *testing.T) {
	pool := testenv.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE pgbatch_g (id int PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	// The guard inserts id unless it exists; the rest writes id+1000.
	write := func(id int, rest bool) (bool, int, error) {
		var inserted int
		b := &pgx.Batch{}
		if rest {
			q := pgbatch.Queue(b)
			if _, err := q.Exec(ctx, `INSERT INTO pgbatch_g VALUES ($1, 'rest')`, id+1000); err != nil {
				return false, 0, err
			}
		}
		ok, err := pgbatch.SendGuarded(ctx, pool, pgbatch.Guard{
			SQL: `WITH ins AS (INSERT INTO pgbatch_g VALUES ($1, 'guard') ON CONFLICT DO NOTHING RETURNING 1)
				SELECT count(*)::int FROM ins`,
			Args: []any{id}, Dest: []any{&inserted}, Proceed: func() bool { return inserted == 1 },
		}, b)
		return ok, inserted, err
	}
	count := func() (n int) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgbatch_g`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if ok, _, err := write(1, true); err != nil || !ok {
		t.Fatalf("first write: %v %v", ok, err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows after the first write, want 2", n)
	}
	if ok, inserted, err := write(1, true); err != nil || ok || inserted != 0 {
		t.Fatalf("a duplicate: ok=%v inserted=%d err=%v, want false 0 nil", ok, inserted, err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows after the duplicate, want 2 (nothing of it kept)", n)
	}
	// With nothing more to write the guard runs alone.
	if ok, inserted, err := write(2, false); err != nil || !ok || inserted != 1 {
		t.Fatalf("guard alone: ok=%v inserted=%d err=%v", ok, inserted, err)
	}
	// A failing rest undoes the guard: id 3+1000 exists already.
	if _, err := pool.Exec(ctx, `INSERT INTO pgbatch_g VALUES (1003, 'there')`); err != nil {
		t.Fatal(err)
	}
	if ok, _, err := write(3, true); err == nil || ok {
		t.Fatalf("a failing rest: ok=%v err=%v, want an error", ok, err)
	}
	var n int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM pgbatch_g WHERE id = 3`).Scan(&n)
	if n != 0 {
		t.Fatal("the guard's row stayed although the rest failed")
	}
	// The pool's connections are all usable afterwards (no transaction left open).
	for range 5 {
		if _, err := pool.Exec(ctx, `SELECT 1`); err != nil {
			t.Fatal(err)
		}
	}
}
