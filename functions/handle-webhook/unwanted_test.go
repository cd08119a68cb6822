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
// delivered to it, once each. A forged event is still parked, whether or
// not anything wants its type.
func TestEventsThatChangeNothingCostNoRow(t *testing.T) {
	g := newRig(t)
	rc := newReceiver(t, nil) // no endpoint yet (and none left by another test)
	ctx := context.Background()
	pid := uuid.NewString()
	gp := "pi_u_" + pid[:8]
	pay := func(typ string) events.Event {
		return events.Must(events.New(ctx, "capture-payment", typ, pid, map[string]any{"payment_id": pid, "status": "succeeded",
			"amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": gp}))
	}
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

	// A forgery of a type nobody wants: parked, never ignored unseen.
	forged := pay(events.TypePaymentCaptured)
	forged.SetExtension(events.OriginSigExt, "not-a-signature")
	forged.SetExtension(events.OriginKidExt, testenv.OriginSigner(forged.Source()).KeyID())
	g.deliverOK(forged, posted)
	if n := g.count(`SELECT count(*) FROM dead_letters WHERE consumer = $1 AND event_id = $2`, webhooks.Name, forged.ID()); n != 1 {
		t.Fatalf("the forged event parked %d times, want once", n)
	}
}
