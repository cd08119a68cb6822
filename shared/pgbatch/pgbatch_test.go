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
