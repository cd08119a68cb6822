package main

import (
	"net/http"
	"testing"
	"time"
)

// start builds a payment in a given state through the API and the sandbox.
func (g *rig) start(t *testing.T, status Status) Payment {
	t.Helper()
	switch status {
	case RequiresPaymentMethod:
		return g.pay(5000, "USD", "", "manual", false)
	case RequiresConfirmation:
		return g.pay(5000, "USD", "pm_card_visa", "manual", false)
	case RequiresAction:
		return g.pay(5000, "USD", "pm_card_authenticationRequired", "manual", true)
	case Processing:
		return g.pay(5000, "USD", "pm_sandbox_delayed", "manual", true)
	case RequiresCapture:
		return g.pay(5000, "USD", "pm_card_visa", "manual", true)
	case Succeeded:
		return g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	case Canceled:
		p := g.pay(5000, "USD", "", "manual", false)
		return decode[Payment](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/cancel"}), http.StatusOK)
	}
	t.Fatalf("no recipe for %s", status)
	return Payment{}
}

// TestStateMachineOperations is the table of every API operation from every
// state: legal transitions land in the state Stripe's PaymentIntents would,
// illegal ones answer 409 and change nothing.
func TestStateMachineOperations(t *testing.T) {
	g := newRig(t)
	type op struct {
		name, path string
		body       any
		status     int
	}
	confirm := op{"confirm", "/confirm", map[string]any{"payment_method": "pm_card_visa"}, http.StatusOK}
	capture := op{"capture", "/capture", nil, http.StatusOK}
	cancel := op{"cancel", "/cancel", nil, http.StatusOK}
	refund := op{"refund", "/refunds", map[string]any{"amount": 100}, http.StatusCreated}
	const illegal = "payment_invalid_state"
	cases := []struct {
		from Status
		op   op
		want Status // "" when illegal
	}{
		{RequiresPaymentMethod, confirm, RequiresCapture},
		{RequiresPaymentMethod, capture, ""},
		{RequiresPaymentMethod, cancel, Canceled},
		{RequiresPaymentMethod, refund, ""},
		{RequiresConfirmation, confirm, RequiresCapture},
		{RequiresConfirmation, capture, ""},
		{RequiresConfirmation, cancel, Canceled},
		{RequiresConfirmation, refund, ""},
		{RequiresAction, confirm, RequiresCapture}, // the customer authenticated
		{RequiresAction, capture, ""},
		{RequiresAction, cancel, Canceled},
		{RequiresAction, refund, ""},
		{Processing, confirm, ""},
		{Processing, capture, ""},
		{Processing, cancel, ""},
		{Processing, refund, ""},
		{RequiresCapture, confirm, ""},
		{RequiresCapture, capture, Succeeded},
		{RequiresCapture, cancel, Canceled},
		{RequiresCapture, refund, ""},
		{Succeeded, confirm, ""},
		{Succeeded, capture, ""},
		{Succeeded, cancel, ""},
		{Succeeded, refund, Succeeded},
		{Canceled, confirm, ""},
		{Canceled, capture, ""},
		{Canceled, cancel, ""},
		{Canceled, refund, ""},
	}
	for _, c := range cases {
		t.Run(string(c.from)+"/"+c.op.name, func(t *testing.T) {
			p := g.start(t, c.from)
			if p.Status != c.from {
				t.Fatalf("recipe gave %s, want %s", p.Status, c.from)
			}
			rec := g.do(req{method: "POST", path: "/payments/" + p.ID + c.op.path, body: c.op.body})
			after := g.get(p.ID)
			if c.want == "" {
				if code := problemCode(t, rec, http.StatusConflict); code != illegal {
					t.Fatalf("code %s, want %s", code, illegal)
				}
				if after.Status != c.from || after.UpdatedAt != p.UpdatedAt {
					t.Fatalf("an illegal %s moved the payment: %s → %s", c.op.name, c.from, after.Status)
				}
				return
			}
			if rec.Code != c.op.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.op.status, rec.Body)
			}
			if after.Status != c.want {
				t.Fatalf("%s → %s, want %s", c.from, after.Status, c.want)
			}
		})
	}
}

