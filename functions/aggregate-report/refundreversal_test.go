package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

// A refund that succeeded and then failed at the gateway (Stripe: the card
// was closed, the money came back to the merchant) is reported by
// capture-payment as billfn.refund.failed, with a refund_reversal posting
// SYS-CLEARING → the account. The reports must not keep showing that
// money as refunded (it was counted as refunded and as a failed refund
// besides), and the reconciliation must hold the gateway's reversal
// against the ledger's, in either order of arrival.
func TestAReversedRefundIsNotMoneyRefunded(t *testing.T) {
	d1, d2 := day("2026-03-10"), day("2026-03-11")
	h := func(d time.Time, hh int) time.Time { return d.Add(time.Duration(hh) * time.Hour) }
	clearing := "c1ea0000-0000-4000-8000-000000000001"
	pay, payKept, payUnposted := id(), id(), id()
	captured := func(p string) []events.Event {
		return []events.Event{
			payment(t, h(d1, 9), "captured", paymentFields{id: p, account: acctA, cur: "USD", gateway: "stripe", amount: 10000, captured: 10000}),
			transfer(t, h(d1, 9), clearing, acctA, 10000, "USD", "posted", withMeta("payment_capture", p, "stripe")),
		}
	}
	var evs []events.Event
	evs = append(evs, account(t, h(d1, 0), acctA, userA, "ACC-A", "USD"))
	for _, p := range []string{pay, payKept, payUnposted} {
		evs = append(evs, captured(p)...)
		evs = append(evs,
			refund(t, h(d1, 10), "succeeded", "re_"+p[:8], p, acctA, 3000, "USD", "stripe"),
			transfer(t, h(d1, 10), acctA, clearing, 3000, "USD", "posted", withMeta("refund", p, "stripe")))
	}
	evs = append(evs,
		// pay's refund fails the next day, and the ledger posts its reversal.
		refund(t, h(d2, 8), "failed", "re_"+pay[:8], pay, acctA, 3000, "USD", "stripe"),
		transfer(t, h(d2, 8), clearing, acctA, 3000, "USD", "posted", withMeta("refund_reversal", pay, "stripe")),
		// payUnposted's refund fails too, but the ledger never returns it.
		refund(t, h(d2, 9), "failed", "re_"+payUnposted[:8], payUnposted, acctA, 3000, "USD", "stripe"),
		// A refund that failed without ever succeeding moved no money.
		refund(t, h(d2, 10), "failed", "re_never", payKept, acctA, 500, "USD", "stripe"),
	)

	type figures struct {
		Both, Day2 map[string]any
		Recon      map[string]any
	}
	collect := func(order []events.Event) (*rig, figures) {
		g := newRig(t)
		g.setNow(d2.AddDate(0, 0, 3))
		for _, ev := range order {
			if r := g.deliver(ev); r.Processed != 1 {
				t.Fatalf("delivery of %s: %+v", ev.Type(), r)
			}
		}
		var f figures
		g.getJSON("/reports/summary?from=2026-03-10&to=2026-03-12&currency=USD", asAdmin, &f.Both)
		g.getJSON("/reports/summary?from=2026-03-11&to=2026-03-12&currency=USD", asAdmin, &f.Day2)
		g.getJSON("/reports/reconciliation?date=2026-03-11", asAdmin, &f.Recon)
		if c := g.check("2026-03-10", "2026-03-12"); !c.Equal {
			t.Fatalf("check: %+v", c)
		}
		return g, f
	}
	g, f := collect(evs)

	// Over both days: three refunds of 3000 succeeded, two came back; one
	// refund of 500 failed outright. Money refunded: 3000.
	refunds := func(s map[string]any) string {
		cur := s["currencies"].([]any)[0].(map[string]any)
		b, _ := json.Marshal(cur["refunds"])
		gw := cur["payments"].([]any)[0].(map[string]any)
		pb, _ := json.Marshal(map[string]any{"refunded": gw["refunded"], "refunds_reversed": gw["refunds_reversed"], "refunds_failed": gw["refunds_failed"]})
		return string(b) + " " + string(pb)
	}
	want := `{"failed":{"amount":500,"count":1},"net":3000,"reversed":{"amount":6000,"count":2},"succeeded":{"amount":9000,"count":3}}` +
		` {"refunded":{"amount":9000,"count":3},"refunds_failed":{"amount":500,"count":1},"refunds_reversed":{"amount":6000,"count":2}}`
	if got := refunds(f.Both); got != want {
		t.Errorf("refunds over both days:\n got  %s\n want %s", got, want)
	}
	// The second day alone: money came back, none went out.
	want = `{"failed":{"amount":500,"count":1},"net":-6000,"reversed":{"amount":6000,"count":2},"succeeded":{"amount":0,"count":0}}` +
		` {"refunded":{"amount":0,"count":0},"refunds_failed":{"amount":500,"count":1},"refunds_reversed":{"amount":6000,"count":2}}`
	if got := refunds(f.Day2); got != want {
		t.Errorf("refunds of the second day:\n got  %s\n want %s", got, want)
	}

	// The second day's reconciliation: the gateway gave back 6000 of its
	// refunds, the ledger 3000; pay's reversal matches its posting, and
	// payUnposted's ledger still holds a refund the gateway reversed.
	gws, _ := json.Marshal(f.Recon["gateways"])
	if want := `[{"currency":"USD","difference":3000,"gateway":"stripe","gateway_captured":0,"gateway_net":6000,"gateway_refunded":-6000,` +
		`"ledger_captured":0,"ledger_net":3000,"ledger_refunded":-3000,"mismatches":1,"status":"mismatch"}]`; string(gws) != want {
		t.Errorf("reconciliation totals of 2026-03-11:\n got  %s\n want %s", gws, want)
	}
	ms := f.Recon["mismatches"].([]any)
	if len(ms) != 1 {
		t.Fatalf("mismatches of 2026-03-11: %v, want payUnposted's only", ms)
	}
	m := ms[0].(map[string]any)
	if m["payment_id"] != payUnposted || m["gateway_refunded"] != 0.0 || m["ledger_refunded"] != 3000.0 ||
		strings.Join(anyStrings(m["reasons"]), ",") != "refund_posted_in_excess" {
		t.Errorf("payUnposted's mismatch: %v", m)
	}
	// The first day is as it was: refunds succeeded and posted.
	var r1 map[string]any
	g.getJSON("/reports/reconciliation?date=2026-03-10", asAdmin, &r1)
	if r1["status"] != "matched" {
		t.Errorf("2026-03-10: %v", r1)
	}

	// The same events in reverse order (the failure before the success
	// it reverses, the reversal's posting before both) give the same figures.
	reversed := slices.Clone(evs)
	slices.Reverse(reversed)
	_, f2 := collect(reversed)
	a, _ := json.Marshal(f)
	b, _ := json.Marshal(f2)
	if string(a) != string(b) {
		t.Errorf("reversed deliveries give other figures:\n in order %s\n reversed %s", a, b)
	}
}

func anyStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// capture-payment may record a gateway's refunds first as one total (a
// Stripe charge.refunded carries the running total, no refund id), then
// take a refund its own news names out of that total: the part gets its
// own refund id, and no event, for its success was reported inside the
// total's. When that part then fails, its billfn.refund.failed says it had
// succeeded ("reversed": true, from the refund's owner): the money came
// back, though this function never saw that refund id succeed. It is a
// reversal, not a refund that failed outright.
func TestARefundReversedAfterBeingTakenOutOfATotalIsMoneyBack(t *testing.T) {
	d1 := day("2026-03-10")
	h := func(hh int) time.Time { return d1.Add(time.Duration(hh) * time.Hour) }
	clearing := "c1ea0000-0000-4000-8000-000000000001"
	pay, total, part := id(), id(), id()
	split := refund(t, h(11), "failed", part, pay, acctA, 2000, "USD", "stripe")
	var data map[string]any
	if err := json.Unmarshal(split.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data["reversed"] = true
	split = newEvent(t, "capture-payment", events.TypeRefundFailed, pay, h(11), data)
	evs := []events.Event{
		account(t, h(0), acctA, userA, "ACC-A", "USD"),
		payment(t, h(9), "captured", paymentFields{id: pay, account: acctA, cur: "USD", gateway: "stripe", amount: 10000, captured: 10000}),
		transfer(t, h(9), clearing, acctA, 10000, "USD", "posted", withMeta("payment_capture", pay, "stripe")),
		refund(t, h(10), "succeeded", total, pay, acctA, 3000, "USD", "stripe"),
		transfer(t, h(10), acctA, clearing, 3000, "USD", "posted", withMeta("refund", pay, "stripe")),
		split,
		transfer(t, h(11), clearing, acctA, 2000, "USD", "posted", withMeta("refund_reversal", pay, "stripe")),
	}
	g := newRig(t)
	g.setNow(d1.AddDate(0, 0, 3))
	for _, ev := range evs {
		if r := g.deliver(ev); r.Processed != 1 {
			t.Fatalf("delivery of %s: %+v", ev.Type(), r)
		}
	}
	var s map[string]any
	g.getJSON("/reports/summary?from=2026-03-10&to=2026-03-11&currency=USD", asAdmin, &s)
	got, _ := json.Marshal(s["currencies"].([]any)[0].(map[string]any)["refunds"])
	if want := `{"failed":{"amount":0,"count":0},"net":1000,"reversed":{"amount":2000,"count":1},"succeeded":{"amount":3000,"count":1}}`; string(got) != want {
		t.Errorf("refunds:\n got  %s\n want %s", got, want)
	}
	var r map[string]any
	g.getJSON("/reports/reconciliation?date=2026-03-10", asAdmin, &r)
	if r["status"] != "matched" {
		t.Errorf("reconciliation of 2026-03-10: %v", r)
	}
	if c := g.check("2026-03-10", "2026-03-11"); !c.Equal {
		t.Fatalf("check: %+v", c)
	}
}
