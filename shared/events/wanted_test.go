package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
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
		code, res := g.send(g.signed(batch, http.Header{"Content-Type": {events.ContentTypeBatch}}), batch)
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
	code, res := g.send(g.signed(batch, http.Header{"Content-Type": {events.ContentTypeBatch}}), batch)
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

// verifiedIDs records the ids of the events whose origin proofs rc
// verifies from now on (events.ObserveVerify).
func verifiedIDs(rc *events.Receiver) func() map[string]int {
	var mu sync.Mutex
	seen := map[string]int{}
	events.ObserveVerify(rc, func(evs []events.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			seen[ev.ID()]++
		}
	})
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

// wantNonZero is a Wanted that wants the payments of an amount other than
// zero (and what it cannot decode).
func wantNonZero(_ context.Context, evs []events.Event) ([]bool, error) {
	out := make([]bool, len(evs))
	for i, ev := range evs {
		var p payment
		out[i] = events.Decode(ev, &p) != nil || p.Amount != 0
	}
	return out, nil
}

// zeroesOfEveryProof is a payment of zero from capture-payment with each
// kind of proof: none (first), a malformed one, a valid one of other
// content (its id changed after signing), and a genuine one (last).
func zeroesOfEveryProof(t *testing.T) []events.Event {
	t.Helper()
	unsigned := paymentFact(t, capturePayment, 0)
	garbage := paymentFact(t, capturePayment, 0)
	garbage.SetExtension(events.OriginSigExt, "not-a-signature")
	garbage.SetExtension(events.OriginKidExt, testenv.OriginSigner(capturePayment).KeyID())
	altered := signedAs(capturePayment, paymentFact(t, capturePayment, 0))
	altered.SetID(uuid.NewString())
	genuine := signedAs(capturePayment, paymentFact(t, capturePayment, 0))
	return []events.Event{unsigned, garbage, altered, genuine}
}

// ignoredUnverified fails the test for each of evs whose proof was
// verified (seen, from verifiedIDs) or that was parked: what (unwanted,
// irrelevant) changes nothing here, so neither may happen to it.
func (g *rig) ignoredUnverified(seen map[string]int, what string, evs []events.Event) {
	g.t.Helper()
	for _, ev := range evs {
		if seen[ev.ID()] != 0 {
			g.t.Errorf("the proof of %s event %s was verified %d times, want never", what, ev.ID(), seen[ev.ID()])
		}
		if r := g.deadLetter(ev); r != "" {
			g.t.Errorf("%s event %s parked: %q", what, ev.ID(), r)
		}
	}
}

// Wanted is asked before the origin check: an event it does not want is
// acknowledged as ignored whatever its proof — none, a malformed one, a
// valid one, one that does not match — and its proof is never verified
// (it changes nothing here; the consumers it could affect park a
// forgery). The wanted genuine event beside them applies, its proof
// verified. Before, every proof was verified and the forgeries parked.
func TestUnwantedEventsAreIgnoredWithoutVerifyingTheirProof(t *testing.T) {
	g := originRig(t, true)
	g.rc.Wanted = wantNonZero
	verified := verifiedIDs(g.rc)
	unwanted := zeroesOfEveryProof(t)
	unsigned := unwanted[0]
	paying := signedAs(capturePayment, paymentFact(t, capturePayment, 500))
	b, _ := json.Marshal(append(slices.Clone(unwanted), paying))
	code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
	if code != 200 || res.Ignored != len(unwanted) || res.Parked != 0 || res.Processed != 1 {
		t.Fatalf("batch: %d %+v, want the %d unwanted events ignored and the paying one processed", code, res, len(unwanted))
	}
	if code, res := g.deliver(unsigned); code != 200 || res.Ignored != 1 || res.Parked != 0 {
		t.Fatalf("alone: %d %+v, want it ignored", code, res)
	}
	seen := verified()
	g.ignoredUnverified(seen, "unwanted", unwanted)
	if seen[paying.ID()] != 1 {
		t.Errorf("the wanted event's proof was verified %d times, want once", seen[paying.ID()])
	}
	if n := g.processedRows(unwanted...); n != 0 {
		t.Fatalf("%d processed_events rows of unwanted events, want none", n)
	}
	if n, total := g.sum(); n != 1 || total != 500 {
		t.Fatalf("effects = %d (sum %d), want the paying event's 500 alone", n, total)
	}
}

