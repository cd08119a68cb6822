package api

import (
	"math"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
)

// A plan change leaves its proration pending for the next invoice without
// computing that invoice, so pending lines can be more than one invoice
// holds in int64 (here: three quarters of MaxInt64 left of a period, plus
// 50% tax). When such a subscription reaches its cancel_at, its pending
// proration cannot be invoiced; that must not hold back the tick's other
// cancellations (before: the one overflow failed the whole step, every
// tick, and no subscription due to end ever ended again), and the
// subscription still ends as its customer asked, its unbillable proration
// kept in pending_lines for an operator, as a net credit is.
func TestAnUninvoiceableProrationDoesNotHoldBackOtherCancellations(t *testing.T) {
	g := newRig(t)
	vat := g.taxRate("VAT", "50", false, false)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	user, other := uuid.NewString(), uuid.NewString()
	big := g.subscribe(subBody(user, monthly(0), "tax_rate_ids", []string{vat}))
	normal := g.subscribe(subBody(other, monthly(1000)))
	// 23 of April's 30 days left: a debit of MaxInt64 × 23/30, and its tax.
	g.clock.Set(day("2026-04-08T00:00:00Z"))
	must(t, g.asAdmin("PATCH", "/subscriptions/"+big.ID, map[string]any{
		"plan": map[string]any{"name": "Max", "amount": int64(math.MaxInt64), "currency": "USD", "interval": "month"}}), 200)
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+big.ID+"/cancel", nil), 200)
	must(t, g.asCustomer(other, "POST", "/subscriptions/"+normal.ID+"/cancel", nil), 200)

	g.clock.Set(day("2026-05-01T00:00:00Z"))
	g.s.d.Events.TickEvery = 1
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Tick())
	if rec.Code != 200 {
		t.Errorf("tick = %d %s", rec.Code, rec.Body)
	}
	if s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+normal.ID, nil)); s.Status != invoicing.SubCanceled {
		t.Errorf("the other subscription due to end is %s", s.Status)
	}
	s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+big.ID, nil))
	if s.Status != invoicing.SubCanceled || len(s.PendingLines) != 1 {
		t.Errorf("the overflowing subscription is %s with %d pending lines", s.Status, len(s.PendingLines))
	}
	for _, inv := range g.subInvoices(big.ID) {
		if inv.Total < 0 {
			t.Errorf("invoice %s total %d", inv.ID, inv.Total)
		}
	}
}
