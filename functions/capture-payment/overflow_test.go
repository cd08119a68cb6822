package main

import (
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
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
	g.uncollected(t, "USD", 5_000_000_000_000_000_000, "amount_too_large")
	// And an invoice at the limit is charged as before.
	ok := uuid.NewString()
	g.deliver(invoiceFinalized(t, g.account, ok, payments.MaxAmount))
	if p := g.get(payments.InvoicePaymentID(ok)); p.Status != payments.Succeeded || p.AmountCaptured != payments.MaxAmount {
		t.Fatalf("an invoice of the limit: %+v", p)
	}
}
