package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/billfn/billfn/functions/aggregate-report/store"
)

func (g *rig) tick() int {
	g.t.Helper()
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Tick())
	return rec.Code
}

// The schedule tick writes the daily snapshots, so yesterday's reports are
// one indexed read; an event that lands later for that day removes them
// (the reports are computed again) until the next tick rewrites them.
func TestTickWritesDailySnapshotsThatLateEventsInvalidate(t *testing.T) {
	g := newRig(t)
	g.d.Events.TickEvery = time.Millisecond
	g.setNow(at("2026-03-15T12:00:00Z"))
	y := day("2026-03-14")
	pay := id()
	g.deliver(
		transfer(t, y.Add(10*time.Hour), acctA, acctB, 1000, "USD", "posted"),
		transfer(t, y.Add(11*time.Hour), acctA, acctB, 50, "EUR", "posted"),
		payment(t, y.Add(12*time.Hour), "captured", paymentFields{id: pay, account: acctA, cur: "USD", gateway: "stripe", amount: 700, captured: 700}),
		subscription(t, day("2026-02-10"), "created", id(), acctA, "active", 2900, "USD"),
		invoice(t, day("2026-03-01"), "finalized", invoiceFields{id: id(), account: acctA, cur: "USD", status: "open", due: "2026-03-10", total: 400, dueAmount: 400}),
	)
	notPosted := testutil.ToFloat64(store.ReconMismatches.WithLabelValues("capture_not_posted"))
	if code := g.tick(); code != 200 {
		t.Fatalf("tick = %d", code)
	}
	// The settled day's mismatch (the capture the ledger never posted) is
	// counted once, when its reconciliation is written (issue 19).
	if d := testutil.ToFloat64(store.ReconMismatches.WithLabelValues("capture_not_posted")) - notPosted; d != 1 {
		t.Errorf("billfn_reconciliation_mismatches_total{reason=\"capture_not_posted\"} moved by %v, want 1", d)
	}
	kinds := map[string]int64{}
	rows, _ := g.d.Pool.Query(context.Background(), `SELECT kind, count(*) FROM report_snapshots GROUP BY kind`)
	for rows.Next() {
		var k string
		var n int64
		_ = rows.Scan(&k, &n)
		kinds[k] = n
	}
	if kinds["summary"] != 7 || kinds["aging"] != 7 || kinds["reconciliation"] != 7 || kinds["mrr"] != 1 {
		t.Fatalf("snapshots written: %v", kinds)
	}
	if n := g.count(`SELECT count(*) FROM report_snapshots WHERE kind = 'mrr' AND day = '2026-02-28'`); n != 1 {
		t.Fatal("no MRR snapshot for February (filed under its last day)")
	}

	var s store.Summary
	g.getJSON("/reports/summary?from=2026-03-14&to=2026-03-15", asAdmin, &s)
	if s.Source != "snapshot" || len(s.Currencies) != 2 || s.Currencies[1].Transfers.Posted.Amount != 1000 {
		t.Fatalf("yesterday's summary: %+v", s)
	}
	g.getJSON("/reports/summary?from=2026-03-14&to=2026-03-15&currency=EUR", asAdmin, &s)
	if s.Source != "snapshot" || len(s.Currencies) != 1 || s.Currencies[0].Currency != "EUR" {
		t.Fatalf("yesterday's EUR summary: %+v", s)
	}
	var rec store.Reconciliation
	g.getJSON("/reports/reconciliation", asAdmin, &rec) // default: yesterday
	if rec.Source != "snapshot" || rec.Date != "2026-03-14" || len(rec.Mismatches) != 1 || rec.Mismatches[0].PaymentID != pay {
		t.Fatalf("yesterday's reconciliation: %+v", rec)
	}
	var a store.Aging
	g.getJSON("/reports/aging?as_of=2026-03-14", asAdmin, &a)
	if a.Source != "snapshot" || a.Currencies[0].Total.Amount != 400 {
		t.Fatalf("aging snapshot: %+v", a)
	}
	var m store.MRR
	g.getJSON("/reports/mrr?month=2026-02", asAdmin, &m)
	if m.Source != "snapshot" || m.Currencies[0].Closing != 2900 {
		t.Fatalf("MRR snapshot: %+v", m)
	}
	// Customers never get the whole system's snapshot.
	g.getJSON("/reports/summary?from=2026-03-14&to=2026-03-15", asCustomer(userA), &s)
	if s.Source != "rollups" || len(s.Currencies) != 0 {
		t.Fatalf("customer summary: %+v", s)
	}

	// The ledger posts the capture late (00:05 today): yesterday's
	// snapshots go, and the figures are computed again from the rollups.
	g.deliver(transfer(t, at("2026-03-15T00:05:00Z"), acctB, acctA, 700, "USD", "posted", withMeta("payment_capture", pay, "stripe")))
	g.getJSON("/reports/reconciliation?date=2026-03-14", asAdmin, &rec)
	if rec.Source != "rollups" || rec.Status != "matched" {
		t.Fatalf("reconciliation after the late posting: %+v", rec)
	}
	g.deliver(transfer(t, y.Add(23*time.Hour), acctA, acctB, 5, "USD", "posted"))
	g.getJSON("/reports/summary?from=2026-03-14&to=2026-03-15&currency=USD", asAdmin, &s)
	if s.Source != "rollups" || s.Currencies[0].Transfers.Posted.Amount != 1005 {
		t.Fatalf("summary after a late event: %+v", s)
	}
	// The next tick writes them again; snapshots of untouched days stayed.
	if code := g.tick(); code != 200 {
		t.Fatalf("second tick = %d", code)
	}
	// (the cached answer computed from the rollups is still current: its
	// version has not moved, so it may be served as it is)
	g.getJSON("/reports/summary?from=2026-03-14&to=2026-03-15&currency=USD", asAdmin, &s)
	if s.Currencies[0].Transfers.Posted.Amount != 1005 {
		t.Fatalf("summary after the second tick: %+v", s)
	}
	if n := g.count(`SELECT count(*) FROM report_snapshots WHERE kind = 'summary' AND day = '2026-03-14'
		AND body->'currencies'->1->'transfers'->'posted'->>'amount' = '1005'`); n != 1 {
		t.Fatal("the second tick did not rewrite yesterday's summary")
	}
	if n := g.count(`SELECT count(*) FROM report_snapshots WHERE kind = 'summary'`); n != 7 {
		t.Fatalf("%d summary snapshots", n)
	}
}

