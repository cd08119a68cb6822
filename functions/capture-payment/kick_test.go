package main

import (
	"context"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// publisherTrips are the outbox publisher's round trips among trips.
func publisherTrips(trips [][]string) int {
	n := 0
	for _, trip := range trips {
		if publisher(trip[0]) || publisher(trip[len(trip)-1]) {
			n++
		}
	}
	return n
}

// A delivery kicks the outbox publisher only when its handlers wrote
// outbox events: one that writes none (a repeated confirmation, ignored;
// an update about an object the payment no longer uses, processed with
// no write) makes no publisher pass, and one that writes an event (the
// first confirmation of a delayed payment: payment.captured) gets it
// published by the pass its kick starts, with no tick (issue 20: the
// empty passes were 0.126 read-only commits per webhook).
func TestDeliveriesKickThePublisherOnlyWhenTheyWroteEvents(t *testing.T) {
	g, w := wiredRig(t)
	p := g.pay(2500, "USD", "pm_sandbox_delayed", "automatic", true)
	if p.Status != payments.Processing {
		t.Fatalf("delayed: %+v", p)
	}
	quiet(w, w.mark()) // the payment's own events published

	first := gatewayUpdated(t, p, "succeeded", time.Now())
	m := w.mark()
	if res := g.deliverFor(first); res.Processed != 1 {
		t.Fatalf("first confirmation: %+v, want it processed", res)
	}
	// Published by the kick's pass: the row leaves the outbox, no tick.
	var left int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(*)::int FROM outbox WHERE source = $1 AND key = $2`,
			name, p.ID).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
	}
	if left != 0 {
		t.Fatalf("%d outbox rows of payment %s still unpublished after the delivery that wrote them", left, p.ID)
	}
	if n := publisherTrips(quiet(w, m)); n == 0 {
		t.Fatal("the delivery that wrote payment.captured made no publisher pass")
	}

	nothing := []events.Event{
		gatewayUpdated(t, p, "succeeded", time.Now()), // repeated: ignored
		gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) { // another object: processed, no write
			d["gateway"], d["object_type"] = "stripe", "payment_intent"
		}),
	}
	for _, ev := range nothing {
		m := w.mark()
		res := g.deliverFor(ev)
		if res.Processed+res.Ignored != 1 || res.Parked != 0 {
			t.Fatalf("delivery %+v, want it processed or ignored", res)
		}
		if n := publisherTrips(quiet(w, m)); n != 0 {
			t.Errorf("a delivery that wrote no event made %d publisher round trips, want 0", n)
		}
	}
}
