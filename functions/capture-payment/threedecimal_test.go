package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
)

// Stripe takes amounts in the three-decimal currencies (BHD, JOD, KWD,
// OMR, TND) only in multiples of 10 minor units, for PaymentIntents,
// captures and refunds alike; billfn sends exact fils (a half-even tax
// gives 1.005 KWD easily), which Stripe refuses and stripe-mock does not.
// Such an amount is never sent to Stripe: another gateway of the route
// takes it, else it is refused before any write (422
// amount_precision_unsupported), and so are a partial capture or refund
// of a Stripe payment that is not a multiple of 10.
func TestStripeIsNotAskedForAThreeDecimalAmountItCannotTake(t *testing.T) {
	base := stripeMockURL(t)
	code := string(payments.CodeAmountPrecision)

	t.Run("the next gateway of the route takes it", func(t *testing.T) {
		g := newRig(t, func(c *Config) {
			c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "KWD=stripe,sandbox;*=stripe"
		})
		p := g.pay(1005, "KWD", "pm_card_visa", "automatic", true)
		if *p.Gateway != payments.GatewaySandbox || p.Attempts != 1 || p.Status != payments.Succeeded {
			t.Fatalf("1.005 KWD: %s at %s after %d attempts", p.Status, *p.Gateway, p.Attempts)
		}
		if q := g.pay(1010, "KWD", "pm_card_visa", "automatic", true); *q.Gateway != payments.GatewayStripe {
			t.Fatalf("1.010 KWD went to %s, want stripe", *q.Gateway)
		}
		// Asked for Stripe by name: refused, nothing written.
		g.refusedPayment(t, "KWD", 1005, code, map[string]any{"gateway": "stripe"})
	})

	t.Run("refused when only Stripe takes the currency", func(t *testing.T) {
		g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "*=stripe" })
		for _, cur := range []string{"BHD", "JOD", "KWD", "OMR", "TND"} {
			g.refusedPayment(t, cur, 12345, code, nil)
		}
		// A two-decimal currency is not concerned.
		if p := g.pay(12345, "USD", "pm_card_visa", "automatic", true); *p.Gateway != payments.GatewayStripe {
			t.Fatalf("USD 123.45 went to %s", *p.Gateway)
		}
	})

	t.Run("a partial capture or refund of a Stripe payment", func(t *testing.T) {
		g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "*=stripe" })
		// stripe-mock keeps no state: Stripe's webhooks (through
		// handle-webhook) tell the authorization and the capture.
		auth := g.pay(2000, "KWD", "pm_card_visa", "manual", true)
		g.deliver(gatewayUpdated(t, auth, "requires_capture", time.Now(), stripeEvent))
		if p := g.get(auth.ID); p.Status != payments.RequiresCapture || p.AmountCapturable != 2000 || *p.Gateway != payments.GatewayStripe {
			t.Fatalf("authorized: %+v", p)
		}
		if got := problemCode(t, g.do(req{method: "POST", path: "/payments/" + auth.ID + "/capture", body: map[string]any{"amount": 1005}}), 422); got != code {
			t.Fatalf("capture of 1.005 KWD: %s, want %s", got, code)
		}
		if p := g.get(auth.ID); p.Status != payments.RequiresCapture || p.PendingOperation != nil || p.AmountCapturable != 2000 {
			t.Fatalf("after the refused capture: %+v", p)
		}
		if rec := g.do(req{method: "POST", path: "/payments/" + auth.ID + "/capture", body: map[string]any{"amount": 1000}}); rec.Code == 422 {
			t.Fatalf("capture of 1.000 KWD refused: %s", rec.Body)
		}

		paid := g.pay(2000, "KWD", "pm_card_visa", "automatic", true)
		g.deliver(gatewayUpdated(t, paid, "succeeded", time.Now(), stripeEvent))
		if p := g.get(paid.ID); p.Status != payments.Succeeded || p.AmountCaptured != 2000 {
			t.Fatalf("captured: %+v", p)
		}
		if got := problemCode(t, g.do(req{method: "POST", path: "/payments/" + paid.ID + "/refunds", body: map[string]any{"amount": 1005}}), 422); got != code {
			t.Fatalf("refund of 1.005 KWD: %s, want %s", got, code)
		}
		var refunds int
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(*)::int FROM refunds WHERE payment_id = $1`, paid.ID).Scan(&refunds); err != nil {
			t.Fatal(err)
		}
		if p := g.get(paid.ID); refunds != 0 || p.AmountRefundPending != 0 || p.AmountRefunded != 0 {
			t.Fatalf("after the refused refund: %d refunds, %+v", refunds, p)
		}
		if rec := g.do(req{method: "POST", path: "/payments/" + paid.ID + "/refunds", body: map[string]any{"amount": 1000}}); rec.Code != http.StatusCreated {
			t.Fatalf("refund of 1.000 KWD: %d %s", rec.Code, rec.Body)
		}
	})
}

// stripeEvent makes a gatewayUpdated Stripe's (as handle-webhook relays it).
func stripeEvent(d map[string]any) { d["gateway"] = payments.GatewayStripe }

// A charge_automatically invoice of 1.005 KWD on an account whose currency
// only Stripe takes is not sent to Stripe: its payment is recorded as
// failed (amount_precision_unsupported, billfn.payment.failed, so the
// invoice shows why), and dunning retries are not charged either.
func TestAThreeDecimalInvoiceStripeCannotTakeIsNotCharged(t *testing.T) {
	base := stripeMockURL(t)
	g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "*=stripe" })
	g.uncollected(t, "KWD", 1005, string(payments.CodeAmountPrecision))
}
