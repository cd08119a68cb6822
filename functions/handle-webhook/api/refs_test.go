package api

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// A delivery decodes each payment event's data once: wanted reads the
// reference it names and the transaction's handler, which teaches the
// payment map, takes it from there instead of decoding the data again
// (issue 20: RefOf twice was about 3 % of handle-webhook's CPU). A
// forgery reusing a genuine event's id with other data gets no reference
// of another event.
func TestAPaymentEventIsDecodedOnce(t *testing.T) {
	d, kit := testenv.Platform(t, webhooks.Name)
	a := newTestAPI(t, d)
	ctx := context.Background()
	pay := func(pid, typ string) events.Event {
		return events.Must(events.New(ctx, "capture-payment", typ, pid, map[string]any{"payment_id": pid, "status": "succeeded",
			"amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": "pi_d_" + pid[:8]}))
	}
	decodes := func(evs ...events.Event) int64 {
		t.Helper()
		n0 := a.taught.decoded.Load()
		rec := httptest.NewRecorder()
		a.events(rec, kit.Delivery(t, evs...))
		if rec.Code != 200 {
			t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
		}
		return a.taught.decoded.Load() - n0
	}
	p1 := uuid.NewString()
	if n := decodes(pay(p1, events.TypePaymentCreated)); n != 1 {
		t.Fatalf("one event teaching the map: its data decoded %d times, want 1", n)
	}
	p2 := uuid.NewString()
	if n := decodes(pay(p2, events.TypePaymentCreated), pay(p2, events.TypePaymentAuthorized), pay(p2, events.TypePaymentCaptured)); n != 3 {
		t.Fatalf("three events of a new payment: %d decodes, want 3 (one each)", n)
	}
	if c := countRefs(t, a, "pi_d_"+p1[:8], p1) + countRefs(t, a, "pi_d_"+p2[:8], p2); c != 2 {
		t.Fatalf("%d of the 2 payments learned", c)
	}

	genuine, forged := pay(uuid.NewString(), events.TypePaymentCreated), pay(uuid.NewString(), events.TypePaymentCreated)
	forged.SetID(genuine.ID())
	a.taught.keep(forged, webhooks.PaymentRef{Gateway: "sandbox", GatewayPaymentID: "pi_forged"})
	if _, ok := a.taught.take(genuine); ok {
		t.Fatal("a genuine event took the reference kept for a forgery of its id")
	}
}

func countRefs(t *testing.T, a *API, gp, pid string) int {
	t.Helper()
	var n int
	if err := a.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_payment_refs
		WHERE gateway = 'sandbox' AND gateway_payment_id = $1 AND payment_id = $2`, gp, pid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Asking about a reference the map does not hold (a payment's first
// events), with the endpoints in the replica's copy, is one query and not
// a batch of one (34 allocations before, 18 after, pgx v5.12), and a
// payment's several events naming the same object ask about it once
// (3 refs: 40 allocations before): the read that is 6.6 % of
// handle-webhook's CPU in the payments scenario (issue 20).
func TestAskingAboutAnUnknownPaymentIsOneCheapRead(t *testing.T) {
	d, _ := testenv.Platform(t, webhooks.Name)
	a := newTestAPI(t, d)
	for deadline := time.Now().Add(10 * time.Second); !a.store.Interests.Cached(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the endpoints were never loaded")
		}
	}
	ctx := context.Background()
	r := webhooks.PaymentRef{Gateway: "sandbox", GatewayPaymentID: "pi_unknown_" + uuid.NewString(), PaymentID: uuid.NewString(), From: events.TypePaymentCreated}
	allocs := func(refs ...webhooks.PaymentRef) float64 {
		return testing.AllocsPerRun(50, func() {
			if _, known, err := a.store.Interest(ctx, refs, nil); err != nil || known[[2]string{r.Gateway, r.GatewayPaymentID}] {
				t.Fatalf("Interest: %v, known %v", err, known)
			}
		})
	}
	one, three := allocs(r), allocs(r, r, r)
	// AllocsPerRun counts the process's allocations: a background
	// goroutine (the pool's health check, the endpoints' refresh) may add
	// one to either run (make test, 2026-12-05: 18 against 19). Asking
	// three times cost 6 more (40 against 34).
	if three > one+2 {
		t.Fatalf("three events naming one unknown object: %.0f allocations, one: %.0f (asked about three times)", three, one)
	}
	if one > 24 {
		t.Fatalf("asking about one unknown reference: %.0f allocations, want at most 24 (one query, not a batch)", one)
	}
}
