package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// processedRows counts the consumer's processed_events rows of evs.
func (g *rig) processedRows(evs ...events.Event) int {
	g.t.Helper()
	return testenv.ProcessedRows(g.t, testenv.Pool(g.t), g.consumer, evs...)
}

// Receiver.Wanted: the events it says change nothing now are acknowledged
// as ignored, alone or in a batch, without a transaction or a
// processed_events row; when the consumer's state changes (here: amounts
// of zero become wanted), a redelivery is the event's first application,
// and from then on it is a duplicate like any other.
func TestUnwantedEventsLeaveNoRowUntilTheyAreWanted(t *testing.T) {
	g := newRig(t, true)
	zeroWanted := false
	var asked int
	g.rc.Wanted = func(_ context.Context, evs []events.Event) ([]bool, error) {
		out := make([]bool, len(evs))
		for i, ev := range evs {
			asked++
			var p payment
			out[i] = events.Decode(ev, &p) != nil || p.Amount != 0 || zeroWanted
		}
		return out, nil
	}
	zero1, zero2, paying := newEvent(t, 0), newEvent(t, 0), newEvent(t, 7)
	batch, _ := json.Marshal([]events.Event{zero1, paying, zero2})
	for round := 0; round < 2; round++ {
		code, res := g.send(signed(batch, http.Header{"Content-Type": {events.ContentTypeBatch}}), batch)
		if code != 200 || res.Ignored != 2 || res.Processed+res.Duplicates != 1 || (round == 0) != (res.Processed == 1) {
			t.Fatalf("round %d, batch: %d %+v", round, code, res)
		}
		if code, res := g.deliver(zero1); code != 200 || res.Ignored != 1 {
			t.Fatalf("round %d, alone: %d %+v", round, code, res)
		}
	}
	if asked == 0 {
		t.Fatal("Wanted was never asked")
	}
	if n := g.processedRows(zero1, zero2, paying); n != 1 {
		t.Fatalf("%d processed_events rows, want 1 (the paying event's)", n)
	}
	zeroWanted = true
	code, res := g.send(signed(batch, http.Header{"Content-Type": {events.ContentTypeBatch}}), batch)
	if code != 200 || res.Processed != 2 || res.Duplicates != 1 || res.Ignored != 0 {
		t.Fatalf("once wanted: %d %+v, want the two zeros processed and the paying one a duplicate", code, res)
	}
	if code, res := g.deliver(zero1); code != 200 || res.Duplicates != 1 {
		t.Fatalf("once applied: %d %+v, want a duplicate", code, res)
	}
	if n, total := g.sum(); n != 3 || total != 7 {
		t.Fatalf("effects = %d (sum %d), want 3 summing to 7", n, total)
	}
}

// Wanted is asked only after the origin check: a forged fact is parked in
// dead_letters even when the consumer wants nothing, and the genuine
// event beside it is ignored without a row.
func TestUnwantedForgeriesAreStillParked(t *testing.T) {
	g := originRig(t, true)
	g.rc.Wanted = func(_ context.Context, evs []events.Event) ([]bool, error) { return make([]bool, len(evs)), nil }
	genuine := signedAs(capturePayment, paymentFact(t, capturePayment, 500))
	forged := paymentFact(t, capturePayment, 7000) // no origin proof
	b, _ := json.Marshal([]events.Event{forged, genuine})
	code, res := g.send(signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
	if code != 200 || res.Parked != 1 || res.Ignored != 1 || res.Processed != 0 {
		t.Fatalf("got %d %+v, want the forgery parked and the genuine event ignored", code, res)
	}
	if r := g.deadLetter(forged); !strings.Contains(r, "origin proof") {
		t.Fatalf("dead letter reason %q, want the origin proof's", r)
	}
	if n := g.processedRows(forged, genuine); n != 0 {
		t.Fatalf("%d processed_events rows, want none", n)
	}
}

// A Wanted that cannot answer (its database is away) makes the delivery
// retried: 503, nothing recorded.
func TestWantedFailingAsksForARetry(t *testing.T) {
	g := newRig(t, true)
	g.rc.Wanted = func(context.Context, []events.Event) ([]bool, error) { return nil, errors.New("database away") }
	ev := newEvent(t, 3)
	if code, _ := g.deliver(ev); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	if n := g.processedRows(ev); n != 0 {
		t.Fatalf("%d processed_events rows after a failed delivery", n)
	}
}

// A receiver with a batch handler and handlers of its own types (capture-
// payment, generate-invoice) handles only those types: an event of a type
// it has no handler for is ignored, alone or in a batch, with no
// transaction and no processed_events row, as it is without a batch
// handler. Before, Batch made the receiver take every type and record it.
func TestABatchHandlerTakesOnlyTheTypesRegistered(t *testing.T) {
	g := newRig(t, true)
	other, err := events.New(context.Background(), "capture-payment", events.TypePaymentFailed, uuid.NewString(), payment{5})
	if err != nil {
		t.Fatal(err)
	}
	if code, res := g.deliver(other); code != 200 || res.Ignored != 1 || res.Processed != 0 {
		t.Fatalf("alone: %d %+v, want it ignored", code, res)
	}
	paying := newEvent(t, 7)
	b, _ := json.Marshal([]events.Event{other, paying})
	if code, res := g.send(signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b); code != 200 || res.Ignored != 1 || res.Processed != 1 {
		t.Fatalf("in a batch: %d %+v, want it ignored and the captured payment processed", code, res)
	}
	if n := g.processedRows(other); n != 0 {
		t.Fatalf("%d processed_events rows of an unhandled type, want 0", n)
	}
	if n, total := g.sum(); n != 1 || total != 7 {
		t.Fatalf("effects = %d (sum %d), want the captured payment's alone", n, total)
	}
}

// A receiver whose batch handler is its only handler takes every type but
// ticks (aggregate-report's rollups count every event).
func TestABatchHandlerAloneTakesEveryType(t *testing.T) {
	rc := &events.Receiver{Batch: func(context.Context, pgx.Tx, []events.Event) error { return nil }}
	if !rc.Handles(events.TypePaymentFailed) || rc.Handles("billfn.schedule.tick") {
		t.Fatal("a receiver with only a batch handler must take every type but ticks")
	}
	rc.On(events.TypePaymentCaptured, func(context.Context, pgx.Tx, events.Event) error { return nil })
	if rc.Handles(events.TypePaymentFailed) || !rc.Handles(events.TypePaymentCaptured) {
		t.Fatal("with a handler registered, the batch handler takes only registered types")
	}
}
