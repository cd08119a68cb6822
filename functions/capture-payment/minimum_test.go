package main

import (
	"testing"

	"github.com/billfn/billfn/functions/capture-payment/payments"
)

// Stripe refuses a charge below its minimum for the currency (USD 0.50,
// GBP 0.30, …) with amount_too_small, which billfn recorded as a failed
// attempt, so a tiny automatic charge (an always_invoice proration of a
// few cents) was dunned and marked uncollectible; stripe-mock does not
// check it. Such an amount is never sent to Stripe: another gateway of
// the route takes it, else it is refused before any write (422
// amount_too_small), and an invoice's collection records it as failed
// once, its dunning retries not charged.
func TestStripeIsNotAskedToChargeBelowItsMinimum(t *testing.T) {
	base := stripeMockURL(t)
	code := string(payments.CodeAmountTooSmall)

	t.Run("the next gateway of the route takes it", func(t *testing.T) {
		g := newRig(t, func(c *Config) {
			c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "USD=stripe,sandbox;*=stripe"
		})
		if p := g.pay(49, "USD", "pm_card_visa", "automatic", true); *p.Gateway != payments.GatewaySandbox || p.Attempts != 1 || p.Status != payments.Succeeded {
			t.Fatalf("USD 0.49: %s at %s after %d attempts", p.Status, *p.Gateway, p.Attempts)
		}
		if p := g.pay(50, "USD", "pm_card_visa", "automatic", true); *p.Gateway != payments.GatewayStripe {
			t.Fatalf("USD 0.50 went to %s, want stripe", *p.Gateway)
		}
	})

	t.Run("refused when only Stripe takes the currency", func(t *testing.T) {
		g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "*=stripe" })
		for cur, amount := range map[string]int64{"USD": 49, "GBP": 29, "JPY": 49, "EUR": 1} {
			g.refusedPayment(t, cur, amount, code, nil)
		}
	})

	t.Run("the sandbox has no minimum", func(t *testing.T) {
		g := newRig(t)
		if p := g.pay(1, "USD", "pm_card_visa", "automatic", true); p.Status != payments.Succeeded || *p.Gateway != payments.GatewaySandbox {
			t.Fatalf("USD 0.01 at the sandbox: %+v", p)
		}
	})

	t.Run("an invoice's automatic collection", func(t *testing.T) {
		g := newRig(t, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_billfn", base, "*=stripe" })
		g.uncollected(t, "USD", 7, code)
	})
}
