package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

// An account (an admin's overdraft) sends MaxInt64 on Monday, gets it back
// on Tuesday and sends it again on Wednesday: each day row fits, but the
// week's folded row does not, and the tick's compaction failed every tick
// from then on (503), retrying that week forever. Now the week is marked and skipped, and
// a ranking over it is the amount_overflow problem, from the day rows.
func TestAWeekThatDoesNotFitDoesNotFailEveryTick(t *testing.T) {
	g := newRig(t)
	a, b := id(), id()
	mon := day("2026-03-02")
	g.deliver(account(t, mon, a, id(), "ACC-OD", "USD"), account(t, mon, b, id(), "ACC-B", "USD"),
		transfer(t, mon.Add(time.Hour), a, b, math.MaxInt64, "USD", "posted"),
		transfer(t, mon.AddDate(0, 0, 1).Add(time.Hour), b, a, math.MaxInt64, "USD", "posted"),
		transfer(t, mon.AddDate(0, 0, 2).Add(time.Hour), a, b, math.MaxInt64, "USD", "posted"))
	g.d.Events.TickEvery = time.Millisecond
	g.setNow(at("2026-03-15T12:00:00Z"))
	if code := g.tick(); code != 200 {
		t.Fatalf("tick = %d", code)
	}
	if code := g.tick(); code != 200 {
		t.Fatalf("second tick = %d", code)
	}
	// The week is marked, not folded, and not used.
	if n := g.count(`SELECT count(*) FROM report_week_compactions WHERE week = '2026-03-02' AND version < 0`); n != 1 {
		t.Errorf("the overflowing week is not marked as such")
	}
	if n := g.count(`SELECT count(*) FROM report_account_weeks WHERE week = '2026-03-02'`); n != 0 {
		t.Errorf("%d folded rows of the overflowing week", n)
	}
	rec := g.request("GET", "/reports/top-accounts?currency=USD&from=2026-03-02&to=2026-03-09&limit=5", asAdmin, nil)
	if rec.Code != 422 || !strings.Contains(rec.Body.String(), `"amount_overflow"`) {
		t.Errorf("top accounts over that week = %d %s, want 422 amount_overflow", rec.Code, rec.Body)
	}
	rec = g.request("GET", "/reports/top-accounts?currency=USD&from=2026-03-03&to=2026-03-04&limit=5", asAdmin, nil)
	if rec.Code != 200 {
		t.Errorf("top accounts of one day = %d %s", rec.Code, rec.Body)
	}
}