// OnlyIf's test is decided from the event alone, before the origin check,
// as Wanted is: an event it says changes nothing here is acknowledged as
// ignored whatever its proof, and its proof is never verified (a forgery
// of it changes nothing here either; the consumers it could affect park
// it). A relevant forgery beside them is still parked, and the genuine
// relevant event applies, its proof verified once. Before, every proof
// was verified and the irrelevant forgeries parked: a verification per
// payment that names no invoice in generate-invoice, a quarter of its CPU
// in make bench's payments.
func TestIrrelevantEventsAreIgnoredWithoutVerifyingTheirProof(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch handler %v", batch), func(t *testing.T) {
			g := originRig(t, batch)
			g.rc.OnlyIf(events.TypePaymentCaptured, func(ev events.Event) bool {
				var p payment
				return events.Decode(ev, &p) != nil || p.Amount != 0
			})
			verified := verifiedIDs(g.rc)
			irrelevant := zeroesOfEveryProof(t)
			unsigned := irrelevant[0]
			forged := paymentFact(t, capturePayment, 7000) // relevant, no origin proof
			paying := signedAs(capturePayment, paymentFact(t, capturePayment, 500))
			b, _ := json.Marshal(append(slices.Clone(irrelevant), forged, paying))
			code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
			if code != 200 || res.Ignored != len(irrelevant) || res.Parked != 1 || res.Processed != 1 {
				t.Fatalf("batch: %d %+v, want the %d irrelevant events ignored, the forgery parked and the paying one processed", code, res, len(irrelevant))
			}
			if code, res := g.deliver(unsigned); code != 200 || res.Ignored != 1 || res.Parked != 0 {
				t.Fatalf("alone: %d %+v, want it ignored", code, res)
			}
			seen := verified()
			g.ignoredUnverified(seen, "irrelevant", irrelevant)
			if seen[paying.ID()] != 1 || seen[forged.ID()] != 1 {
				t.Errorf("the relevant events' proofs were verified %d (genuine) and %d (forged) times, want once each", seen[paying.ID()], seen[forged.ID()])
			}
			if r := g.deadLetter(forged); !strings.Contains(r, "origin proof") {
				t.Errorf("the relevant forgery's dead letter reason is %q, want the origin proof's", r)
			}
			if n := g.processedRows(append(irrelevant, forged)...); n != 0 {
				t.Fatalf("%d processed_events rows of the irrelevant events and the forgery, want none", n)
			}
			if n, total := g.sum(); n != 1 || total != 500 {
				t.Fatalf("effects = %d (sum %d), want the paying event's 500 alone", n, total)
			}
		})
	}
}

// A wanted forgery is parked as before, the genuine events beside it
// still apply (and the unwanted one is ignored), each proof verified once.
func TestWantedForgeriesAreStillParked(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch handler %v", batch), func(t *testing.T) {
			g := originRig(t, batch)
			g.rc.Wanted = wantNonZero
			verified := verifiedIDs(g.rc)
			forged := paymentFact(t, capturePayment, 7000) // no origin proof
			genuine := signedAs(capturePayment, paymentFact(t, capturePayment, 500))
			zero := signedAs(capturePayment, paymentFact(t, capturePayment, 0))
			b, _ := json.Marshal([]events.Event{forged, genuine, zero})
			code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
			if code != 200 || res.Parked != 1 || res.Processed != 1 || res.Ignored != 1 {
				t.Fatalf("%d %+v, want the forgery parked, the genuine event processed, the zero ignored", code, res)
			}
			if r := g.deadLetter(forged); !strings.Contains(r, "origin proof") {
				t.Fatalf("dead letter reason %q, want the origin proof's", r)
			}
			if n := g.processedRows(forged, zero); n != 0 {
				t.Fatalf("%d processed_events rows of the forgery and the unwanted event, want none", n)
			}
			if n, total := g.sum(); n != 1 || total != 500 {
				t.Fatalf("effects = %d (sum %d), want the genuine 500 alone", n, total)
			}
			for id, n := range verified() {
				if n > 1 {
					t.Errorf("event %s's proof verified %d times, want at most once", id, n)
				}
			}
		})
	}
}

