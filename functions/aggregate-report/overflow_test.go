package main

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strings"
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

// Anyone may ask process-transaction for a transfer of math.MaxInt64 and
// have it rejected; the rejection is counted with the volume it claimed.
// That must not poison its rollup row: every later, legitimate event of the
// same day, currency, metric and dimension is still counted (it was parked
// as an overflow, and the day's reports silently lost it), in the same
// batch or a later one, streamed and rebuilt alike. Only a report whose
// total does not fit in int64 says so (422 amount_overflow).
func TestARejectedMaxInt64TransferDoesNotPoisonItsRollupRow(t *testing.T) {
	g := newRig(t)
	other := id()
	d := day("2026-03-10")
	h := func(m int) time.Time { return d.Add(9*time.Hour + time.Duration(m)*time.Minute) }
	g.deliver(account(t, h(0), acctA, userA, "ACC-A", "USD"), account(t, h(0), acctB, userB, "ACC-B", "USD"))

	if r := g.deliver(transfer(t, h(1), acctA, other, math.MaxInt64, "USD", "insufficient_funds")); r.Processed != 1 {
		t.Fatalf("the MaxInt64 rejection: %+v", r)
	}
	// A later delivery of one legitimate rejection, and a batch of two (the
	// batch's own sum of the row overflows int64 in memory before it is
	// written), all in the poisoned rows (the hour's and the day's).
	if r := g.deliver(transfer(t, h(2), acctB, other, 2500, "USD", "insufficient_funds")); r.Processed != 1 || r.Parked != 0 {
		t.Fatalf("a legitimate rejection after it: %+v, want processed, not parked", r)
	}
	if r := g.deliver(transfer(t, h(3), acctA, other, math.MaxInt64, "USD", "insufficient_funds"),
		transfer(t, h(4), acctB, other, 500, "USD", "insufficient_funds")); r.Processed != 2 || r.Parked != 0 {
		t.Fatalf("a batch with another MaxInt64 rejection: %+v, want both processed", r)
	}
	if n := g.count(`SELECT count(*) FROM dead_letters`); n != 0 {
		t.Fatalf("%d events parked", n)
	}

	// 2 × MaxInt64 + 3000, exactly.
	want := []string{
		"account.created  USD = 2/0", "acct:aaaa account.created  USD = 1/0",
		"acct:aaaa transfer.rejected insufficient_funds USD = 2/18446744073709551614",
		"acct:bbbb account.created  USD = 1/0",
		"acct:bbbb transfer.rejected insufficient_funds USD = 2/3000",
		"transfer.rejected insufficient_funds USD = 4/18446744073709554614",
	}
	if got := g.rollupRows(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("rollups\n got  %q\n want %q", got, want)
	}

	// The customer who made the legitimate requests sees them counted.
	var s struct {
		Currencies []struct {
			Transfers struct {
				Rejected struct{ Count, Amount int64 }
			}
		}
	}
	g.getJSON("/reports/summary?from=2026-03-10&to=2026-03-11", asCustomer(userB), &s)
	if len(s.Currencies) != 1 || s.Currencies[0].Transfers.Rejected.Count != 2 || s.Currencies[0].Transfers.Rejected.Amount != 3000 {
		t.Fatalf("customer B's summary: %+v, want 2 rejections of 3000", s)
	}
	// The whole system's figure of that day does not fit in int64: the
	// report says so, for the day rows and the hour rows alike.
	for _, path := range []string{
		"/reports/summary?from=2026-03-10&to=2026-03-11",
		"/reports/summary?from=2026-03-10T09:00:00Z&to=2026-03-10T10:00:00Z",
		"/reports/timeseries?metric=transfer.rejected&granularity=day&from=2026-03-10&to=2026-03-11&currency=USD",
		"/reports/timeseries?metric=transfer.rejected&granularity=hour&from=2026-03-10T09:00:00Z&to=2026-03-10T10:00:00Z&currency=USD",
	} {
		rec := g.request(http.MethodGet, path, asAdmin, nil)
		if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), `"amount_overflow"`) {
			t.Errorf("GET %s = %d %s, want 422 amount_overflow", path, rec.Code, rec.Body)
		}
	}

	// Replaying the log adds up the same wide figures: check agrees, and a
	// rebuild writes them back.
	if c := g.check("2026-03-10", "2026-03-11"); !c.Equal {
		t.Fatalf("check: %+v", c)
	}
	if _, err := g.d.Pool.Exec(context.Background(), `DELETE FROM report_rollups`); err != nil {
		t.Fatal(err)
	}
	if rec := g.request(http.MethodPost, "/admin/rebuild", asAdmin, []byte(`{"from":"2026-03-10","to":"2026-03-11"}`),
		"Content-Type", "application/json"); rec.Code != http.StatusOK {
		t.Fatalf("rebuild = %d %s", rec.Code, rec.Body)
	}
	if got := g.rollupRows(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("rebuilt rollups\n got  %q\n want %q", got, want)
	}
}
