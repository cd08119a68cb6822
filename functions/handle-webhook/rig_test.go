package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v83/webhook"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/billfn/billfn/functions/handle-webhook/api"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/sandbox"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	stripeSecret  = "whsec_test_billfn_0123456789"
	sandboxSecret = "sandbox-test-secret"
)

// updateNS is the namespace of the normalized events' ids, as published:
// one gateway event is always the same CloudEvent id downstream.
var updateNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/handle-webhook/gateway_updated"))

type rig struct {
	t     testing.TB
	s     *api.API
	d     *platform.Deps
	kit   *testenv.Kit
	h     http.Handler
	clock *testenv.Clock
	admin string
}

func testConfig() api.Config {
	return api.Config{StripeSecrets: stripeSecret, SandboxSecrets: sandboxSecret, Tolerance: config.Duration(300 * time.Second),
		RateLimit: 5000, TrustForwardedFor: true, SendTimeout: config.Duration(5 * time.Second), AllowedHosts: "127.0.0.1"}
}

func newRig(t testing.TB, mutate ...func(*api.Config)) *rig {
	t.Helper()
	cfg := testConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	d, kit := testenv.Platform(t, webhooks.Name)
	c := testenv.NewClock(time.Now())
	s, err := api.New(d, cfg, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(s.Routes())).Handler()
	// The test's broker goes with the test: what it left unpublished in
	// the package's shared outbox (published rows are deleted) would
	// otherwise be swept into the next test's broker and read there as
	// that test's events (a full run saw 5 gateway updates where a test
	// made 2).
	t.Cleanup(func() {
		if _, err := d.Pool.Exec(context.Background(), `DELETE FROM outbox`); err != nil {
			t.Errorf("clearing the outbox: %v", err)
		}
	})
	return &rig{t: t, s: s, d: d, kit: kit, h: h, clock: c, admin: uuid.NewString()}
}

// stripeEvent is a Stripe event body of type typ about object.
func stripeEvent(typ string, object map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"id": "evt_" + uuid.NewString()[:12], "object": "event", "type": typ,
		"api_version": "2025-09-30.clover", "created": time.Now().Unix(), "livemode": false, "pending_webhooks": 1,
		"request": map[string]any{"id": nil, "idempotency_key": nil}, "data": map[string]any{"object": object}})
	return b
}

func paymentIntent(id, paymentID, status string, amount int64) map[string]any {
	pi := map[string]any{"id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
		"amount_received": 0, "currency": "usd", "status": status, "capture_method": "automatic",
		"metadata": map[string]any{}, "last_payment_error": nil, "livemode": false}
	if paymentID != "" {
		pi["metadata"] = map[string]any{sandbox.MetadataPaymentID: paymentID}
	}
	switch status {
	case "succeeded":
		pi["amount_received"] = amount
	case "requires_capture":
		pi["amount_capturable"] = amount
	}
	return pi
}

// signStripe signs body as Stripe does, with stripe-go's own test helper.
func signStripe(body []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
}

// post delivers a webhook with headers.
func (g *rig) post(path string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	r.RemoteAddr = "192.0.2.10:44321"
	for k, v := range header {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, r)
	return rec
}

func (g *rig) stripe(body []byte) *httptest.ResponseRecorder {
	return g.post("/stripe", body, map[string]string{webhooks.StripeSignatureHeader: signStripe(body, stripeSecret, g.clock.Now())})
}

func (g *rig) sandbox(body []byte) *httptest.ResponseRecorder {
	return g.post("/sandbox", body, map[string]string{sandbox.SignatureHeader: sandbox.Sign([]byte(sandboxSecret), g.clock.Now(), body)})
}

// outcome reads the status of a 200 receipt.
func outcome(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var r struct {
		Received bool   `json:"received"`
		Status   string `json:"status"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || !r.Received {
		t.Fatalf("receipt %s", rec.Body)
	}
	return r.Status
}

func problemCode(t testing.TB, rec *httptest.ResponseRecorder, status int) string {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	var d struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &d)
	return d.Code
}

func (g *rig) admin_(method, path string, body any, role auth.Role, key string) *httptest.ResponseRecorder {
	g.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	r := httptest.NewRequest(method, path, rd)
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		g.kit.Authorize(g.t, r, g.admin, role)
	}
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, r)
	return rec
}

// deliver sends CloudEvents to the receiver as the kafka-trigger does:
// signed, one in structured mode, several as one batch (a function
// annotated with billfn.dev/batch-size).
func (g *rig) deliver(evs ...events.Event) *httptest.ResponseRecorder {
	g.t.Helper()
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Delivery(g.t, evs...))
	return rec
}

// updates reads the gateway_updated events on payment-events until want
// arrived (or 10 s), publishing the outbox first.
func (g *rig) updates(brokers []string, want int, keep func(events.Event, events.GatewayUpdate) bool) []events.Event {
	g.t.Helper()
	if _, err := g.d.Publisher.Sweep(context.Background()); err != nil {
		g.t.Fatalf("sweep: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(events.TopicPayment),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		g.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []events.Event
	for len(out) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			ev, err := events.Unmarshal(r.Value)
			if err != nil || ev.Type() != events.TypeGatewayUpdated {
				return
			}
			var u events.GatewayUpdate
			_ = json.Unmarshal(ev.Data(), &u)
			if string(r.Key) != *u.PaymentID {
				g.t.Errorf("record key %s, payment %s", r.Key, *u.PaymentID)
			}
			if keep == nil || keep(ev, u) {
				out = append(out, ev)
			}
		})
	}
	return out
}

// keepOutbox stops g's publisher, so the rows the test's requests write
// stay in the outbox to be read: its fast path, kicked by each commit
// that wrote events, relays and deletes them a few milliseconds later, on
// its own goroutine, and a test that counted them raced it (a loaded run
// counted 1 row of 2 deliveries). g.updates still publishes them.
func (g *rig) keepOutbox() {
	g.t.Helper()
	g.d.Publisher.Close(context.Background())
}

func (g *rig) count(sql string, args ...any) int {
	g.t.Helper()
	var n int
	if err := g.d.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		g.t.Fatal(err)
	}
	return n
}

func eventID(body []byte) string {
	var e struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &e)
	return e.ID
}
