package store_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/testenv"
)

// Every index of the event log and of report_recon is an entry written per
// row: each has a query that needs it (docs/aggregate-report.md, "Indexes
// of the per-event tables"). report_recon's primary key leads with the payment, so it
// also finds a payment's history (00054), and its rows survive the
// migration both ways.
func TestReportIndexesAreTheOnesItsQueriesNeed(t *testing.T) {
	ctx := context.Background()
	m, conn := testenv.Migrator(t)
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
		if got := strings.Join(testenv.IndexDefs(t, conn, table), "; "); got != defs {
			t.Errorf("%s: %s's indexes\n%s, want\n%s", when, table, got, defs)
		}
	}
	const events = "report_events_pkey btree (seq); report_events_source_id_key btree (source, id)"
	for range 2 {
		if err := m.Up(ctx, io.Discard); err != nil {
			t.Fatalf("up: %v", err)
		}
		want("after up", "report_events", events)
		want("after up", "report_recon", "report_recon_at_idx btree (at); report_recon_pkey btree (payment_id, source, event_id)")
		if err := m.DownTo(ctx, 53, io.Discard); err != nil {
			t.Fatalf("down to 53: %v", err)
		}
		want("after down", "report_recon", "report_recon_at_idx btree (at); report_recon_payment_idx btree (payment_id, at); report_recon_pkey btree (source, event_id)")
	}
}
