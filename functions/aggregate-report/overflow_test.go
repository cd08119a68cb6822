package main

import (
	"encoding/json"
	"math"
	"net/http"
	"testing"
	"time"
)

// Any customer can have process-transaction reject a transfer of
// math.MaxInt64 (insufficient funds, a currency mismatch): the rejection
// is counted with the volume it claimed. Two such rejections are more than
// int64 holds together, and a report that adds them must say so with a
// 422 problem, not wrap to a negative figure nor fail with a 500.
func TestReportFiguresBeyondInt64AreAProblemNotAWrap(t *testing.T) {
	g := newRig(t)
	userA, acctA, other := id(), id(), id()
	d1, d2 := day("2026-03-10").Add(9*3600e9), day("2026-03-11").Add(9*3600e9)
	g.deliver(account(t, d1, acctA, userA, "ACC-OVERFLOW", "USD"),
		// the same day, two reasons: two rollup rows the summary adds in Go
		transfer(t, d1, acctA, other, math.MaxInt64, "USD", "insufficient_funds"),
		transfer(t, d1, acctA, other, math.MaxInt64, "USD", "currency_mismatch"),
		// the next day, the same reason: two rollup rows Postgres adds
		transfer(t, d2, acctA, other, math.MaxInt64, "USD", "insufficient_funds"))

	check := func(path string, who caller) {
		t.Helper()
		rec := g.request(http.MethodGet, path, who, nil)
		if rec.Code == http.StatusOK {
			var body map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			t.Errorf("GET %s = 200, figures wrapped: %s", path, rec.Body)
			return
		}
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != http.StatusUnprocessableEntity || p.Code != "amount_overflow" {
			t.Errorf("GET %s = %d %s, want 422 amount_overflow", path, rec.Code, rec.Body)
		}
	}
	for _, who := range []caller{asAdmin, asCustomer(userA)} {
		check("/reports/summary?from=2026-03-10&to=2026-03-11", who)
		check("/reports/summary?from=2026-03-10&to=2026-03-12", who)
		check("/reports/summary.csv?from=2026-03-10&to=2026-03-12", who)
		check("/reports/timeseries?metric=transfer.rejected&granularity=month&from=2026-03-01&to=2026-04-01&currency=USD", who)
	}

	// The tick's daily snapshots skip the day that overflows, write the
	// others, and the tick succeeds (it failed on that day forever).
	g.d.Events.TickEvery = time.Millisecond
	g.setNow(at("2026-03-15T12:00:00Z"))
	if code := g.tick(); code != 200 {
		t.Fatalf("tick = %d", code)
	}
	if n := g.count(`SELECT count(*) FROM report_snapshots WHERE kind = 'summary' AND day = '2026-03-10'`); n != 0 {
		t.Error("a wrapped summary of 2026-03-10 was stored as a snapshot")
	}
	if n := g.count(`SELECT count(*) FROM report_snapshots WHERE kind = 'summary' AND day = '2026-03-11'`); n != 1 {
		t.Error("the summary of 2026-03-11, whose figures fit, has no snapshot")
	}
	check("/reports/summary?from=2026-03-10&to=2026-03-11", asAdmin)

	// MRR: a plan of more than MaxInt64/12 a month has no ARR in int64.
	sub := id()
	g.deliver(subscription(t, day("2026-02-10"), "created", sub, acctA, "active", math.MaxInt64/12+1, "USD"))
	check("/reports/mrr?month=2026-02", asAdmin)
}
