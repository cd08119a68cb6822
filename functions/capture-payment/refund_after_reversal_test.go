package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// ledgerOf is what the ledger holds for payment id: the postings published
// for it, and the holds of the refunds that succeeded through billfn
// (captured by process-transaction on capture-payment's word).
func (g *rig) ledgerOf(t *testing.T, id string, captured ...payments.Refund) map[string]int64 {
	t.Helper()
	balance := g.postedBalances(t, id)
	holds, _ := g.ledger.state()
	for _, r := range captured {
		n := 0
		for _, h := range holds {
			if h.Metadata["refund_id"] == r.ID {
				n++
				balance[h.FromAccountNumber+h.FromAccountID] -= h.Amount
				balance[h.ToAccountNumber+h.ToAccountID] += h.Amount
			}
		}
		if n != 1 {
			t.Fatalf("refund %s has %d holds, want 1", r.ID, n)
		}
	}
	return balance
}

// unappliedReport is generate-invoice's report that amount of payment p
// was not needed by its invoice inv (paid another way), in USD.
func (g *rig) unappliedReport(t *testing.T, inv string, p payments.Payment, amount int64) events.Event {
	t.Helper()
	return event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": amount, "currency": "USD", "reason": "invoice_paid"})
}

// refundsOf lists payment id's refunds through the API.
func (g *rig) refundsOf(t *testing.T, id string) []payments.Refund {
	t.Helper()
	return decode[struct{ Data []payments.Refund }](t, g.do(req{method: "GET", path: "/payments/" + id + "/refunds"}), 200).Data
}

// refundReckoning is what a payment's events and postings say of its
// refunds: each billfn.refund.* by type, and the postings by kind.
type refundReckoning struct {
	events   map[string]int
	postings map[string]int64
	reversed []payments.TransferRequest // the refund_reversal postings
}

func (g *rig) reckon(t *testing.T, id string) refundReckoning {
	t.Helper()
	out := refundReckoning{events: map[string]int{}, postings: map[string]int64{}}
	for _, rec := range g.drain(events.TopicPayment, forPayment(id)) {
		out.events[rec.Event.Type()]++
	}
	for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(id))) {
		out.postings[ps.Data.Metadata["kind"]] += ps.Data.Amount
		if ps.Data.Metadata["kind"] == payments.KindRefundReversal {
			out.reversed = append(out.reversed, ps.Data)
		}
	}
	return out
}

