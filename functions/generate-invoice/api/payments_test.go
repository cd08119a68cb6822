package api

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/events"
)

// unappliedOf describes the billfn.invoice.payment_unapplied events about payment
// id as "<amount> <currency> <reason>" (joined by "; "), "" when none.
func unappliedOf(t *testing.T, g *rig, id string) string {
	t.Helper()
	out := ""
	for _, ev := range g.events(id) {
		if ev.Type() != events.TypeInvoicePaymentUnapplied {
			continue
		}
		var u events.PaymentUnapplied
		if err := json.Unmarshal(ev.Data(), &u); err != nil {
			t.Fatal(err)
		}
		if out != "" {
			out += "; "
		}
		out += fmt.Sprintf("%d %s %s", u.Amount, u.Currency, u.Reason)
	}
	return out
}

func TestMoneyAnInvoiceDoesNotNeedIsAnnouncedNeverPaidTwice(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	inv := g.createInvoice("", body) // total 2100
	capture := func(pid string, amount int64) events.Result {
		return g.deliver(event(t, "capture-payment", events.TypePaymentCaptured, pid, payment{PaymentID: pid, AccountID: inv.AccountID,
			InvoiceID: &inv.ID, Currency: "USD", Amount: amount, AmountCaptured: amount, Status: "succeeded"}))
	}
	before := testutil.ToFloat64(billing.PaymentAnomalies.WithLabelValues(events.TypePaymentCaptured, "overpayment"))
	// 1000 applies; of the next 2000 only the 1100 still due does.
	a, b, c := "pay_"+uuid.NewString(), "pay_"+uuid.NewString(), "pay_"+uuid.NewString()
	capture(a, 1000)
	capture(b, 2000)
	capture(b, 2000) // a redelivery under another event id changes nothing
	got := g.invoice(inv.ID)
	if got.Status != invoicing.StatusPaid || got.AmountPaid != 2100 || got.AmountDue != 0 {
		t.Fatalf("invoice %s paid %d due %d, want paid 2100 0", got.Status, got.AmountPaid, got.AmountDue)
	}
	if u := unappliedOf(t, g, b); u != "900 USD overpayment" {
		t.Fatalf("unapplied of the overpayment: %q", u)
	}
	if n := testutil.ToFloat64(billing.PaymentAnomalies.WithLabelValues(events.TypePaymentCaptured, "overpayment")) - before; n != 1 {
		t.Fatalf("overpayments counted %v times, want 1", n)
	}
	// A late success on the paid invoice: all of it is unapplied, not parked.
	if res := capture(c, 2100); res.Processed != 1 || res.Parked != 0 {
		t.Fatalf("late capture: %+v", res)
	}
	if got := g.invoice(inv.ID); got.AmountPaid != 2100 {
		t.Fatalf("amount_paid %d after a late capture, want the total 2100", got.AmountPaid)
	}
	if u := unappliedOf(t, g, c); u != "2100 USD invoice_paid" {
		t.Fatalf("unapplied of the late capture: %q", u)
	}
	if u := unappliedOf(t, g, a); u != "" {
		t.Fatalf("the first payment was needed: %q", u)
	}
}

// A refund that succeeded and then failed at the gateway (billfn.refund.failed
// with "reversed": the money came back to the merchant) is money paid
// against the invoice again: amount_refunded takes it back, so the invoice
// is not voided while the merchant keeps the payment
// (invoice_partially_paid). Until 2026-12-07 generate-invoice did not
// consume the reversal: the refund stayed counted and an administrator
// could void an invoice whose 1000 the merchant still held. A failure of a
// refund that never succeeded changes nothing, and a reversal counts once.
func TestAReversedRefundIsPaidAgainstTheInvoice(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	inv := g.createInvoice("", body) // total 2100
	pid := "pay_" + uuid.NewString()[:8]
	g.deliver(event(t, "capture-payment", events.TypePaymentCaptured, pid, payment{PaymentID: pid, AccountID: inv.AccountID,
		InvoiceID: &inv.ID, Currency: "USD", Amount: 1000, AmountCaptured: 1000, Status: "succeeded"}))
	refund := func(id string, amount int64, typ string, reversed bool) events.Event {
		return event(t, "capture-payment", typ, pid, map[string]any{"refund_id": id, "payment_id": pid, "invoice_id": inv.ID,
			"amount": amount, "currency": "USD", "account_id": inv.AccountID, "reversed": reversed})
	}
	r1, r2 := "re_1"+pid, "re_2"+pid
	g.deliver(refund(r1, 600, events.TypeRefundSucceeded, false))
	g.deliver(refund(r2, 400, events.TypeRefundFailed, false)) // failed before it succeeded: no money moved
	if got := g.invoice(inv.ID); got.AmountRefunded != 600 {
		t.Fatalf("refunded %d after a refund and a failed one, want 600", got.AmountRefunded)
	}
	reversal := refund(r1, 600, events.TypeRefundFailed, true)
	g.deliver(reversal)
	g.deliver(refund(r1, 600, events.TypeRefundFailed, true)) // the same reversal under another event id
	g.deliver(refund(r1, 600, events.TypeRefundSucceeded, false))
	got := g.invoice(inv.ID)
	if got.Status != invoicing.StatusOpen || got.AmountPaid != 1000 || got.AmountRefunded != 0 {
		t.Fatalf("after the reversal: %s paid %d refunded %d, want open 1000 0", got.Status, got.AmountPaid, got.AmountRefunded)
	}
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/void", nil), 422, "invoice_partially_paid")
}
