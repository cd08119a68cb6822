package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/api"
	"github.com/billfn/billfn/functions/capture-payment/gateway"
	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/testenv"
	"github.com/google/uuid"
)

// watch records the requests stripe-go sends (and the answers' headers)
// on their way to stripe-mock.
type watch struct {
	mu   sync.Mutex
	reqs []seen
}

type seen struct {
	method, path string
	header       http.Header
	form         url.Values
	respHeader   http.Header
	status       int
}

func (w *watch) RoundTrip(r *http.Request) (*http.Response, error) {
	s := seen{method: r.Method, path: r.URL.Path, header: r.Header.Clone()}
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		s.form, _ = url.ParseQuery(string(b))
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		s.respHeader, s.status = resp.Header.Clone(), resp.StatusCode
	}
	w.mu.Lock()
	w.reqs = append(w.reqs, s)
	w.mu.Unlock()
	return resp, err
}

func (w *watch) last(t *testing.T) seen {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.reqs) == 0 {
		t.Fatal("no request reached stripe-mock")
	}
	return w.reqs[len(w.reqs)-1]
}

// closedPort is an address where nothing listens (connections are refused).
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestStripeAdapterAgainstStripeMock(t *testing.T) {
	base := stripeMockURL(t)
	w := &watch{}
	g := gateway.NewStripe(config.Fixed("sk_test_billfn"), base, 0, 5*time.Second, time.Now, w)
	ctx := context.Background()
	pid := uuid.NewString()

	st, err := g.Charge(ctx, payments.ChargeRequest{PaymentID: pid, Key: payments.GatewayKey(pid, "a1"), Amount: 1050, Currency: "USD",
		PaymentMethod: "pm_card_visa", CaptureMethod: payments.CaptureManual, Description: "order 7"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	r := w.last(t)
	if r.method != "POST" || r.path != "/v1/payment_intents" || r.status != 200 {
		t.Fatalf("create went to %s %s (%d)", r.method, r.path, r.status)
	}
	for k, want := range map[string]string{"amount": "1050", "currency": "usd", "payment_method": "pm_card_visa",
		"confirm": "true", "capture_method": "manual", "metadata[billfn_payment_id]": pid, "description": "order 7",
		"automatic_payment_methods[enabled]": "true", "automatic_payment_methods[allow_redirects]": "never"} {
		if got := r.form.Get(k); got != want {
			t.Errorf("create sent %s=%q, want %q", k, got, want)
		}
	}
	if got := r.header.Get("Idempotency-Key"); got != payments.GatewayKey(pid, "a1") {
		t.Fatalf("Idempotency-Key %q", got)
	}
	if got := r.respHeader.Get("Idempotency-Key"); got != payments.GatewayKey(pid, "a1") {
		t.Fatalf("stripe-mock reflected Idempotency-Key %q", got)
	}
	// stripe-mock answers its fixture: a PaymentIntent back in
	// requires_payment_method with a last_payment_error, which after a
	// confirmation means the attempt failed.
	if !strings.HasPrefix(st.GatewayPaymentID, "pi_") || st.Status != payments.RequiresPaymentMethod || st.Decline == nil {
		t.Fatalf("mapped %+v", st)
	}
	pi := st.GatewayPaymentID

	if _, err := g.Charge(ctx, payments.ChargeRequest{PaymentID: pid, Key: payments.GatewayKey(pid, "a2"), GatewayPaymentID: pi,
		Amount: 1050, Currency: "USD", PaymentMethod: "pm_card_mastercard", CaptureMethod: payments.CaptureManual}); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if r := w.last(t); r.path != "/v1/payment_intents/"+pi+"/confirm" || r.form.Get("payment_method") != "pm_card_mastercard" ||
		r.header.Get("Idempotency-Key") != payments.GatewayKey(pid, "a2") {
		t.Fatalf("confirm sent %s %v", r.path, r.form)
	}
	if _, err := g.Capture(ctx, payments.CaptureRequest{PaymentID: pid, GatewayPaymentID: pi, Key: payments.GatewayKey(pid, "capture"), Amount: 700}); err != nil {
		t.Fatalf("capture: %v", err)
	}
	if r := w.last(t); r.path != "/v1/payment_intents/"+pi+"/capture" || r.form.Get("amount_to_capture") != "700" {
		t.Fatalf("capture sent %s %v", r.path, r.form)
	}
	if _, err := g.Cancel(ctx, payments.CancelRequest{PaymentID: pid, GatewayPaymentID: pi, Key: payments.GatewayKey(pid, "cancel"), Reason: "duplicate"}); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	if r := w.last(t); r.path != "/v1/payment_intents/"+pi+"/cancel" || r.form.Get("cancellation_reason") != "duplicate" {
		t.Fatalf("cancel sent %s %v", r.path, r.form)
	}
	if _, err := g.Retrieve(ctx, pi); err != nil {
		t.Fatalf("retrieve: %v", err)
	}
	if r := w.last(t); r.method != "GET" || r.path != "/v1/payment_intents/"+pi {
		t.Fatalf("retrieve: %s %s", r.method, r.path)
	}
	rid := uuid.NewString()
	res, err := g.Refund(ctx, payments.RefundRequest{PaymentID: pid, RefundID: rid, GatewayPaymentID: pi, Key: payments.GatewayKey(pid, "refund-"+rid),
		Amount: 300, Currency: "USD", Reason: "requested_by_customer"})
	if err != nil {
		t.Fatalf("refund: %v", err)
	}
	if r := w.last(t); r.path != "/v1/refunds" || r.form.Get("payment_intent") != pi || r.form.Get("amount") != "300" ||
		r.form.Get("metadata[billfn_refund_id]") != rid || r.header.Get("Idempotency-Key") != payments.GatewayKey(pid, "refund-"+rid) {
		t.Fatalf("refund sent %s %v", r.path, r.form)
	}
	if !strings.HasPrefix(res.GatewayRefundID, "re_") || res.Status == "" {
		t.Fatalf("refund answer %+v", res)
	}
	if _, err := g.RetrieveRefund(ctx, res.GatewayRefundID); err != nil {
		t.Fatalf("retrieve refund: %v", err)
	}

	// A key Stripe refuses: a gateway-side error, so the next gateway may be tried.
	bad := gateway.NewStripe(config.Fixed("sk_live_wrong"), base, 0, 5*time.Second, time.Now, nil)
	_, err = bad.Retrieve(ctx, pi)
	var ge *payments.GatewayError
	if !errors.As(err, &ge) || ge.Unknown || !payments.Definite(err) {
		t.Fatalf("401: %#v", err)
	}
	// Nothing listening: definite (nothing was sent).
	down := gateway.NewStripe(config.Fixed("sk_test_billfn"), closedPort(t), 2, 5*time.Second, time.Now, nil)
	_, err = down.Charge(ctx, payments.ChargeRequest{PaymentID: pid, Key: "k", Amount: 1, Currency: "USD", PaymentMethod: "pm_card_visa", CaptureMethod: "automatic"})
	if !errors.As(err, &ge) || ge.Unknown || ge.Code != "unavailable" {
		t.Fatalf("connection refused: %#v", err)
	}
}

func TestStripeThroughTheAPIAgainstStripeMock(t *testing.T) {
	base := stripeMockURL(t)
	g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "*=stripe" })
	p := g.pay(2500, "USD", "pm_card_visa", "automatic", true)
	if *p.Gateway != payments.GatewayStripe || !strings.HasPrefix(*p.GatewayPaymentID, "pi_") || p.Attempts != 1 {
		t.Fatalf("payment %+v", p)
	}
	// stripe-mock keeps no state: its fixture says requires_payment_method
	// with a last_payment_error, which billfn records as a failed attempt.
	if p.Status != payments.RequiresPaymentMethod || p.LastPaymentError == nil || p.LastPaymentError.Gateway != payments.GatewayStripe {
		t.Fatalf("status %s error %+v", p.Status, p.LastPaymentError)
	}
	view := decode[api.PaymentView](t, g.do(req{method: "GET", path: "/payments/" + p.ID}), 200)
	if a := view.AttemptHistory; len(a) != 1 || a[0].Gateway != payments.GatewayStripe || a[0].GatewayPaymentID == nil || a[0].GatewayError {
		t.Fatalf("attempts %+v", a)
	}
}