// Stripe does not order its events. A refund succeeded and then failed
// (the card was closed: the money went back to the merchant), and billfn
// reversed it; a charge.refunded created before the failure, delivered
// after it, still carries the total refunded that counted the failed
// refund. billfn read that total as a refund made in the dashboard and
// recorded it: a phantom refund of 2000, posted from the account to
// clearing, money out of the ledger that never left the bank. A charge
// event's total is a snapshot as of its created time: refunds that failed
// at or after that time still count in it. A genuine dashboard refund
// after (or before) the failure is still recorded, once.
func TestAStaleChargeTotalAfterARefundFailedRecordsNoPhantomRefund(t *testing.T) {
	g := newRig(t)
	for _, c := range []struct {
		name string
		// evs are the events after the failure; before and after are
		// times before and after it.
		evs  func(p payments.Payment, before, after time.Time) []events.Event
		want int64 // refunded in the dashboard
	}{
		{"the stale total", func(p payments.Payment, before, _ time.Time) []events.Event {
			return []events.Event{chargeRefunded(t, p, 2000, before)}
		}, 0},
		{"the stale total twice", func(p payments.Payment, before, _ time.Time) []events.Event {
			return []events.Event{chargeRefunded(t, p, 2000, before), chargeRefunded(t, p, 2000, before)}
		}, 0},
		{"a new dashboard refund: its total, its refund event, then the stale total", func(p payments.Payment, before, after time.Time) []events.Event {
			return []events.Event{chargeRefunded(t, p, 1500, after), refundReport(t, p, "refund.created", "re_new"+p.ID[:6], "succeeded", 1500, after),
				chargeRefunded(t, p, 2000, before)}
		}, 1500},
		{"a new dashboard refund: its refund event, the stale total, its total", func(p payments.Payment, before, after time.Time) []events.Event {
			return []events.Event{refundReport(t, p, "refund.created", "re_new"+p.ID[:6], "succeeded", 1500, after),
				chargeRefunded(t, p, 2000, before), chargeRefunded(t, p, 1500, after)}
		}, 1500},
		{"a dashboard refund made before the failure, known only by a total from before it", func(p payments.Payment, before, _ time.Time) []events.Event {
			return []events.Event{chargeRefunded(t, p, 3500, before), chargeRefunded(t, p, 3500, before)}
		}, 1500},
	} {
		p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
		r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2000}}), 201)
		if r.Status != "succeeded" {
			t.Fatalf("%s: refund %+v", c.name, r)
		}
		failed := refundFailedLate(t, p, r, "refund.failed")
		failedAt := time.Now()
		if rec := g.deliver(failed); rec.Code != 200 {
			t.Fatalf("%s: the failure: %d %s", c.name, rec.Code, rec.Body)
		}
		if pay := g.get(p.ID); pay.AmountRefunded != 0 {
			t.Fatalf("%s: refunded %d after the refund failed, want 0", c.name, pay.AmountRefunded)
		}
		for _, ev := range append(c.evs(p, failedAt.Add(-time.Minute), failedAt.Add(time.Minute)), failed) {
			if rec := g.deliver(ev); rec.Code != 200 {
				t.Fatalf("%s: delivery: %d %s", c.name, rec.Code, rec.Body)
			}
		}
		if pay := g.get(p.ID); pay.AmountRefunded != c.want || pay.AmountRefundPending != 0 {
			t.Errorf("%s: refunded %d (pending %d), want %d", c.name, pay.AmountRefunded, pay.AmountRefundPending, c.want)
		}
		var dashboard []payments.Refund
		for _, rr := range g.refundsOf(t, p.ID) {
			switch {
			case rr.ID == r.ID && rr.Status != "failed":
				t.Errorf("%s: the refund that failed is %s", c.name, rr.Status)
			case rr.ID != r.ID:
				dashboard = append(dashboard, rr)
			}
		}
		if c.want == 0 && len(dashboard) != 0 || c.want != 0 && (len(dashboard) != 1 || dashboard[0].Amount != c.want ||
			dashboard[0].Status != "succeeded" || dashboard[0].Reason != "gateway") {
			t.Errorf("%s: refunds besides the failed one %+v, want %d refunded in the dashboard", c.name, dashboard, c.want)
		}
		k := g.reckon(t, p.ID)
		wantSucceeded := 1 // the refund that failed later
		if c.want != 0 {
			wantSucceeded++
		}
		if k.events[events.TypeRefundSucceeded] != wantSucceeded || k.events[events.TypeRefundFailed] != 1 {
			t.Errorf("%s: refund events %v, want %d succeeded and 1 failed", c.name, k.events, wantSucceeded)
		}
		if k.postings[payments.KindRefund] != c.want || k.postings[payments.KindRefundReversal] != r.Amount {
			t.Errorf("%s: postings by kind %v: want refunds of %d, one reversal of %d", c.name, k.postings, c.want, r.Amount)
		}
		balance := g.ledgerOf(t, p.ID, r)
		sum := sumOf(balance)
		if sum != 0 || balance["SYS-CLEARING-USD"] != -5000+c.want || balance[p.AccountID] != 5000-c.want {
			t.Errorf("%s: balances %v (sum %d): want zero-sum, clearing %d, the account %d", c.name, balance, sum, -5000+c.want, 5000-c.want)
		}
	}
}

