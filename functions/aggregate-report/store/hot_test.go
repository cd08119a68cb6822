package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/testenv"
)

// Every event adds to rollup rows that mostly exist already: the accounts'
// day rows and the global hour and day rows are updated, batch after batch.
// Those updates must be HOT (the new row version on the same page, no index
// touched), or each one adds an entry to every index of its table and
// leaves a dead tuple for VACUUM. Migration 00053 keeps report_account_rollups'
// changing columns out of its indexes and room on its pages for that.
func TestRollupUpdatesAreHOT(t *testing.T) {
	// A database of its own: the package's is shared with tests whose
	// events and statistics would mix with these.
	url := testenv.FreshDatabase(t, true)
	ctx := context.Background()
	connect := func() *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	conn, rd := connect(), connect() // the writer, whose statistics are flushed, and the reader
	const nAccounts, batches, size = 2000, 10, 20
	rng := rand.New(rand.NewPCG(5, 6))
	accounts := make([]string, nAccounts)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i+1)
	}
	day := time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC)
	ingest := func(b int) {
		t.Helper()
		evs := make([]rollup.Event, size)
		for i := range evs {
			n := b*size + i
			data := fmt.Sprintf(`{"id":"t%d","from_account_id":%q,"to_account_id":%q,"amount":%d,"currency":"USD","status":"posted"}`,
				n, accounts[rng.IntN(nAccounts)], accounts[rng.IntN(nAccounts)], 100+rng.Int64N(10_000))
			evs[i] = rollup.Event{Source: "/functions/process-transaction", ID: fmt.Sprint("hot-", n), Type: rollup.TransferPosted,
				Time: day.Add(time.Duration(n) * time.Second), Data: []byte(data)}
		}
		err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
			_, err := store.Ingest(ctx, tx, evs)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every account's rows of the day exist (inserted: 4,000 rows, about
	// 60 pages), then 200 transfers update 400 of them. That is few enough
	// per page to fit in the room the fillfactor leaves without pruning the
	// dead versions first, which a long transaction anywhere on the server
	// can delay.
	const seedBatch = 500
	for i := 0; i < nAccounts; i += seedBatch {
		evs := make([]rollup.Event, 0, seedBatch)
		for j := i; j < i+seedBatch; j++ {
			data := fmt.Sprintf(`{"id":"s%d","from_account_id":%q,"to_account_id":%q,"amount":1,"currency":"USD","status":"posted"}`,
				j, accounts[j], accounts[(j+1)%nAccounts])
			evs = append(evs, rollup.Event{Source: "/functions/process-transaction", ID: fmt.Sprint("hot-seed-", j),
				Type: rollup.TransferPosted, Time: day, Data: []byte(data)})
		}
		if err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
			_, err := store.Ingest(ctx, tx, evs)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	type counts struct{ upd, hot int64 }
	read := func() map[string]counts {
		t.Helper()
		// The backend reports its statistics when it goes idle after this.
		if _, err := conn.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
			t.Fatal(err)
		}
		rows, err := rd.Query(ctx, `SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE relname IN ('report_account_rollups', 'report_rollups', 'report_changes')`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]counts{}
		for rows.Next() {
			var name string
			var c counts
			if err := rows.Scan(&name, &c.upd, &c.hot); err != nil {
				t.Fatal(err)
			}
			out[name] = c
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := read()
	for b := range batches {
		ingest(b)
	}
	after := read()
	for _, table := range []string{"report_account_rollups", "report_rollups", "report_changes"} {
		upd, hot := after[table].upd-before[table].upd, after[table].hot-before[table].hot
		t.Logf("%s: %d updates, %d HOT (%.0f %%)", table, upd, hot, 100*float64(hot)/float64(max(upd, 1)))
		if upd < batches || hot*10 < upd*9 {
			t.Errorf("%s: %d of %d updates HOT over %d batches of %d transfers, want at least 90 %%",
				table, hot, upd, batches, size)
		}
	}
}
