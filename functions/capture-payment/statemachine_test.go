package main

import (
	"net/http"
	"testing"

	"github.com/billfn/billfn/functions/capture-payment/payments"
)

// start builds a payment in a given state through the API and the sandbox.
func (g *rig) start(t *testing.T, status payments.Status) payments.Payment {
	t.Helper()
	switch status {
	case payments.RequiresPaymentMethod:
		return g.pay(5000, "USD", "", "manual", false)
	case payments.RequiresConfirmation:
		return g.pay(5000, "USD", "pm_card_visa", "manual", false)
	case payments.RequiresAction:
		return g.pay(5000, "USD", "pm_card_authenticationRequired", "manual", true)
	case payments.Processing:
		return g.pay(5000, "USD", "pm_sandbox_delayed", "manual", true)
	case payments.RequiresCapture:
		return g.pay(5000, "USD", "pm_card_visa", "manual", true)
	case payments.Succeeded:
		return g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	case payments.Canceled:
		p := g.pay(5000, "USD", "", "manual", false)
		return decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/cancel"}), http.StatusOK)
	}
	t.Fatalf("no recipe for %s", status)
	return payments.Payment{}
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
		from payments.Status
		op   op
		want payments.Status // "" when illegal
	}{
		{payments.RequiresPaymentMethod, confirm, payments.RequiresCapture},
		{payments.RequiresPaymentMethod, capture, ""},
		{payments.RequiresPaymentMethod, cancel, payments.Canceled},
		{payments.RequiresPaymentMethod, refund, ""},
		{payments.RequiresConfirmation, confirm, payments.RequiresCapture},
		{payments.RequiresConfirmation, capture, ""},
		{payments.RequiresConfirmation, cancel, payments.Canceled},
		{payments.RequiresConfirmation, refund, ""},
		{payments.RequiresAction, confirm, payments.RequiresCapture}, // the customer authenticated
		{payments.RequiresAction, capture, ""},
		{payments.RequiresAction, cancel, payments.Canceled},
		{payments.RequiresAction, refund, ""},
		{payments.Processing, confirm, ""},
		{payments.Processing, capture, ""},
		{payments.Processing, cancel, ""},
		{payments.Processing, refund, ""},
		{payments.RequiresCapture, confirm, ""},
		{payments.RequiresCapture, capture, payments.Succeeded},
		{payments.RequiresCapture, cancel, payments.Canceled},
		{payments.RequiresCapture, refund, ""},
		{payments.Succeeded, confirm, ""},
		{payments.Succeeded, capture, ""},
		{payments.Succeeded, cancel, ""},
		{payments.Succeeded, refund, payments.Succeeded},
		{payments.Canceled, confirm, ""},
		{payments.Canceled, capture, ""},
		{payments.Canceled, cancel, ""},
		{payments.Canceled, refund, ""},
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