// A Wanted whose answer depends on the delivery's other events (handle-
// webhook's: only the first event naming an unknown payment teaches it)
// cannot be fooled by a forgery placed first: the forgery is parked and
// the genuine event naming the same thing is still wanted and applied.
func TestAForgeryFirstDoesNotMakeTheGenuineEventUnwanted(t *testing.T) {
	for _, n := range []int{1, 4} { // alone, and enough proofs for a batch verification
		g := originRig(t, true)
		g.rc.Wanted = func(_ context.Context, evs []events.Event) ([]bool, error) {
			out := make([]bool, len(evs))
			seen := map[int64]bool{}
			for i, ev := range evs {
				var p payment
				if events.Decode(ev, &p) != nil {
					out[i] = true
					continue
				}
				out[i], seen[p.Amount] = !seen[p.Amount], true // the first of each amount
			}
			return out, nil
		}
		var evs []events.Event
		var genuine []events.Event
		for k := 0; k < n; k++ {
			amount := int64(100 * (k + 1))
			forged := paymentFact(t, capturePayment, amount)
			forged.SetExtension(events.OriginSigExt, "not-a-signature")
			forged.SetExtension(events.OriginKidExt, testenv.OriginSigner(capturePayment).KeyID())
			evs = append(evs, forged)
			genuine = append(genuine, signedAs(capturePayment, paymentFact(t, capturePayment, amount)))
		}
		evs = append(evs, genuine...)
		b, _ := json.Marshal(evs)
		code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
		if code != 200 || res.Parked != n || res.Processed != n || res.Ignored != 0 {
			t.Fatalf("%d pairs: %d %+v, want the %d forgeries parked and the %d genuine events processed", n, code, res, n, n)
		}
		if got, _ := g.sum(); got != n {
			t.Fatalf("%d pairs: %d effects, want %d", n, got, n)
		}
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
	if code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b); code != 200 || res.Ignored != 1 || res.Processed != 1 {
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

// Wanted is asked about the events deliver would apply in a transaction
// and about no other: an event that is parked or ignored for another
// reason, or self-handled, is treated as it is without Wanted — its proof
// verified, parked when it has none — though Wanted wants nothing here.
// One event of each of deliver's dispositions (events.Dispositions: the
// test fails when one is added without a case here), genuine and without
// a proof, alone and in a batch.
func TestWantedIsAskedOnlyAboutWhatATransactionWouldApply(t *testing.T) {
	g := originRig(t, false)
	pool := testenv.Pool(t)
	g.rc.OnlyIf(events.TypePaymentCaptured, func(ev events.Event) bool {
		var p payment
		return events.Decode(ev, &p) != nil || p.Amount != 0
	})
	g.rc.OnSelf("billfn.payment.refunded", func(ctx context.Context, ev events.Event) error {
		_, err := pool.Exec(ctx, `INSERT INTO `+g.table+` VALUES ($1, 1)`, ev.ID())
		return err
	})
	var mu sync.Mutex
	asked := map[string]bool{}
	g.rc.Wanted = func(_ context.Context, evs []events.Event) ([]bool, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			asked[ev.ID()] = true
		}
		return make([]bool, len(evs)), nil // wants nothing
	}
	fact := func(typ, fn string, amount int64) func() events.Event {
		return func() events.Event {
			ev, err := events.New(context.Background(), fn, typ, uuid.NewString(), payment{amount})
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}
	}
	cases := []struct {
		disposition string
		mk          func() events.Event // without a proof; signed by its source for the genuine event
		outcome     string              // of the genuine event: "parked: <reason>", "applied", "ignored"
		asked       bool                // Wanted is asked about it (and then ignores it, proven or not)
	}{
		{"park foreign", fact(events.TypePaymentCaptured, "generate-invoice", 5), "parked: " + events.ErrForeignSource.Error(), false},
		{"ignore misplaced", fact(events.TypeTransactionRequested, "capture-payment", 5), "ignored", false}, // read from payment-events
		{"ignore unhandled", fact(events.TypePaymentFailed, "capture-payment", 5), "ignored", false},
		{"ignore irrelevant", fact(events.TypePaymentCaptured, "capture-payment", 0), "ignored", false},
		{"apply self", fact("billfn.payment.refunded", "capture-payment", 5), "applied", false},
		{"apply in a transaction", fact(events.TypePaymentCaptured, "capture-payment", 500), "ignored", true},
	}
	outcome := func(ev events.Event) string {
		if r := g.deadLetter(ev); r != "" {
			return "parked: " + r
		}
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+g.table+` WHERE event_id = $1`, ev.ID()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return "applied"
		}
		return "ignored"
	}
	send := func(evs ...events.Event) events.Result {
		t.Helper()
		b, _ := json.Marshal(evs)
		code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}, "X-Topic": {events.TopicPayment}}), b)
		if code != 200 {
			t.Fatalf("%d %+v", code, res)
		}
		return res
	}
	type sent struct {
		disposition, outcome string
		asked                bool
		ev                   events.Event
	}
	result := func(s sent) events.Result { // deliver's count of it
		switch {
		case strings.HasPrefix(s.outcome, "parked"):
			return events.Result{Parked: 1}
		case s.outcome == "applied":
			return events.Result{Processed: 1}
		}
		return events.Result{Ignored: 1}
	}
	var all []sent
	for _, batch := range []bool{false, true} {
		var evs []sent
		for _, c := range cases {
			genuine := c.mk()
			testenv.OriginSigner(genuine.Source()).Sign(&genuine)
			unproven := "parked: " + events.ErrNoOrigin.Error()
			if c.asked || c.disposition == "ignore irrelevant" {
				unproven = "ignored" // unwanted or irrelevant: never verified
			}
			evs = append(evs, sent{c.disposition, c.outcome, c.asked, genuine}, sent{c.disposition + ", no proof", unproven, c.asked, c.mk()})
		}
		if batch {
			var b []events.Event
			var want events.Result
			for _, s := range evs {
				b = append(b, s.ev)
				r := result(s)
				want.Parked, want.Processed, want.Ignored = want.Parked+r.Parked, want.Processed+r.Processed, want.Ignored+r.Ignored
			}
			if res := send(b...); res != want {
				t.Errorf("in a batch: %+v, want %+v", res, want)
			}
		} else {
			for _, s := range evs {
				if res, want := send(s.ev), result(s); res != want {
					t.Errorf("%s, alone: %+v, want %+v", s.disposition, res, want)
				}
			}
		}
		all = append(all, evs...)
	}
	var covered []string
	for _, c := range cases {
		if got := events.DispositionOf(events.WithTopic(context.Background(), events.TopicPayment), g.rc, c.mk()); got != c.disposition {
			t.Errorf("the case %q is an event of disposition %q", c.disposition, got)
		}
		covered = append(covered, c.disposition)
	}
	if every := events.Dispositions(); !slices.Equal(covered, every) {
		t.Errorf("the cases are of dispositions %q, want one of each of %q, in that order", covered, every)
	}
	for _, s := range all {
		if got := outcome(s.ev); !strings.HasPrefix(got, s.outcome) {
			t.Errorf("%s: %q, want %q", s.disposition, got, s.outcome)
		}
		mu.Lock()
		wasAsked := asked[s.ev.ID()]
		mu.Unlock()
		if wasAsked != s.asked {
			t.Errorf("%s: Wanted asked %v, want %v", s.disposition, wasAsked, s.asked)
		}
	}
}
