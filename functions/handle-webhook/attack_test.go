package main

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
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
	// A stored delivery the customer must not reach or replay, of an
	// amount no request sends (private, below).
	if rec := r.stripe(stripeEvent("payment_intent.succeeded", paymentIntent("pi_"+uuid.NewString()[:12], "", "succeeded", 4_817_293))); rec.Code/100 != 2 {
		t.Fatalf("store a delivery: %d %s", rec.Code, rec.Body)
	}
	var stored string
	if err := r.d.Pool.QueryRow(context.Background(), `SELECT id::text FROM webhook_events LIMIT 1`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	// An endpoint of the merchant's and a delivery to it.
	rc := newReceiver(t, nil)
	e := r.endpoint(rc.srv.URL+"/hooks/6309451", events.TypeInvoicePaid)
	r.deliverOK(fact(t, events.TypeInvoicePaid))
	var out string
	if err := r.d.Pool.QueryRow(context.Background(), `SELECT id::text FROM webhook_deliveries LIMIT 1`).Scan(&out); err != nil {
		t.Fatal(err)
	}
	// What the merchant holds that no answer to a customer or to no one
	// may hold: the stored webhook's amount (testenv.Attack.Private, looked
	// for in every answer, the 401s and 403s too), and the endpoint's URL
	// and secret, which are no whole numbers: those the wrapper below
	// looks for in every answer.
	private := []string{"4817293", "6309451"}
	secrets := []string{e.Secret, strings.TrimPrefix(e.Secret, "whsec_"), e.URL}
	checked := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := httptest.NewRecorder()
		r.h.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		for _, v := range secrets {
			if bytes.Contains(body, []byte(v)) {
				t.Errorf("%s %s: a %d answer holds the merchant's endpoint URL or secret: %s", req.Method, req.URL.Path, rec.Code, body)
			}
		}
		checked++
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
	t.Cleanup(func() {
		if checked == 0 {
			t.Error("the attack sent nothing through the check")
		}
	})
	testenv.AttackRoutes(t, r.s.RouteTable(), testenv.Attack{
		Handler: h,
		Attacker: testenv.Party{Token: r.kit.Token(t, uuid.NewString(), auth.RoleCustomer), Own: map[string]string{
			"webhook-delivery": stored, "webhook-endpoint": e.ID, "webhook-endpoint-delivery": out}},
		Victim:   testenv.Party{Token: r.kit.Token(t, uuid.NewString(), auth.RoleCustomer), Own: map[string]string{}},
		Snapshot: r.deliveries,
		Private:  func(testing.TB) []string { return private },
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
