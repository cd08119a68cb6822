package api

import (
	"context"
	"encoding/json"
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
	// A plan change that leaves such a line is refused now
	// (TestASubscriptionWhosePeriodDoesNotFitIsRefused); one stored before
	// is put in place directly.
	g.clock.Set(day("2026-04-08T00:00:00Z"))
	must(t, g.asAdmin("PATCH", "/subscriptions/"+big.ID, map[string]any{
		"plan": map[string]any{"name": "Max", "amount": int64(math.MaxInt64), "currency": "USD", "interval": "month"}}), 422)
	line, _ := json.Marshal([]invoicing.Line{{ID: uuid.NewString(), Description: "Remaining time on Max", Quantity: invoicing.QuantityScale,
		UnitAmount: math.MaxInt64 / 30 * 23, Taxes: []invoicing.LineTax{{TaxRateSnap: invoicing.TaxRateSnap{TaxRateID: vat, DisplayName: "VAT",
			Percentage: 500_000}}}, Proration: true, Metadata: map[string]string{}}})
	if _, err := g.d.Pool.Exec(context.Background(), `UPDATE subscriptions SET pending_lines = $2 WHERE id = $1`, big.ID, line); err != nil {
		t.Fatal(err)
	}
	// Such a subscription can still be changed in what its next invoice
	// does not hold: scheduled to end at its period's end.
	must(t, g.asAdmin("PATCH", "/subscriptions/"+big.ID, map[string]any{"cancel_at_period_end": true}), 200)
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

// A plan's mrr is its amount normalised to a month (a daily plan: ×365/12).
// A daily price whose monthly equivalent does not fit in int64 was taken,
// and its mrr silently became 0 (reported to aggregate-report as such); it
// is refused instead, on creation and on a plan change, and nothing is
// written.
func TestAPlanWhoseMRRDoesNotFitIsRefused(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	daily := func(amount int64) map[string]any {
		return map[string]any{"name": "Daily", "amount": amount, "currency": "USD", "interval": "day"}
	}
	const tooBig = int64(400_000_000_000_000_000) // ×365/12 > MaxInt64
	body := subBody(uuid.NewString(), daily(tooBig))
	rec := g.call(call{method: "POST", path: "/subscriptions", body: body, sub: g.admin, role: "service"})
	if rec.Code == 201 {
		s := decode[invoicing.Subscription](t, rec)
		t.Fatalf("created with mrr %d for a daily plan of %d", s.MRR, tooBig)
	}
	problemOf(t, rec, 422, "validation_failed")

	sub := g.subscribe(subBody(uuid.NewString(), daily(1000)))
	problemOf(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"plan": daily(tooBig)}), 422, "validation_failed")
	if s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil)); s.Plan.Amount != 1000 || s.MRR != 30417 {
		t.Fatalf("after the refused change: plan %d, mrr %d", s.Plan.Amount, s.MRR)
	}
}

// A subscription whose next period's invoice (a full period of its plan,
// with its taxes and pending lines) does not fit in int64 can never be
// billed: with a trial it was accepted (201), then refused by every tick's
// billing, silently. It is refused when created or changed, and nothing is
// written.
func TestASubscriptionWhosePeriodDoesNotFitIsRefused(t *testing.T) {
	g := newRig(t)
	vat := g.taxRate("VAT", "50", false, false)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	body := subBody(uuid.NewString(), monthly(math.MaxInt64), "tax_rate_ids", []string{vat}, "trial_end", "2026-04-10T00:00:00Z")
	rec := g.call(call{method: "POST", path: "/subscriptions", body: body, sub: g.admin, role: "service"})
	problemOf(t, rec, 422, "amount_overflow")
	var n int
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM subscriptions WHERE account_id = $1`, body["account_id"]).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d subscriptions written (%v)", n, err)
	}
	// Without tax it fits, and a plan change to a plan that does not, or
	// a tax rate that makes it not fit, is refused and changes nothing.
	sub := g.subscribe(subBody(uuid.NewString(), monthly(math.MaxInt64), "trial_end", "2026-04-10T00:00:00Z"))
	problemOf(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"tax_rate_ids": []string{vat}}), 422, "amount_overflow")
	if s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil)); len(s.TaxRateIDs) != 0 {
		t.Fatalf("tax rates after the refused change: %v", s.TaxRateIDs)
	}
	other := g.subscribe(subBody(uuid.NewString(), monthly(1000), "tax_rate_ids", []string{vat}))
	problemOf(t, g.asAdmin("PATCH", "/subscriptions/"+other.ID, map[string]any{
		"plan": map[string]any{"name": "Max", "amount": int64(math.MaxInt64), "currency": "USD", "interval": "month"}}), 422, "amount_overflow")
	if s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+other.ID, nil)); s.Plan.Amount != 1000 || len(s.PendingLines) != 0 {
		t.Fatalf("after the refused change: plan %d, pending %d", s.Plan.Amount, len(s.PendingLines))
	}
}
