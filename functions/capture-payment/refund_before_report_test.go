package main

import (
	"context"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// An invoice payment's refund that took its money from revenue and
// succeeded before generate-invoice reported the payment unneeded by its
// invoice counts against the report: the account was credited only what
// revenue still held (the customer had the rest back already). When that
// refund then failed after succeeding (the gateway gave the money back to
// the merchant), the reversal posted it back to revenue, and revenue kept
// what the invoice did not need: the account never got that credit. The
// reversal now gives the account the credit the refund kept from it, as
// when a refund pending at the report fails.
func TestARefundOnRevenueBeforeTheUnappliedReportGivesTheCreditBackWhenReversed(t *testing.T) {
	g := newRig(t)
	for _, c := range []struct {
		name   string
		refund func(p payments.Payment) (failed events.Event, captured []payments.Refund)
	}{
		{"a refund through billfn", func(p payments.Payment) (events.Event, []payments.Refund) {
			r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 1000}}), 201)
			if r.Status != "succeeded" {
				t.Fatalf("refund %+v, want succeeded", r)
			}
			return refundFailedLate(t, p, r, "refund.failed"), []payments.Refund{r}
		}},
		{"a dashboard refund", func(p payments.Payment) (events.Event, []payments.Refund) {
			id := "re_rv" + p.ID[:6]
			t0 := time.Now().Add(-time.Minute)
			for _, ev := range []events.Event{chargeRefunded(t, p, 1000, t0), refundReport(t, p, "refund.created", id, "succeeded", 1000, t0)} {
				if rec := g.deliver(ev); rec.Code != 200 {
					t.Fatalf("dashboard refund: %d %s", rec.Code, rec.Body)
				}
			}
			return refundReport(t, p, "refund.failed", id, "failed", 1000, time.Now()), nil
		}},
	} {
		inv, p := g.captureOnAPaidInvoice(t) // 2900 captured on an invoice paid another way
		failed, captured := c.refund(p)
		for i, ev := range []events.Event{g.unappliedReport(t, inv, p, 2900), failed, failed} {
			if rec := g.deliver(ev); rec.Code != 200 {
				t.Fatalf("%s: delivery %d: %d %s", c.name, i, rec.Code, rec.Body)
			}
		}
		if pay := g.get(p.ID); pay.AmountRefunded != 0 {
			t.Fatalf("%s: refunded %d after the failure, want 0", c.name, pay.AmountRefunded)
		}
		balance := g.ledgerOf(t, p.ID, captured...)
		sum := sumOf(balance)
		// As without the refund: the invoice needed none of the payment.
		if sum != 0 || balance["SYS-CLEARING-USD"] != -2900 || balance[p.AccountID] != 2900 || balance["SYS-REVENUE-USD"] != 0 {
			t.Errorf("%s: balances %v (sum %d): want zero-sum, clearing -2900, the account 2900, revenue 0", c.name, balance, sum)
		}
		var credited int64
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT amount_unapplied FROM payments WHERE id = $1`, p.ID).Scan(&credited); err != nil {
			t.Fatal(err)
		}
		if credited != 2900 {
			t.Errorf("%s: amount_unapplied %d, want 2900", c.name, credited)
		}
		if k := g.reckon(t, p.ID); k.events[events.TypeRefundFailed] != 1 || len(k.reversed) != 1 {
			t.Errorf("%s: refund events %v, reversals %+v: want one failure, one reversal", c.name, k.events, k.reversed)
		}
	}
}