// A refund made in Stripe's dashboard that billfn knew only from a
// charge.refunded (its total: no refund id) and that then failed (the
// card was closed; Stripe gave the money back) was never reversed: its
// refund.failed named a refund id billfn had not recorded, and was
// ignored, so billfn kept the money as refunded and out in clearing. The
// failure now finds the refund by its payment and amount (or by the id it
// took when its refund event came first), fails it and posts it back
// once; redeliveries and stale totals change nothing.
func TestADashboardRefundKnownByItsTotalThatFailsIsReversedOnce(t *testing.T) {
	g := newRig(t)
	for _, c := range []struct {
		name        string
		invoice     bool
		refundEvent bool // its refund.created arrives before the failure
		to          func(p payments.Payment) string
	}{
		{"a payment, the failure straight after the total", false, false, func(p payments.Payment) string { return p.AccountID }},
		{"a payment, its refund event first", false, true, func(p payments.Payment) string { return p.AccountID }},
		{"an invoice payment (refunded from revenue)", true, false, func(payments.Payment) string { return "SYS-REVENUE-USD" }},
		{"an invoice payment, its refund event first", true, true, func(payments.Payment) string { return "SYS-REVENUE-USD" }},
	} {
		var p payments.Payment
		if c.invoice {
			inv := g.openInvoice(t, g.account, "USD", 5000)
			p = decode[payments.Payment](t, g.payInvoice(g.account, inv, 5000, "USD"), http.StatusCreated)
		} else {
			p = g.pay(5000, "USD", "pm_card_visa", "automatic", true)
		}
		id := "re_dash" + p.ID[:6]
		t0 := time.Now().Add(-time.Minute)
		total := chargeRefunded(t, p, 1500, t0)
		created := refundReport(t, p, "refund.created", id, "succeeded", 1500, t0)
		evs := []events.Event{total}
		if c.refundEvent {
			evs = append(evs, created)
		}
		failed := refundReport(t, p, "refund.failed", id, "failed", 1500, time.Now())
		// The failure by both its events, redelivered; then stale news of
		// the refund's success, and a stale total, as new events.
		evs = append(evs, failed, refundReport(t, p, "charge.refund.updated", id, "failed", 1500, time.Now()), failed,
			refundReport(t, p, "refund.updated", id, "succeeded", 1500, t0), chargeRefunded(t, p, 1500, t0))
		for i, ev := range evs {
			if rec := g.deliver(ev); rec.Code != 200 {
				t.Fatalf("%s: delivery %d: %d %s", c.name, i, rec.Code, rec.Body)
			}
		}
		rs := g.refundsOf(t, p.ID)
		if len(rs) != 1 || rs[0].Reason != "gateway" || rs[0].Amount != 1500 || rs[0].Status != "failed" ||
			rs[0].GatewayRefundID == nil || *rs[0].GatewayRefundID != id || rs[0].FailureReason == nil || *rs[0].FailureReason != "expired_or_canceled_card" {
			t.Errorf("%s: refunds %+v: want the dashboard refund failed (expired_or_canceled_card) under %s", c.name, rs, id)
		}
		if pay := g.get(p.ID); pay.AmountRefunded != 0 || pay.AmountRefundPending != 0 {
			t.Errorf("%s: refunded %d (pending %d), want 0: the refund failed", c.name, pay.AmountRefunded, pay.AmountRefundPending)
		}
		k := g.reckon(t, p.ID)
		if k.events[events.TypeRefundSucceeded] != 1 || k.events[events.TypeRefundFailed] != 1 {
			t.Errorf("%s: refund events %v, want 1 succeeded and 1 failed", c.name, k.events)
		}
		if len(k.reversed) != 1 || k.reversed[0].Amount != 1500 || k.reversed[0].FromAccountNumber != "SYS-CLEARING-USD" ||
			k.reversed[0].ToAccountNumber+k.reversed[0].ToAccountID != c.to(p) {
			t.Errorf("%s: reversals %+v: want one of 1500 from clearing to %s", c.name, k.reversed, c.to(p))
		}
		balance := g.ledgerOf(t, p.ID)
		sum := sumOf(balance)
		wantAccount, wantRevenue := int64(5000), int64(0)
		if c.invoice {
			wantAccount, wantRevenue = 0, 5000
		}
		if sum != 0 || balance["SYS-CLEARING-USD"] != -5000 || balance[p.AccountID] != wantAccount || balance["SYS-REVENUE-USD"] != wantRevenue {
			t.Errorf("%s: balances %v (sum %d): want zero-sum, clearing -5000 (nothing refunded), the account %d, revenue %d",
				c.name, balance, sum, wantAccount, wantRevenue)
		}
	}
}

