package main

import (
	"net/http"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
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
			key := "k-" + uuid.NewString()
			rec := g.do(req{method: "POST", path: "/payments", key: key, body: map[string]any{"account_id": g.accountIn(cur), "amount": amount,
				"currency": cur, "payment_method": "pm_card_visa", "confirm": true}})
			if got := problemCode(t, rec, 422); got != code {
				t.Fatalf("%s %d: %s, want %s", cur, amount, got, code)
			}
			if rec := g.do(req{method: "GET", path: "/payments/" + payments.DerivedID(payments.PaymentNS, name+":"+g.admin, key)}); rec.Code != http.StatusNotFound {
				t.Fatalf("%s: the refused payment was written: %d %s", cur, rec.Code, rec.Body)
			}
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
		g.saveMethod(t, "pm_card_visa", true)
		invoice := uuid.NewString()
		if rec := g.deliver(invoiceFinalized(t, g.account, invoice, 7)); rec.Code != 200 {
			t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
		}
		if _, attempts := g.charges(t, invoice); attempts != 0 {
			t.Fatalf("Stripe was asked to charge USD 0.07: %+v", g.get(payments.InvoicePaymentID(invoice)))
		}
		p := g.get(payments.InvoicePaymentID(invoice))
		if p.Status != payments.RequiresPaymentMethod || p.LastPaymentError == nil || p.LastPaymentError.Code != code {
			t.Fatalf("payment: %+v", p)
		}
		if failed := g.drain(events.TopicPayment, func(r record) bool {
			return r.Key == p.ID && r.Event.Type() == events.TypePaymentFailed
		}); len(failed) != 1 {
			t.Fatalf("%d billfn.payment.failed for the refused collection, want 1", len(failed))
		}
		retry := event(t, "generate-invoice", events.TypeInvoicePaymentRetryRequested, invoice, map[string]any{
			"invoice_id": invoice, "account_id": g.account, "currency": "USD", "amount_due": 7,
			"collection_method": "charge_automatically", "attempt": 2})
		if rec := g.deliver(retry); rec.Code != 200 {
			t.Fatalf("retry: %d %s", rec.Code, rec.Body)
		}
		if _, attempts := g.charges(t, invoice); attempts != 0 {
			t.Fatalf("the dunning retry asked Stripe to charge USD 0.07: %+v", g.get(p.ID))
		}
	})
}
