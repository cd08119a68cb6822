package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// deliverFor delivers evs (one, or a batch) and returns the receiver's
// answer.
func (g *rig) deliverFor(evs ...events.Event) events.Result {
	g.t.Helper()
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Delivery(g.t, evs...))
	return decode[events.Result](g.t, rec, 200)
}

// processedRows counts the processed_events rows of evs.
func (g *rig) processedRows(evs ...events.Event) int {
	g.t.Helper()
	return testenv.ProcessedRows(g.t, g.d.Pool, name, evs...)
}

// A gateway's repeated confirmation of a payment that succeeded changes
// nothing: it is acknowledged as ignored, with no transaction and no
// processed_events row, alone or in a batch, named by billfn's id or by
// the gateway's object, whatever it reports (a late failure too). The
// first confirmation, a refund and a first dispute of the succeeded
// payment still apply, and a repeated dispute is ignored in turn.
func TestRepeatedConfirmationsCostNoRow(t *testing.T) {
	g := newRig(t)
	p := g.pay(2500, "USD", "pm_sandbox_delayed", "automatic", true)
	if p.Status != payments.Processing {
		t.Fatalf("delayed: %+v", p)
	}
	t0 := time.Now()
	first := gatewayUpdated(t, p, "succeeded", t0)
	if res := g.deliverFor(first); res.Processed != 1 || res.Ignored != 0 {
		t.Fatalf("first confirmation: %+v, want it processed", res)
	}
	if after := g.get(p.ID); after.Status != payments.Succeeded || after.AmountCaptured != 2500 {
		t.Fatalf("after the first confirmation: %+v", after)
	}
	if n := g.processedRows(first); n != 1 {
		t.Fatalf("the first confirmation has %d processed_events rows, want 1", n)
	}
	again := []events.Event{
		gatewayUpdated(t, p, "succeeded", t0.Add(time.Second)),
		gatewayUpdated(t, p, "succeeded", t0.Add(time.Second), func(d map[string]any) { delete(d, "payment_id") }),
		gatewayUpdated(t, p, "failed", t0.Add(time.Minute)),   // a failure after success
		gatewayUpdated(t, p, "canceled", t0.Add(time.Minute)), // too late to cancel
	}
	if res := g.deliverFor(again...); res.Ignored != len(again) || res.Processed != 0 || res.Parked != 0 {
		t.Fatalf("repeated confirmations in a batch: %+v, want all ignored", res)
	}
	for _, ev := range again {
		if res := g.deliverFor(ev); res.Ignored != 1 {
			t.Fatalf("a repeated confirmation alone: %+v, want it ignored", res)
		}
	}
	if n := g.processedRows(again...); n != 0 {
		t.Fatalf("%d processed_events rows for confirmations that change nothing", n)
	}
	if after := g.get(p.ID); after.Status != payments.Succeeded || after.AmountCaptured != 2500 || after.LastPaymentError != nil {
		t.Fatalf("after repeated confirmations: %+v", after)
	}

	// A refund made at the gateway still applies to the succeeded payment.
	refund := gatewayUpdated(t, p, "refunded", time.Now(), func(d map[string]any) {
		d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "charge", "charge.refunded", "ch_1"
		d["amount_refunded"], d["amount_received"] = 1000, 2500
	})
	if res := g.deliverFor(refund); res.Processed != 1 {
		t.Fatalf("refund update: %+v, want it processed", res)
	}
	if after := g.get(p.ID); after.AmountRefunded != 1000 {
		t.Fatalf("refunded %d, want 1000", after.AmountRefunded)
	}
	// The first dispute applies; the next is ignored.
	dispute := func() events.Event {
		return gatewayUpdated(t, p, "disputed", time.Now(), func(d map[string]any) {
			d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "dispute", "charge.dispute.created", "dp_1"
		})
	}
	if res := g.deliverFor(dispute()); res.Processed != 1 {
		t.Fatalf("first dispute: %+v, want it processed", res)
	}
	if after := g.get(p.ID); after.DisputedAt == nil {
		t.Fatal("dispute not recorded")
	}
	second := dispute()
	if res := g.deliverFor(second); res.Ignored != 1 || g.processedRows(second) != 0 {
		t.Fatalf("second dispute: %+v, want it ignored without a row", res)
	}
}

// What Wanted cannot rule out still goes to the handler: a first failure
// applies, and on a succeeded payment news that does not match it (an
// amount, a currency, a payment billfn does not know) is parked, not
// ignored. A forgery that Wanted wants (a mismatch) is parked too; a
// forged repeated confirmation is ignored like a genuine one (Wanted runs
// before the origin check, and it changes nothing here).
func TestUnwantedConfirmationsDoNotHideWhatIsParked(t *testing.T) {
	g := newRig(t)
	q := g.pay(1200, "USD", "pm_sandbox_delayed", "automatic", true)
	if res := g.deliverFor(gatewayUpdated(t, q, "failed", time.Now())); res.Processed != 1 {
		t.Fatalf("first failure: %+v, want it processed", res)
	}
	if after := g.get(q.ID); after.Status != payments.RequiresPaymentMethod {
		t.Fatalf("after a failure: %+v", after)
	}

	p := g.pay(2500, "USD", "pm_sandbox_delayed", "automatic", true)
	g.deliverFor(gatewayUpdated(t, p, "succeeded", time.Now()))
	amount := gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) { d["amount"] = 9999 })
	currency := gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) { d["currency"] = "EUR" })
	unknown := gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) {
		delete(d, "payment_id")
		d["gateway_payment_id"] = "pi_nobody_knows"
	})
	forge := func(ev events.Event) events.Event {
		ev.SetExtension(events.OriginSigExt, "not-a-signature")
		ev.SetExtension(events.OriginKidExt, testenv.OriginSigner(ev.Source()).KeyID())
		return ev
	}
	forged := forge(gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) { d["amount"] = 1 }))
	bad := []events.Event{amount, currency, unknown, forged}
	if res := g.deliverFor(bad...); res.Parked != len(bad) || res.Ignored != 0 {
		t.Fatalf("mismatches and a forgery: %+v, want all parked", res)
	}
	if r := g.deliverFor(forge(gatewayUpdated(t, p, "succeeded", time.Now()))); r.Ignored != 1 || r.Parked != 0 {
		t.Fatalf("a forged repeated confirmation: %+v, want it ignored", r)
	}
	if after := g.get(p.ID); after.Status != payments.Succeeded {
		t.Fatalf("after the forgeries: %+v", after)
	}
	for _, ev := range bad {
		var n int
		_ = g.d.Pool.QueryRow(context.Background(), `SELECT count(*)::int FROM dead_letters WHERE consumer = $1 AND event_id = $2`,
			name, ev.ID()).Scan(&n)
		if n != 1 {
			t.Fatalf("event %s parked %d times, want once", ev.ID(), n)
		}
	}
}