func TestFailoverBetweenGateways(t *testing.T) {
	base := stripeMockURL(t)
	t.Run("stripe down, sandbox takes it", func(t *testing.T) {
		g := newRig(t, func(c *Config) {
			c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", closedPort(t), "EUR=stripe,sandbox;*=sandbox"
		})
		p := g.pay(1200, "EUR", "pm_card_visa", "automatic", true)
		view := decode[api.PaymentView](t, g.do(req{method: "GET", path: "/payments/" + p.ID}), 200)
		a := view.AttemptHistory
		if p.Status != payments.Succeeded || *p.Gateway != payments.GatewaySandbox || len(a) != 2 ||
			a[0].Gateway != payments.GatewayStripe || a[0].Status != "failed" || !a[0].GatewayError ||
			a[1].Gateway != payments.GatewaySandbox || a[1].Status != "succeeded" {
			t.Fatalf("payment %s at %s, attempts %+v", p.Status, *p.Gateway, a)
		}
		metrics := g.do(req{method: "GET", path: "/metrics"}).Body.String()
		for _, want := range []string{`billfn_gateway_call_seconds_count{gateway="stripe",operation="charge",result="error"}`,
			`billfn_gateway_call_seconds_count{gateway="sandbox",operation="charge",result="ok"}`} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("a refused key fails over too", func(t *testing.T) {
		g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_live_refused", base, "*=stripe,sandbox" })
		p := g.pay(1200, "USD", "pm_card_visa", "manual", true)
		if p.Status != payments.RequiresCapture || *p.Gateway != payments.GatewaySandbox || p.Attempts != 2 {
			t.Fatalf("payment %+v", p)
		}
	})
	t.Run("sandbox down, stripe takes it", func(t *testing.T) {
		g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "USD=sandbox,stripe" })
		p := g.pay(1300, "USD", "pm_sandbox_unavailable", "automatic", true)
		view := decode[api.PaymentView](t, g.do(req{method: "GET", path: "/payments/" + p.ID}), 200)
		a := view.AttemptHistory
		if *p.Gateway != payments.GatewayStripe || len(a) != 2 || !a[0].GatewayError || a[1].Gateway != payments.GatewayStripe ||
			!strings.HasPrefix(*p.GatewayPaymentID, "pi_") {
			t.Fatalf("payment at %s, attempts %+v", *p.Gateway, a)
		}
	})
	t.Run("never on a decline", func(t *testing.T) {
		g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "USD=sandbox,stripe" })
		p := g.pay(1300, "USD", "pm_card_chargeDeclined", "automatic", true)
		if p.Attempts != 1 || *p.Gateway != payments.GatewaySandbox || p.Status != payments.RequiresPaymentMethod {
			t.Fatalf("payment %+v", p)
		}
	})
	t.Run("never after an unknown outcome", func(t *testing.T) {
		g := newRig(t, shortTimeout, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "USD=sandbox,stripe" })
		p := g.pay(1300, "USD", "pm_sandbox_timeout", "automatic", true)
		if p.Attempts != 1 || *p.Gateway != payments.GatewaySandbox || p.Status != payments.Processing {
			t.Fatalf("payment %+v", p)
		}
	})
	t.Run("an explicit gateway is not failed over", func(t *testing.T) {
		g := newRig(t, func(c *Config) {
			c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", closedPort(t), "*=stripe,sandbox"
		})
		p := g.pay(1300, "USD", "pm_card_visa", "automatic", true, func(b map[string]any) { b["gateway"] = "stripe" })
		if p.Attempts != 1 || p.Status != payments.RequiresPaymentMethod || p.LastPaymentError.Reason != "gateway_unavailable" {
			t.Fatalf("payment %+v", p)
		}
	})
}

