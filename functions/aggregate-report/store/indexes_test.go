package store_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/migrations"
	"github.com/billfn/billfn/shared/testenv"
)

// indexDefs is table's indexes, in name order, as "name (columns)".
func indexDefs(t *testing.T, conn *pgx.Conn, table string) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT c.relname || ' ' || pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::regclass ORDER BY c.relname`, table)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range defs {
		name, rest, _ := strings.Cut(d, " ")
		_, cols, _ := strings.Cut(rest, " USING btree ")
		defs[i] = name + " " + cols
	}
	return strings.Join(defs, "; ")
}

// Every index of the event log and of report_recon is an entry written per
// row: each has a query that needs it (docs/aggregate-report.md, "Indexes
// of the per-event tables"). report_recon's primary key leads with the payment, so it
// also finds a payment's history (00054), and its rows survive the
// migration both ways.
func TestReportIndexesAreTheOnesItsQueriesNeed(t *testing.T) {
	ctx := context.Background()
	url := testenv.FreshDatabase(t, false)
	m, err := migrations.NewMigrator(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if err := m.Up(ctx, io.Discard); err != nil {
		t.Fatalf("up: %v", err)
	}
	if err := m.DownTo(ctx, 53, io.Discard); err != nil {
		t.Fatalf("down to 53: %v", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO report_recon (source, event_id, side, kind, payment_id, gateway, currency, amount, status, ref, at)
		SELECT '/functions/capture-payment', 'ev-' || g, 'gateway', 'capture', 'pay-' || (g / 2), 'sandbox', 'USD', 100, 'succeeded',
			'ev-' || g, now() - g * interval '1 minute'
		FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	want := func(when, table, defs string) {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM report_recon`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1000 {
			t.Errorf("%s: %d report_recon rows, want 1000", when, n)
		}
		if got := indexDefs(t, conn, table); got != defs {
			t.Errorf("%s: %s's indexes\n%s, want\n%s", when, table, got, defs)
		}
	}
	const events = "report_events_pkey (seq); report_events_source_id_key (source, id)"
	for range 2 {
		if err := m.Up(ctx, io.Discard); err != nil {
			t.Fatalf("up: %v", err)
		}
		want("after up", "report_events", events)
		want("after up", "report_recon", "report_recon_at_idx (at); report_recon_pkey (payment_id, source, event_id)")
		if err := m.DownTo(ctx, 53, io.Discard); err != nil {
			t.Fatalf("down to 53: %v", err)
		}
		want("after down", "report_recon", "report_recon_at_idx (at); report_recon_payment_idx (payment_id, at); report_recon_pkey (source, event_id)")
	}
}