// A snapshot computed while an event of its days lands is not stored: it
// would be stale, and nothing would ever remove it.
func TestSnapshotIsNotStoredWhenItsDaysChangedMeanwhile(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-14")
	g.deliver(transfer(t, d.Add(time.Hour), acctA, acctB, 1, "USD", "posted"))
	job := store.SnapshotJob{Kind: "summary", Day: d, From: d, To: d.AddDate(0, 0, 1), Compute: func(ctx context.Context) (any, error) {
		s, err := g.svc.Store.Summary(ctx, store.Scope{All: true}, d, d.AddDate(0, 0, 1), "")
		g.deliver(transfer(t, d.Add(2*time.Hour), acctA, acctB, 1, "USD", "posted"))
		return s, err
	}}
	stored, err := g.svc.Store.WriteSnapshot(context.Background(), job)
	if err != nil || stored {
		t.Fatalf("stored=%v err=%v, want not stored", stored, err)
	}
	job.Compute = func(ctx context.Context) (any, error) {
		return g.svc.Store.Summary(ctx, store.Scope{All: true}, d, d.AddDate(0, 0, 1), "")
	}
	if stored, err = g.svc.Store.WriteSnapshot(context.Background(), job); err != nil || !stored {
		t.Fatalf("stored=%v err=%v on a quiet day", stored, err)
	}
}
