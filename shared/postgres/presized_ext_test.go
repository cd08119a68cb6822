package postgres_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

// A presized statement writes what the plain one writes, on a pool of
// Open (the wrapper installed) and on one without it (the argument then
// encodes as a driver.Valuer), after a reservation in the connection's
// write buffer (ReserveFor), which sends nothing.
func TestPresizedArgumentsWriteTheSameRows(t *testing.T) {
	url := testenv.FreshDatabase(t, false)
	ctx := context.Background()
	withWrapper, err := postgres.Open(ctx, url, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer withWrapper.Close()
	plain, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Exec(ctx, `CREATE TABLE presized_t (pool text, name text, n int8, body bytea)`); err != nil {
		t.Fatal(err)
	}
	const insert = `INSERT INTO presized_t SELECT $1, x.name, x.n, x.body FROM unnest($2::text[], $3::int8[], $4::bytea[]) AS x(name, n, body)`
	names, ns, bodies := []string{"a", "b", "c"}, []int64{1, 2, 3}, [][]byte{[]byte("x"), nil, make([]byte, 3000)}
	for name, pool := range map[string]*pgxpool.Pool{"open": withWrapper, "plain": plain} {
		// twice on the same connection: the second run uses the memoized plan
		for range 2 {
			args := postgres.Presized(name, names, ns, bodies)
			conn, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			postgres.ReserveFor(conn.Conn(), args) // room in the write buffer, nothing sent
			_, err = conn.Exec(ctx, insert, args...)
			conn.Release()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		// a first argument of another type on the same statement shape
		if _, err := pool.Exec(ctx, `INSERT INTO presized_t SELECT x.p, x.name, 0, NULL FROM unnest($1::text[], $2::text[]) AS x(p, name)`,
			postgres.Presized([]string{name + "-array"}, []string{"d"})...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	rows, err := plain.Query(ctx, `SELECT pool, count(*), sum(n), sum(coalesce(length(body), 0)) FROM presized_t GROUP BY pool ORDER BY pool`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var pool string
		var count, sum, body int64
		err := r.Scan(&pool, &count, &sum, &body)
		return strings.Join([]string{pool, itoa(count), itoa(sum), itoa(body)}, " "), err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"open 6 12 6002", "open-array 1 0 0", "plain 6 12 6002", "plain-array 1 0 0"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("rows = %q; want %q", got, want)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
