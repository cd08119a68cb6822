package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// deliveries is what handle-webhook holds: every stored webhook, its
// status and replay count, the merchant's endpoints and their deliveries.
func (g *rig) deliveries(tb testing.TB) any {
	tb.Helper()
	rows, err := g.d.Pool.Query(context.Background(), `SELECT id::text || ':' || status || ':' || replays FROM webhook_events
		UNION ALL SELECT id::text || ':' || url || ':' || events::text || ':' || disabled || ':' || secret || ':' || updated_at FROM webhook_endpoints
		UNION ALL SELECT id::text || ':' || status || ':' || attempts || ':' || coalesce(next_attempt_at::text, '') FROM webhook_deliveries
		ORDER BY 1`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			tb.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestAttackEveryRoute runs the generated attack over the route table
// (testenv.AttackRoutes): no route here takes a customer's resource, so
// it proves the delivery log is the admin's and the event endpoint needs a
// signature, and fails the day a route is added without its access and refs.
func TestAttackEveryRoute(t *testing.T) {
	r := newRig(t)
	// A stored delivery the customer must not reach or replay.
	if rec := r.stripe(stripeEvent("payment_intent.succeeded", paymentIntent("pi_"+uuid.NewString()[:12], "", "succeeded", 1_000))); rec.Code/100 != 2 {
		t.Fatalf("store a delivery: %d %s", rec.Code, rec.Body)
	}
	var stored string
	if err := r.d.Pool.QueryRow(context.Background(), `SELECT id::text FROM webhook_events LIMIT 1`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	// An endpoint of the merchant's and a delivery to it.
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL, events.TypeInvoicePaid)
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	var out string
	if err := r.d.Pool.QueryRow(context.Background(), `SELECT id::text FROM webhook_deliveries LIMIT 1`).Scan(&out); err != nil {
		t.Fatal(err)
	}
	testenv.AttackRoutes(t, r.s.RouteTable(), testenv.Attack{
		Handler: r.h,
		Attacker: testenv.Party{Token: r.kit.Token(t, uuid.NewString(), auth.RoleCustomer), Own: map[string]string{
			"webhook-delivery": stored, "webhook-endpoint": e.ID, "webhook-endpoint-delivery": out}},
		Victim:   testenv.Party{Token: r.kit.Token(t, uuid.NewString(), auth.RoleCustomer), Own: map[string]string{}},
		Snapshot: r.deliveries,
	})
}

// TestPublicWebhooksNeedTheirSignature covers the routes the generated
// attack leaves alone (Public): without the gateway's signature nothing
// is stored.
func TestPublicWebhooksNeedTheirSignature(t *testing.T) {
	r := newRig(t)
	before := r.deliveries(t)
	body := stripeEvent("payment_intent.succeeded", paymentIntent("pi_"+uuid.NewString()[:12], "", "succeeded", 1_000))
	for _, path := range []string{"/stripe", "/sandbox"} {
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		r.kit.Authorize(t, req, uuid.NewString(), auth.RoleAdmin) // a token is no signature
		rec := httptest.NewRecorder()
		r.h.ServeHTTP(rec, req)
		if rec.Code != 400 && rec.Code != 401 {
			t.Errorf("POST %s without a signature: %d, want 400 or 401: %s", path, rec.Code, rec.Body)
		}
	}
	if after := r.deliveries(t); len(after.([]string)) != len(before.([]string)) {
		t.Errorf("an unsigned webhook was stored: %v", after)
	}
}