// TestGatewayUpdatesAreMonotonic is the table of gateway states applied to
// every payment state as a webhook would deliver them: only forward moves
// apply, a failure applies only to an attempt in flight, stale news is
// ignored, and a repeat changes nothing.
func TestGatewayUpdatesAreMonotonic(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Minute), now.Add(-time.Minute)
	fail := &Decline{Code: "card_declined", DeclineCode: "insufficient_funds"}
	cases := []struct {
		from    Status
		op      string // pending operation
		st      Status
		at      time.Time
		want    Status
		changed bool
	}{
		{Processing, "", Succeeded, later, Succeeded, true},
		{Processing, "", RequiresCapture, later, RequiresCapture, true},
		{Processing, "", RequiresPaymentMethod, later, RequiresPaymentMethod, true},
		{Processing, "", RequiresAction, later, RequiresAction, true},
		{Processing, "", Canceled, later, Canceled, true},
		{Processing, opConfirm, Succeeded, later, Succeeded, true},                      // forward even while our call runs
		{Processing, opConfirm, RequiresPaymentMethod, later, Processing, false},        // only our call's answer fails it
		{Processing, opConfirm, RequiresAction, later, Processing, false},               // idem
		{Processing, "", RequiresPaymentMethod, earlier, Processing, false},             // stale
		{RequiresCapture, "", Processing, later, RequiresCapture, false},                // backwards
		{RequiresCapture, "", RequiresPaymentMethod, later, RequiresCapture, false},     // not in flight
		{RequiresCapture, "", RequiresCapture, later, RequiresCapture, false},           // repeat
		{RequiresCapture, "", Succeeded, later, Succeeded, true},                        // captured at the gateway
		{RequiresCapture, "", Canceled, later, Canceled, true},                          // expired at the gateway
		{RequiresAction, "", Processing, later, Processing, true},                       // authenticated
		{RequiresAction, "", RequiresPaymentMethod, later, RequiresPaymentMethod, true}, // authentication failed
		{RequiresPaymentMethod, "", RequiresPaymentMethod, later, RequiresPaymentMethod, false},
		{Succeeded, "", Succeeded, later, Succeeded, false},
		{Succeeded, "", Canceled, later, Succeeded, false},
		{Succeeded, "", RequiresPaymentMethod, later, Succeeded, false},
		{Canceled, "", Succeeded, later, Canceled, false},
		{Canceled, "", RequiresCapture, later, Canceled, false},
	}
	for _, c := range cases {
		p := &Payment{ID: "p", Amount: 1000, Status: c.from, gatewayUpdatedAt: &now, Attempts: 1}
		if c.from == RequiresCapture {
			p.AmountCapturable = 1000
		}
		if c.op != "" {
			p.setOp(c.op, now)
		}
		st := GatewayState{Status: c.st, At: c.at, AmountCapturable: 1000, AmountReceived: 1000}
		if c.st == RequiresPaymentMethod {
			st.Decline = fail
		}
		ch := applyGateway(p, st, false, 1, now)
		if p.Status != c.want || ch.any() != c.changed {
			t.Errorf("%s (op %q) + %s at %v: got %s changed=%v, want %s changed=%v",
				c.from, c.op, c.st, c.at.Sub(now), p.Status, ch.any(), c.want, c.changed)
		}
		again := applyGateway(p, st, false, 1, now)
		if again.captured != 0 || (again.any() && c.st != Processing) {
			t.Errorf("%s + %s twice changed it again: %+v", c.from, c.st, again)
		}
	}
}

// TestSucceededCapturesOnce proves a capture is counted once whatever the
// number of gateway answers saying so.
func TestSucceededCapturesOnce(t *testing.T) {
	now := time.Now()
	p := &Payment{ID: "p", Amount: 1000, Status: RequiresCapture, AmountCapturable: 1000}
	st := GatewayState{Status: Succeeded, AmountReceived: 700, At: now}
	if c := applyGateway(p, st, true, 1, now); c.captured != 700 || p.captureCount != 1 {
		t.Fatalf("first: %+v count %d", c, p.captureCount)
	}
	for i := 0; i < 3; i++ {
		if c := applyGateway(p, st, true, 1, now); c.captured != 0 || p.captureCount != 1 || p.AmountCaptured != 700 {
			t.Fatalf("repeat %d: %+v count %d captured %d", i, c, p.captureCount, p.AmountCaptured)
		}
	}
}
