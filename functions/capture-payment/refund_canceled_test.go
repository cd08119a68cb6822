package main

import (
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

// A refund made in the dashboard that needs the customer's action
// (status requires_action) already counts in the charge's total refunded,
// so billfn recorded it, without an id, from charge.refunded. Canceled
// (Stripe: only such a refund can be, and the money returns to the
// merchant), its news named a refund billfn did not know by its id and was
// never matched to the id-less refund: billfn kept the money as refunded
// and out in clearing. A cancellation now finds the refund by its payment
// and amount as a failure does, and reverses it once; the refund is
// canceled.
func TestADashboardRefundKnownByItsTotalThatIsCanceledIsReversedOnce(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	id := "re_cx" + p.ID[:6]
	t0 := time.Now().Add(-time.Minute)
	canceled := refundReport(t, p, "refund.updated", id, "canceled", 1500, time.Now())
	for i, ev := range []events.Event{refundReport(t, p, "refund.created", id, "requires_action", 1500, t0), chargeRefunded(t, p, 1500, t0),
		canceled, refundReport(t, p, "charge.refund.updated", id, "canceled", 1500, time.Now()), canceled, chargeRefunded(t, p, 1500, t0)} {
		if rec := g.deliver(ev); rec.Code != 200 {
			t.Fatalf("delivery %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if pay := g.get(p.ID); pay.AmountRefunded != 0 || pay.AmountRefundPending != 0 {
		t.Errorf("refunded %d (pending %d), want 0: the refund was canceled", pay.AmountRefunded, pay.AmountRefundPending)
	}
	rs := g.refundsOf(t, p.ID)
	if len(rs) != 1 || rs[0].Amount != 1500 || rs[0].Status != "canceled" || rs[0].GatewayRefundID == nil || *rs[0].GatewayRefundID != id ||
		rs[0].FailureReason == nil || *rs[0].FailureReason != "merchant_request" {
		t.Errorf("refunds %+v: want the dashboard refund canceled (merchant_request) under %s", rs, id)
	}
	k := g.reckon(t, p.ID)
	if k.events[events.TypeRefundSucceeded] != 1 || k.events[events.TypeRefundFailed] != 1 {
		t.Errorf("refund events %v, want 1 succeeded and 1 failed", k.events)
	}
	if len(k.reversed) != 1 || k.reversed[0].Amount != 1500 || k.reversed[0].ToAccountID != p.AccountID {
		t.Errorf("reversals %+v: want one of 1500 to the account", k.reversed)
	}
	balance := g.ledgerOf(t, p.ID)
	sum := sumOf(balance)
	if sum != 0 || balance["SYS-CLEARING-USD"] != -5000 || balance[p.AccountID] != 5000 {
		t.Errorf("balances %v (sum %d): want zero-sum, clearing -5000, the account 5000", balance, sum)
	}
}
