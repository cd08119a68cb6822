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
