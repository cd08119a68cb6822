package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// A delivery costs its handler two round trips to Postgres whatever it
// holds: one reads (the writers' lock, the log append that says which
// events are new, the state rows the events name), one writes (rollups,
// rows, state, versions). A delivery of duplicates only costs the first.
// Each round trip is a write and a read on the socket for both processes,
// and most deliveries of payments and invoices hold a few events.
func TestAnIngestIsOneRoundTripToReadAndOneToWrite(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(testenv.FreshDatabase(t, true))
	if err != nil {
		t.Fatal(err)
	}
	rt := &testenv.RoundTrips{}
	cfg.Tracer = rt
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	at := time.Date(2026, 2, 3, 10, 0, 0, 0, time.UTC)
	ev := func(id, typ, data string) rollup.Event {
		return rollup.Event{Source: "/functions/capture-payment", ID: id, Type: typ, Time: at, Data: []byte(data)}
	}
	const acct, pay = "00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000b1"
	payment := []rollup.Event{
		ev("rt-1", rollup.AccountCreated, fmt.Sprintf(`{"id":%q,"user_id":"00000000-0000-4000-8000-0000000000c1","currency":"USD"}`, acct)),
		ev("rt-2", rollup.PaymentCreated, fmt.Sprintf(`{"payment_id":%q,"account_id":%q,"amount":900,"currency":"USD","gateway":"sandbox"}`, pay, acct)),
		ev("rt-3", rollup.PaymentCaptured, fmt.Sprintf(`{"payment_id":%q,"account_id":%q,"amount":900,"amount_captured":900,"currency":"USD","gateway":"sandbox"}`, pay, acct)),
	}
	transfers := []rollup.Event{
		ev("rt-4", rollup.TransferPosted, fmt.Sprintf(`{"id":"t1","from_account_id":%q,"to_account_id":%q,"amount":5,"currency":"USD","status":"posted"}`, acct, acct)),
	}
	for _, c := range []struct {
		name      string
		evs       []rollup.Event
		trips     int
		applied   int
		duplicate int
	}{
		{"a payment", payment, 2, 3, 0},
		{"a transfer", transfers, 2, 1, 0},
		{"the payment again", payment, 1, 0, 3},
	} {
		var res store.Result
		err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
			n0, _ := rt.Count()
			var err error
			res, err = store.Ingest(ctx, tx, c.evs)
			if n, sql := rt.Count(); n-n0 != c.trips {
				t.Errorf("%s: %d round trips, want %d: %q", c.name, n-n0, c.trips, sql[n0:])
			}
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if res.Applied != c.applied || res.Duplicates != c.duplicate {
			t.Errorf("%s: %d applied and %d duplicates, want %d and %d", c.name, res.Applied, res.Duplicates, c.applied, c.duplicate)
		}
	}
	var rows int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM report_payments WHERE account_id = $1`, acct).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("report_payments: %d rows for the account (%v), want 1", rows, err)
	}
}

// Data Postgres cannot store as jsonb (a \u0000 escape) fails the batch
// permanently, so the receiver parks that event alone instead of retrying
// the delivery for ever; retrying could not store it either.
func TestDataTheLogCannotStoreIsAPermanentFailure(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.FreshDatabase(t, true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	ev := rollup.Event{Source: "/functions/process-transaction", ID: "nul-1", Type: rollup.TransferPosted,
		Time: time.Date(2026, 2, 3, 10, 0, 0, 0, time.UTC), Data: []byte(`{"id":"t\u0000","amount":5,"currency":"USD"}`)}
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := store.Ingest(ctx, tx, []rollup.Event{ev})
		return err
	})
	if err == nil || !events.IsPermanent(err) {
		t.Fatalf("ingest: %v, want a permanent failure", err)
	}
}
