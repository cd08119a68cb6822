package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// A delivery wakes the sender only when it queued a delivery for an
// endpoint: a payment's first event teaches the payment map (a write, but
// nothing to send), its later events are ignored, and neither wakes the
// sender, which would read the deliveries due and the next retry for
// nothing (issue 20); an event an endpoint subscribes to does.
func TestOnlyADeliveryThatQueuedSomethingWakesTheSender(t *testing.T) {
	d, kit := testenv.Platform(t, webhooks.Name)
	a := newTestAPI(t, d)
	if _, err := d.Pool.Exec(context.Background(), `UPDATE webhook_endpoints SET disabled = true`); err != nil {
		t.Fatal(err) // no endpoint subscribes (none left by another test)
	}
	ctx := context.Background()
	pid := uuid.NewString()
	pay := func(typ string) events.Event {
		return events.Must(events.New(ctx, "capture-payment", typ, pid, map[string]any{"payment_id": pid, "status": "succeeded",
			"amount": 700, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": "pi_k_" + pid[:8]}))
	}
	deliver := func(evs ...events.Event) bool {
		t.Helper()
		select { // nothing pending from before
		case <-a.wake:
		default:
		}
		rec := httptest.NewRecorder()
		a.events(rec, kit.Delivery(t, evs...))
		if rec.Code != 200 {
			t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
		}
		select {
		case <-a.wake:
			return true
		default:
			return false
		}
	}
	if deliver(pay(events.TypePaymentCreated)) {
		t.Fatal("the event that only taught the payment map woke the sender")
	}
	if deliver(pay(events.TypePaymentAuthorized), pay(events.TypePaymentCaptured)) {
		t.Fatal("a delivery of events ignored as changing nothing woke the sender")
	}
	if deliver(pay(events.TypePaymentCaptured)) {
		t.Fatal("a single ignored event woke the sender")
	}
	e := &outgoing.Endpoint{ID: uuid.NewString(), URL: "http://127.0.0.1:9/hook", Events: []string{events.TypePaymentCaptured},
		CreatedAt: time.Now(), UpdatedAt: time.Now()}
	e.SetSecrets(outgoing.NewSecret(), "")
	if err := a.store.CreateEndpoint(ctx, e, func(e *outgoing.Endpoint) idempotency.Response {
		return idempotency.Response{Status: http.StatusCreated, Body: e}
	}); err != nil {
		t.Fatal(err)
	}
	if !deliver(pay(events.TypePaymentCaptured)) {
		t.Fatal("an event queued for a subscribed endpoint woke no sender")
	}
}

// newTestAPI is handle-webhook's API on d, configured with the test
// secrets and limits the api package's tests share.
func newTestAPI(t *testing.T, d *platform.Deps) *API {
	t.Helper()
	cfg := Config{StripeSecrets: "whsec_test", SandboxSecrets: "whsec_sandbox", Tolerance: config.Duration(300 * time.Second),
		RateLimit: 5000, SendTimeout: config.Duration(5 * time.Second), AllowedHosts: "127.0.0.1"}
	a, err := New(d, cfg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
