package main

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// The events a payment causes cost handle-webhook a write only when they
// change something: the first event naming a payment's gateway object
// teaches the map (one row, and its processed_events row); the payment's
// other events, which teach the same object, and the facts no endpoint
// subscribes to (transaction.posted) are acknowledged as ignored, with no
// processed_events row. Once an endpoint subscribes, its type's events are
// delivered to it, once each. A forged event nothing wants is ignored like
// a genuine one (its proof is not even verified); a forged event that would
// teach the map is parked, and cannot make the genuine event after it,
// naming the same object, unwanted.
func TestEventsThatChangeNothingCostNoRow(t *testing.T) {
	g := newRig(t)
	rc := newReceiver(t, nil) // no endpoint yet (and none left by another test)
	ctx := context.Background()
	pid := uuid.NewString()
	gp := "pi_u_" + pid[:8]
	payOf := func(pid, gp, typ string) events.Event {
		return events.Must(events.New(ctx, "capture-payment", typ, pid, map[string]any{"payment_id": pid, "status": "succeeded",
			"amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": gp}))
	}
	pay := func(typ string) events.Event { return payOf(pid, gp, typ) }
	created, authorized, captured := pay(events.TypePaymentCreated), pay(events.TypePaymentAuthorized), pay(events.TypePaymentCaptured)
	posted := fact(t, events.TypeTransactionPosted)
	rows := func(evs ...events.Event) int {
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = ev.ID()
		}
		return g.count(`SELECT count(*) FROM processed_events WHERE consumer = $1 AND id = ANY($2)`, webhooks.Name, ids)
	}
	batch := []events.Event{created, authorized, captured, posted}
	for round := 0; round < 2; round++ {
		g.deliverOK(batch...)
		if n := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway_payment_id = $1 AND payment_id = $2`, gp, pid); n != 1 {
			t.Fatalf("round %d: the payment learned %d times", round, n)
		}
		if n := rows(created); n != 1 {
			t.Fatalf("round %d: the teaching event has %d processed_events rows", round, n)
		}
		if n := rows(authorized, captured, posted); n != 0 {
			t.Fatalf("round %d: %d processed_events rows for events that change nothing", round, n)
		}
	}
	// Alone, one at a time, as without batching: the same.
	g.deliverOK(captured)
	g.deliverOK(posted)
	if n := rows(authorized, captured, posted); n != 0 {
		t.Fatalf("%d processed_events rows after single deliveries", n)
	}

	// An endpoint subscribes: the type's events are now applied, once.
	g.endpoint(rc.srv.URL, events.TypeTransactionPosted)
	posted2 := fact(t, events.TypeTransactionPosted)
	g.deliverOK(posted2, captured)
	g.deliverOK(posted2)
	if n := g.count(`SELECT count(*) FROM webhook_deliveries WHERE event_id = $1`, posted2.ID()); n != 1 {
		t.Fatalf("%d deliveries of a subscribed event", n)
	}
	if n := rows(posted2); n != 1 {
		t.Fatalf("the subscribed event has %d processed_events rows, want 1", n)
	}
	if n := rows(captured); n != 0 {
		t.Fatal("the payment's known reference was recorded when an endpoint wanted another type")
	}

	forge := func(ev events.Event) events.Event {
		ev.SetExtension(events.OriginSigExt, "not-a-signature")
		ev.SetExtension(events.OriginKidExt, testenv.OriginSigner(ev.Source()).KeyID())
		return ev
	}
	parked := func(ev events.Event) int {
		return g.count(`SELECT count(*) FROM dead_letters WHERE consumer = $1 AND event_id = $2`, webhooks.Name, ev.ID())
	}
	// A forgery nothing wants (its object is known): ignored, no row.
	forged := forge(pay(events.TypePaymentCaptured))
	g.deliverOK(forged, posted)
	if n := parked(forged) + rows(forged); n != 0 {
		t.Fatalf("the unwanted forgery left %d dead letters and processed_events rows, want none", n)
	}

	// A forgery naming an object the map does not hold, placed before the
	// genuine event naming it: parked, and the genuine event still teaches.
	pid2 := uuid.NewString()
	gp2 := "pi_u_" + pid2[:8]
	forged2 := forge(events.Must(events.New(ctx, "capture-payment", events.TypePaymentCreated, pid2, map[string]any{
		"payment_id": uuid.NewString(), "status": "succeeded", "amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": gp2})))
	genuine2 := payOf(pid2, gp2, events.TypePaymentCreated)
	g.deliverOK(forged2, genuine2)
	if n := parked(forged2); n != 1 {
		t.Fatalf("the wanted forgery parked %d times, want once", n)
	}
	if n := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway_payment_id = $1 AND payment_id = $2`, gp2, pid2); n != 1 {
		t.Fatalf("the genuine event after the forgery taught the map %d times, want once", n)
	}
	if n := g.count(`SELECT count(*) FROM webhook_payment_refs WHERE gateway_payment_id = $1 AND payment_id <> $2`, gp2, pid2); n != 0 {
		t.Fatalf("the forgery taught the map %d times", n)
	}
}
