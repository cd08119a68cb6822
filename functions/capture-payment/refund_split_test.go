package main

import (
	"context"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// Two refunds made in the dashboard, their events out of order: the total
// came first and was recorded as one refund without a gateway id; the
// news of the larger one (re_B, 2000) then found no refund of its amount
// and recorded nothing, so when re_B failed billfn could not reverse it
// and kept 2000 as refunded that the gateway had given back. A refund
// event that names a part of a larger id-less refund now takes that part
// (with its id) out of it, the rest stays id-less, and re_B's failure
// reverses exactly its 2000, once, however often it comes. Of an invoice
// payment whose total took the account's credit first, the refund that
// stays keeps the credit first (as it would have taken it alone): the
// reversal gives the account back only what re_B took beyond it.
func TestADashboardRefundInsideALargerTotalIsTakenOutOfItAndReversedOnce(t *testing.T) {
	g := newRig(t)
	for _, c := range []struct {
		name    string
		invoice bool
		small   int64 // re_A: the refund that stays
		// the balances at the end (the payment's account, revenue) and
		// the account's credit
		account, revenue, credit int64
	}{
		{"a payment", false, 1000, 4000, 0, 0},
		// 2900 captured on an invoice paid another way, 1000 of it
		// credited; 900 refunded in the end: from the credit.
		{"an invoice payment with a credit", true, 900, 100, 1900, 100},
	} {
		var p payments.Payment
		if c.invoice {
			var inv string
			inv, p = g.captureOnAPaidInvoice(t)
			if rec := g.deliver(g.unappliedReport(t, inv, p, 1000)); rec.Code != 200 {
				t.Fatalf("%s: unapplied: %d %s", c.name, rec.Code, rec.Body)
			}
		} else {
			p = g.pay(5000, "USD", "pm_card_visa", "automatic", true)
		}
		a, b := "re_a"+p.ID[:6], "re_b"+p.ID[:6]
		t0 := time.Now().Add(-time.Minute)
		failed := refundReport(t, p, "refund.failed", b, "failed", 2000, time.Now())
		for i, ev := range []events.Event{chargeRefunded(t, p, c.small+2000, t0),
			refundReport(t, p, "refund.updated", b, "succeeded", 2000, t0), refundReport(t, p, "refund.updated", b, "succeeded", 2000, t0),
			failed, refundReport(t, p, "charge.refund.updated", b, "failed", 2000, time.Now()), failed,
			refundReport(t, p, "refund.updated", a, "succeeded", c.small, t0), chargeRefunded(t, p, c.small+2000, t0),
			chargeRefunded(t, p, c.small, t0.Add(-time.Second))} {
			if rec := g.deliver(ev); rec.Code != 200 {
				t.Fatalf("%s: delivery %d: %d %s", c.name, i, rec.Code, rec.Body)
			}
		}
		if pay := g.get(p.ID); pay.AmountRefunded != c.small || pay.AmountRefundPending != 0 {
			t.Errorf("%s: refunded %d (pending %d), want %d: re_B failed", c.name, pay.AmountRefunded, pay.AmountRefundPending, c.small)
		}
		byID := map[string]payments.Refund{}
		for _, r := range g.refundsOf(t, p.ID) {
			if r.GatewayRefundID == nil {
				t.Errorf("%s: refund %+v has no gateway id: both refunds' events named theirs", c.name, r)
				continue
			}
			byID[*r.GatewayRefundID] = r
		}
		if len(byID) != 2 || byID[b].Status != "failed" || byID[b].Amount != 2000 || byID[a].Status != "succeeded" || byID[a].Amount != c.small {
			t.Errorf("%s: refunds %+v: want %s of %d succeeded and %s of 2000 failed", c.name, byID, a, c.small, b)
		}
		k := g.reckon(t, p.ID)
		if k.events[events.TypeRefundFailed] != 1 {
			t.Errorf("%s: refund events %v, want 1 failed", c.name, k.events)
		}
		if k.postings[payments.KindRefund] != c.small+2000 || len(k.reversed) != 1 || k.reversed[0].Amount != 2000 ||
			k.reversed[0].FromAccountNumber != "SYS-CLEARING-USD" {
			t.Errorf("%s: postings by kind %v, reversals %+v: want the refund of %d and one reversal of 2000", c.name, k.postings, k.reversed, c.small+2000)
		}
		balance := g.ledgerOf(t, p.ID)
		sum := sumOf(balance)
		if sum != 0 || balance["SYS-CLEARING-USD"] != -p.AmountCaptured+c.small || balance[p.AccountID] != c.account || balance["SYS-REVENUE-USD"] != c.revenue {
			t.Errorf("%s: balances %v (sum %d): want zero-sum, clearing %d, the account %d, revenue %d", c.name, balance, sum,
				-p.AmountCaptured+c.small, c.account, c.revenue)
		}
		var credit int64
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT amount_unapplied FROM payments WHERE id = $1`, p.ID).Scan(&credit); err != nil {
			t.Fatal(err)
		}
		if credit != c.credit {
			t.Errorf("%s: amount_unapplied %d, want %d", c.name, credit, c.credit)
		}
	}
}

// Three dashboard refunds (A 1000, B 2000, C 500) whose totals came as
// 1000 and then 3500: billfn holds them as two id-less refunds, 1000 (A)
// and 2500 (B and C). C's news takes its part out of the larger, so A's
// and B's find theirs whole, and B's failure reverses its 2000 once.
func TestADashboardRefundsNewsTakesItsPartOutOfTheLargestTotal(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	a, b, c := "re_a"+p.ID[:6], "re_b"+p.ID[:6], "re_c"+p.ID[:6]
	t0 := time.Now().Add(-time.Minute)
	for i, ev := range []events.Event{chargeRefunded(t, p, 1000, t0), chargeRefunded(t, p, 3500, t0.Add(time.Second)),
		refundReport(t, p, "refund.created", c, "succeeded", 500, t0), refundReport(t, p, "refund.created", a, "succeeded", 1000, t0),
		refundReport(t, p, "refund.created", b, "succeeded", 2000, t0), refundReport(t, p, "refund.failed", b, "failed", 2000, time.Now())} {
		if rec := g.deliver(ev); rec.Code != 200 {
			t.Fatalf("delivery %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if pay := g.get(p.ID); pay.AmountRefunded != 1500 {
		t.Errorf("refunded %d, want 1500: B failed", pay.AmountRefunded)
	}
	byID := map[string]payments.Refund{}
	for _, r := range g.refundsOf(t, p.ID) {
		if r.GatewayRefundID == nil {
			t.Errorf("refund %+v has no gateway id: every refund's news named it", r)
			continue
		}
		byID[*r.GatewayRefundID] = r
	}
	if len(byID) != 3 || byID[a].Amount != 1000 || byID[b].Amount != 2000 || byID[b].Status != "failed" || byID[c].Amount != 500 {
		t.Errorf("refunds %+v: want A 1000, C 500 succeeded, B 2000 failed", byID)
	}
	if k := g.reckon(t, p.ID); len(k.reversed) != 1 || k.reversed[0].Amount != 2000 {
		t.Errorf("reversals %+v: want one of 2000", k.reversed)
	}
}