// Two refunds made in the dashboard that billfn learned of only by one
// total (their charge.refunded came out of order, the later total first)
// are one refund in billfn. When the failure of one of them is the first
// news of it (no refund event named it), billfn cannot tell whether the
// total holds it (a total from after it failed would not), so it cannot
// take it apart: the failure is parked in dead_letters for an operator,
// rather than ignored while billfn keeps the money as refunded; nothing
// moves. (Named first, it is taken apart:
// TestADashboardRefundInsideALargerTotalIsTakenOutOfItAndReversedOnce.)
func TestAFailedDashboardRefundBillfnHoldsInsideALargerTotalIsParked(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	t0 := time.Now().Add(-time.Minute)
	failed := refundReport(t, p, "refund.failed", "re_a"+p.ID[:6], "failed", 1000, time.Now())
	for _, ev := range []events.Event{chargeRefunded(t, p, 3000, t0), chargeRefunded(t, p, 1000, t0.Add(-time.Second)), failed} {
		if rec := g.deliver(ev); rec.Code != 200 {
			t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
		}
	}
	var parked int
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE consumer = $1 AND event_id = $2`,
		name, failed.ID()).Scan(&parked); err != nil {
		t.Fatal(err)
	}
	if parked != 1 {
		t.Errorf("the failure is parked %d times, want once", parked)
	}
	if pay := g.get(p.ID); pay.AmountRefunded != 3000 {
		t.Errorf("refunded %d, want 3000: nothing moves before an operator decides", pay.AmountRefunded)
	}
	if k := g.reckon(t, p.ID); len(k.reversed) != 0 || k.postings[payments.KindRefund] != 3000 {
		t.Errorf("postings by kind %v: want the one refund of 3000, no reversal", k.postings)
	}
}

// A refund made in the dashboard failed, and its failure was delivered
// before the news of its success (Stripe does not order its events, and
// retries a failed delivery for days). billfn, which had not heard of the
// refund, ignored the failure, then recorded the stale success
// (refund.created, succeeded) as a refund made in the dashboard: money
// posted out of the ledger that the gateway had given back. billfn now
// keeps the failure (the refund, failed, under its gateway id), so the
// stale news of its success finds it failed, and a stale total counts it
// as refunded then. A later dashboard refund is still recorded, once.
func TestADashboardRefundWhoseFailureComesFirstIsNeverRecordedAsRefunded(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	gone, later := "re_gone"+p.ID[:6], "re_later"+p.ID[:6]
	t0, t2 := time.Now().Add(-time.Minute), time.Now().Add(time.Minute)
	failed := refundReport(t, p, "refund.failed", gone, "failed", 1500, time.Now())
	for i, ev := range []events.Event{failed, refundReport(t, p, "charge.refund.updated", gone, "failed", 1500, time.Now()),
		refundReport(t, p, "refund.created", gone, "succeeded", 1500, t0), chargeRefunded(t, p, 1500, t0),
		refundReport(t, p, "refund.updated", gone, "succeeded", 1500, t0), failed,
		refundReport(t, p, "refund.created", later, "succeeded", 700, t2), chargeRefunded(t, p, 700, t2), chargeRefunded(t, p, 1500, t0)} {
		if rec := g.deliver(ev); rec.Code != 200 {
			t.Fatalf("delivery %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if pay := g.get(p.ID); pay.AmountRefunded != 700 || pay.AmountRefundPending != 0 {
		t.Errorf("refunded %d (pending %d), want 700: the later refund only", pay.AmountRefunded, pay.AmountRefundPending)
	}
	byID := map[string]payments.Refund{}
	for _, r := range g.refundsOf(t, p.ID) {
		if r.GatewayRefundID == nil {
			t.Errorf("refund %+v has no gateway id", r)
			continue
		}
		byID[*r.GatewayRefundID] = r
	}
	if r := byID[gone]; len(byID) != 2 || r.Status != "failed" || r.Amount != 1500 || r.Reason != "gateway" ||
		r.FailureReason == nil || *r.FailureReason != "expired_or_canceled_card" || byID[later].Status != "succeeded" || byID[later].Amount != 700 {
		t.Errorf("refunds %+v: want %s failed (expired_or_canceled_card) and %s of 700 succeeded", byID, gone, later)
	}
	k := g.reckon(t, p.ID)
	if k.events[events.TypeRefundSucceeded] != 1 || k.events[events.TypeRefundFailed] != 0 {
		t.Errorf("refund events %v: want the later refund's success only (billfn never announced the failed one)", k.events)
	}
	if k.postings[payments.KindRefund] != 700 || len(k.reversed) != 0 {
		t.Errorf("postings by kind %v: want the later refund's 700, no reversal", k.postings)
	}
	balance := g.ledgerOf(t, p.ID)
	sum := sumOf(balance)
	if sum != 0 || balance["SYS-CLEARING-USD"] != -4300 || balance[p.AccountID] != 4300 {
		t.Errorf("balances %v (sum %d): want zero-sum, clearing -4300, the account 4300", balance, sum)
	}
}

// A refund of an invoice payment that took money its invoice did not need
// (credited to the account by generate-invoice's report) and then failed
// after it succeeded was posted back to revenue whole: the account lost
// its credit to revenue. Made in the dashboard, the refund took the
// account's credit first and the rest from revenue; made through billfn
// while pending when the report came, it kept that much out of the credit.
// Reversed, it now gives the account back what it took of the credit (and
// amount_unapplied), as a failure before success does.
func TestARefundThatTookAnInvoicePaymentsCreditGivesItBackWhenReversed(t *testing.T) {
	g := newRig(t)
	for _, c := range []struct {
		name    string
		refund  func(inv string, p payments.Payment) (failed events.Event, captured []payments.Refund)
		account int64 // what the account holds of the payment without the refund
	}{
		{"a dashboard refund", func(inv string, p payments.Payment) (events.Event, []payments.Refund) {
			if rec := g.deliver(g.unappliedReport(t, inv, p, 1000)); rec.Code != 200 {
				t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
			}
			id := "re_cr" + p.ID[:6]
			for _, ev := range []events.Event{chargeRefunded(t, p, 2900, time.Now().Add(-time.Minute)),
				refundReport(t, p, "refund.created", id, "succeeded", 2900, time.Now().Add(-time.Minute))} {
				if rec := g.deliver(ev); rec.Code != 200 {
					t.Fatalf("dashboard refund: %d %s", rec.Code, rec.Body)
				}
			}
			return refundReport(t, p, "refund.failed", id, "failed", 2900, time.Now()), nil
		}, 1000}, // the report's credit
		{"a refund pending when the report came", func(inv string, p payments.Payment) (events.Event, []payments.Refund) {
			refund := req{method: "POST", path: "/payments/" + p.ID + "/refunds", key: "k-" + p.ID, body: map[string]any{"amount": 1000}}
			g.ledger.mu.Lock()
			g.ledger.down = true
			g.ledger.mu.Unlock()
			if rec := g.do(refund); rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("refund while the ledger is down: %d", rec.Code)
			}
			if rec := g.deliver(g.unappliedReport(t, inv, p, 2900)); rec.Code != 200 {
				t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
			}
			g.ledger.mu.Lock()
			g.ledger.down = false
			g.ledger.mu.Unlock()
			r := decode[payments.Refund](t, g.do(refund), 201)
			if r.Status != "succeeded" {
				t.Fatalf("refund %+v, want succeeded", r)
			}
			return refundFailedLate(t, p, r, "refund.failed"), []payments.Refund{r}
		}, 2900}, // the invoice needed none of it
	} {
		inv, p := g.captureOnAPaidInvoice(t) // 2900 captured on an invoice paid another way
		failed, captured := c.refund(inv, p)
		for _, ev := range []events.Event{failed, failed} {
			if rec := g.deliver(ev); rec.Code != 200 {
				t.Fatalf("%s: the failure: %d %s", c.name, rec.Code, rec.Body)
			}
		}
		if pay := g.get(p.ID); pay.AmountRefunded != 0 {
			t.Fatalf("%s: refunded %d after the failure, want 0", c.name, pay.AmountRefunded)
		}
		balance := g.ledgerOf(t, p.ID, captured...)
		sum := sumOf(balance)
		// As without the refund: the account holds the money its invoice
		// did not need, revenue the rest.
		wantAccount := c.account
		if sum != 0 || balance["SYS-CLEARING-USD"] != -2900 || balance[p.AccountID] != wantAccount || balance["SYS-REVENUE-USD"] != 2900-wantAccount {
			t.Errorf("%s: balances %v (sum %d): want zero-sum, clearing -2900, the account %d, revenue %d", c.name, balance, sum,
				wantAccount, 2900-wantAccount)
		}
		var credited int64
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT amount_unapplied FROM payments WHERE id = $1`, p.ID).Scan(&credited); err != nil {
			t.Fatal(err)
		}
		if credited != wantAccount {
			t.Errorf("%s: amount_unapplied %d, want %d", c.name, credited, wantAccount)
		}
	}
}
