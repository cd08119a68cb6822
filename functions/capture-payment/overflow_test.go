package main

import (
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// POST /payments refuses an amount above 999999999999 minor units, but
// a charge_automatically invoice is collected for its whole amount_due,
// and a customer may invoice its own account (generate-invoice bounds a
// total only by int64): the sandbox charged 5e18, and captures of that
// size drive SYS-CLEARING-<CUR> towards MinInt64, where every later
// capture of everyone's in that currency overflows the ledger while the
// gateway kept the money. Collection holds to the API's bound: such an
// invoice is not charged, and its payment says why.
func TestAnInvoiceAboveThePaymentLimitIsNotCharged(t *testing.T) {
	g := newRig(t)
	g.saveMethod(t, "pm_card_visa", true)
	invoice := uuid.NewString()
	if rec := g.deliver(invoiceFinalized(t, g.account, invoice, 5_000_000_000_000_000_000)); rec.Code != 200 {
		t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
	}
	if _, attempts := g.charges(t, invoice); attempts != 0 {
		p := g.get(payments.InvoicePaymentID(invoice))
		t.Fatalf("the gateway was asked to charge: %s %d captured", p.Status, p.AmountCaptured)
	}
	p := g.get(payments.InvoicePaymentID(invoice))
	if p.Status != payments.RequiresPaymentMethod || p.LastPaymentError == nil || p.LastPaymentError.Code != "amount_too_large" {
		t.Fatalf("payment: %+v", p)
	}
	// Dunning retries it: still not charged.
	retry := event(t, "generate-invoice", events.TypeInvoicePaymentRetryRequested, invoice, map[string]any{
		"invoice_id": invoice, "account_id": g.account, "currency": "USD", "amount_due": 5_000_000_000_000_000_000,
		"collection_method": "charge_automatically", "attempt": 2})
	if rec := g.deliver(retry); rec.Code != 200 {
		t.Fatalf("retry: %d %s", rec.Code, rec.Body)
	}
	if _, attempts := g.charges(t, invoice); attempts != 0 {
		t.Fatalf("the dunning retry asked the gateway to charge: %+v", g.get(p.ID))
	}
	// And an invoice at the limit is charged as before.
	ok := uuid.NewString()
	g.deliver(invoiceFinalized(t, g.account, ok, payments.MaxAmount))
	if p := g.get(payments.InvoicePaymentID(ok)); p.Status != payments.Succeeded || p.AmountCaptured != payments.MaxAmount {
		t.Fatalf("an invoice of the limit: %+v", p)
	}
}