// A rotated stripe-api-key secret is used without a restart: stripe-go
// fixes a client's key, so the adapter makes a new client when the
// followed secret file changes.
func TestARotatedStripeKeyIsUsedWithoutARestart(t *testing.T) {
	base := stripeMockURL(t)
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	write := func(v string) { testenv.WriteSecret(t, dir, "stripe-api-key", v) }
	write("sk_test_old")
	w := &watch{}
	g := gateway.NewStripe(config.Follow("stripe-api-key", "sk_test_old"), base, 0, 5*time.Second, time.Now, w)
	charge := func() string {
		pid := uuid.NewString()
		if _, err := g.Charge(context.Background(), payments.ChargeRequest{PaymentID: pid, Key: payments.GatewayKey(pid, "a1"), Amount: 100,
			Currency: "USD", PaymentMethod: "pm_card_visa", CaptureMethod: payments.CaptureManual}); err != nil {
			t.Fatalf("charge: %v", err)
		}
		return w.last(t).header.Get("Authorization")
	}
	if got := charge(); got != "Bearer sk_test_old" {
		t.Fatalf("first call sent %q", got)
	}
	write("sk_test_new")
	deadline := time.Now().Add(15 * time.Second)
	for got := charge(); got != "Bearer sk_test_new"; got = charge() {
		if time.Now().After(deadline) {
			t.Fatalf("still sending %q after the rotation", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
