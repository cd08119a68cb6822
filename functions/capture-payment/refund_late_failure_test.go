package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// refundFailedLate is the gateway's news that refund r, which it had
// reported succeeded, failed after all (Stripe: charge.refund.updated or
// refund.failed, status "failed", e.g. the card was closed; the money
// went back to the merchant's balance), as handle-webhook normalizes it.
func refundFailedLate(t *testing.T, p payments.Payment, r payments.Refund, eventType string) events.Event {
	t.Helper()
	return refundReport(t, p, eventType, *r.GatewayRefundID, "failed", r.Amount, time.Now(),
		func(d map[string]any) { d["billfn_refund_id"] = r.ID })
}

// A refund can fail after it succeeded (Stripe: "refunds can fail after
// succeeding", the amount returns to the merchant's balance). billfn
// ignored the news for a refund it had marked succeeded: the refund
// stayed succeeded, amount_refunded kept it, and the ledger kept the money
// out in SYS-CLEARING although the gateway gave it back. Now the refund is
// failed with its reason, billfn.refund.failed is emitted, amount_refunded
// goes back down, and one posting returns exactly what the refund moved
// (SYS-CLEARING → the account it came from; for an invoice payment's
// refund held on revenue, → SYS-REVENUE), however often the news comes.
func TestARefundThatFailsAfterSucceedingIsReversedOnce(t *testing.T) {
	g := newRig(t)
	for _, c := range []struct {
		name    string
		invoice bool
		from    func(p payments.Payment) string // what the refund's hold drew on
	}{
		{"a payment", false, func(p payments.Payment) string { return p.AccountID }},
		{"an invoice payment (held on revenue)", true, func(payments.Payment) string { return "SYS-REVENUE-USD" }},
	} {
		var p payments.Payment
		if c.invoice {
			inv := g.openInvoice(t, g.account, "USD", 5000)
			p = decode[payments.Payment](t, g.payInvoice(g.account, inv, 5000, "USD"), http.StatusCreated)
		} else {
			p = g.pay(5000, "USD", "pm_card_visa", "automatic", true)
		}
		r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2000}}), 201)
		if r.Status != "succeeded" || r.GatewayRefundID == nil || r.LedgerHoldID == nil {
			t.Fatalf("%s: refund %+v: want succeeded with its gateway id and hold", c.name, r)
		}
		var hold *payments.Hold
		holds, _ := g.ledger.state()
		for i := range holds {
			if holds[i].Metadata["refund_id"] == r.ID {
				hold = &holds[i]
			}
		}
		if hold == nil || hold.FromAccountNumber+hold.FromAccountID != c.from(p) {
			t.Fatalf("%s: hold %+v: want one from %s", c.name, hold, c.from(p))
		}
		// The gateway's books: the refund failed, its amount is back (the
		// sandbox has no late failure of its own to report it).
		if _, err := g.d.Pool.Exec(context.Background(), `UPDATE sandbox_intents SET amount_refunded = amount_refunded - $2 WHERE id = $1`,
			*p.GatewayPaymentID, r.Amount); err != nil {
			t.Fatal(err)
		}
		if _, err := g.d.Pool.Exec(context.Background(), `UPDATE sandbox_refunds SET status = 'failed' WHERE id = $1`, *r.GatewayRefundID); err != nil {
			t.Fatal(err)
		}
		// The gateway's news, twice by Stripe's two event types, and one
		// delivery redelivered.
		late := refundFailedLate(t, p, r, "charge.refund.updated")
		for _, ev := range []events.Event{late, refundFailedLate(t, p, r, "refund.failed"), late} {
			if rec := g.deliver(ev); rec.Code != 200 {
				t.Fatalf("%s: delivery: %d %s", c.name, rec.Code, rec.Body)
			}
		}
		got := decode[payments.Refund](t, g.do(req{method: "GET", path: "/refunds/" + r.ID}), 200)
		if got.Status != "failed" || got.FailureReason == nil || *got.FailureReason != "expired_or_canceled_card" {
			t.Fatalf("%s: refund after the gateway's failure: %+v, want failed (expired_or_canceled_card)", c.name, got)
		}
		if pay := g.get(p.ID); pay.AmountRefunded != 0 || pay.AmountRefundPending != 0 {
			t.Fatalf("%s: payment refunded %d, pending %d: want 0 (the refund failed)", c.name, pay.AmountRefunded, pay.AmountRefundPending)
		}
		failed := 0
		for _, rec := range g.drain(events.TopicPayment, forPayment(p.ID)) {
			if rec.Event.Type() == events.TypeRefundFailed {
				failed++
				var d events.Refund
				if err := events.Decode(rec.Event, &d); err != nil || !d.Reversed {
					t.Fatalf("%s: the failure of a refund that had succeeded: %+v (%v), want reversed", c.name, d, err)
				}
			}
		}
		if failed != 1 {
			t.Fatalf("%s: %d billfn.refund.failed, want 1", c.name, failed)
		}
		// The ledger: the postings published, and the refund's hold, which
		// was captured when the refund succeeded.
		returned := 0
		for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(p.ID))) {
			if ps.Data.Metadata["refund_id"] == r.ID && ps.Data.FromAccountNumber == "SYS-CLEARING-USD" {
				returned++
				if ps.Data.Amount != r.Amount || ps.Data.ToAccountNumber+ps.Data.ToAccountID != c.from(p) {
					t.Fatalf("%s: returning posting %+v: want %d from clearing to %s", c.name, ps.Data, r.Amount, c.from(p))
				}
			}
		}
		if returned != 1 {
			t.Fatalf("%s: %d postings return the refund, want 1", c.name, returned)
		}
		balance := g.postedBalances(t, p.ID)
		balance[hold.FromAccountNumber+hold.FromAccountID] -= hold.Amount
		balance[hold.ToAccountNumber+hold.ToAccountID] += hold.Amount
		sum := sumOf(balance)
		wantAccount, wantRevenue := int64(5000), int64(0)
		if c.invoice {
			wantAccount, wantRevenue = 0, 5000
		}
		if sum != 0 || balance["SYS-CLEARING-USD"] != -5000 || balance[p.AccountID] != wantAccount || balance["SYS-REVENUE-USD"] != wantRevenue {
			t.Fatalf("%s: balances %v (sum %d): want zero-sum, clearing -5000 (captured, nothing refunded), the account %d, revenue %d",
				c.name, balance, sum, wantAccount, wantRevenue)
		}
		// The money is the merchant's again: it can be refunded anew.
		again := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 5000}}), 201)
		if again.Status != "succeeded" {
			t.Fatalf("%s: refund of everything after the failure: %+v", c.name, again)
		}
	}
}
