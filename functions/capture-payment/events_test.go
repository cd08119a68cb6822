package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// event builds an event from another function.
func event(t *testing.T, source, typ, subject string, data any) events.Event {
	t.Helper()
	ev, err := events.New(context.Background(), source, typ, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (g *rig) saveMethod(t *testing.T, token string, asDefault bool) payments.Method {
	t.Helper()
	return g.saveMethodOn(t, g.account, token, asDefault)
}

func invoiceFinalized(t *testing.T, account, invoice string, due int64) events.Event {
	return event(t, "generate-invoice", events.TypeInvoiceFinalized, invoice, invoiceOpen(account, "USD", invoice, due))
}

// invoiceOpen is the data of a finalized charge_automatically invoice of
// due in currency on account, nothing paid yet.
func invoiceOpen(account, currency, invoice string, due int64) map[string]any {
	return map[string]any{"invoice_id": invoice, "number": "INV-2026-000042", "account_id": account, "currency": currency, "total": due,
		"amount_paid": 0, "amount_due": due, "status": "open", "collection_method": "charge_automatically"}
}

func TestInvoiceFinalizedIsCollectedWithTheDefaultMethodOnce(t *testing.T) {
	g := newRig(t)
	g.saveMethod(t, "pm_card_visa", true)
	invoice := uuid.NewString()
	ev := invoiceFinalized(t, g.account, invoice, 4200)
	if rec := g.deliver(ev); rec.Code != 200 {
		t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
	}
	p := g.get(payments.InvoicePaymentID(invoice))
	if p.Status != payments.Succeeded || p.AmountCaptured != 4200 || p.InvoiceID == nil || *p.InvoiceID != invoice || p.UserID != g.admin {
		t.Fatalf("payment: %+v", p)
	}
	// The same event again, and the same invoice in another event: one payment.
	if rec := g.deliver(ev); rec.Code != 200 || !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("redelivery: %d %s", rec.Code, rec.Body)
	}
	g.deliver(invoiceFinalized(t, g.account, invoice, 4200))
	ps := postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))
	if len(ps) != 2 || ps[0].Data.Metadata["kind"] != payments.KindCapture || ps[1].Data.Metadata["kind"] != payments.KindSettlement {
		t.Fatalf("postings %+v", ps)
	}
	// send_invoice invoices are not collected.
	other := uuid.NewString()
	ev = event(t, "generate-invoice", events.TypeInvoiceFinalized, other, map[string]any{"invoice_id": other,
		"account_id": g.account, "currency": "USD", "amount_due": 100, "collection_method": "send_invoice"})
	g.deliver(ev)
	if rec := g.do(req{method: "GET", path: "/payments/" + payments.InvoicePaymentID(other)}); rec.Code != 404 {
		t.Fatalf("send_invoice was collected: %d", rec.Code)
	}
}

func TestDunningRetryIsANewAttemptWithTheNewDefaultMethod(t *testing.T) {
	g := newRig(t)
	g.saveMethod(t, "pm_card_chargeDeclinedInsufficientFunds", true)
	invoice := uuid.NewString()
	g.deliver(invoiceFinalized(t, g.account, invoice, 990))
	p := g.get(payments.InvoicePaymentID(invoice))
	if p.Status != payments.RequiresPaymentMethod || p.LastPaymentError.Reason != "insufficient_funds" {
		t.Fatalf("first attempt: %+v", p)
	}
	g.saveMethod(t, "pm_card_visa", true) // the customer updates its card
	retry := event(t, "generate-invoice", events.TypeInvoicePaymentRetryRequested, invoice, map[string]any{
		"invoice_id": invoice, "account_id": g.account, "currency": "USD", "amount_due": 990,
		"collection_method": "charge_automatically", "attempt": 2})
	if rec := g.deliver(retry); rec.Code != 200 {
		t.Fatalf("retry: %d %s", rec.Code, rec.Body)
	}
	p = g.get(p.ID)
	if p.Status != payments.Succeeded || p.Attempts != 2 || p.AmountCaptured != 990 {
		t.Fatalf("after the retry: %+v", p)
	}
	g.deliver(retry) // a duplicate retry does nothing
	if p2 := g.get(p.ID); p2.Attempts != 2 {
		t.Fatalf("duplicate retry made attempt %d", p2.Attempts)
	}
}

// gatewayUpdated is handle-webhook's normalized event.
func gatewayUpdated(t *testing.T, p payments.Payment, status string, at time.Time, mutate ...func(map[string]any)) events.Event {
	data := map[string]any{"gateway": payments.GatewaySandbox, "gateway_event_id": "evt_" + uuid.NewString()[:8],
		"gateway_event_type": "payment_intent." + status, "object_type": "payment_intent",
		"gateway_object_id": *p.GatewayPaymentID, "gateway_payment_id": *p.GatewayPaymentID, "payment_id": p.ID,
		"status": status, "amount": p.Amount, "amount_capturable": 0, "amount_received": 0, "amount_refunded": 0,
		"currency": string(p.Currency), "occurred_at": at.UTC().Format(time.RFC3339)}
	switch status {
	case "succeeded":
		data["amount_received"] = p.Amount
	case "requires_capture":
		data["amount_capturable"] = p.Amount
	case "failed":
		data["failure_code"], data["decline_code"], data["failure_message"] = "card_declined", "insufficient_funds", "declined"
	}
	for _, m := range mutate {
		m(data)
	}
	return event(t, "handle-webhook", "billfn.payment.gateway_updated", p.ID, data)
}

func TestGatewayUpdatesApplyMonotonically(t *testing.T) {
	g := newRig(t)
	p := g.pay(2500, "USD", "pm_sandbox_delayed", "automatic", true)
	if p.Status != payments.Processing || p.PendingOperation != nil {
		t.Fatalf("delayed: %+v", p)
	}
	t0 := time.Now()
	succeeded := gatewayUpdated(t, p, "succeeded", t0)
	for _, ev := range []events.Event{
		succeeded,
		gatewayUpdated(t, p, "succeeded", t0), // the same news again, new event id
		gatewayUpdated(t, p, "processing", t0.Add(-time.Minute)), // late
		gatewayUpdated(t, p, "failed", t0.Add(-time.Minute)),     // late failure
		gatewayUpdated(t, p, "requires_capture", t0.Add(-2*time.Minute)),
	} {
		if rec := g.deliver(ev); rec.Code != 200 {
			t.Fatalf("delivery %s: %d %s", ev.Type(), rec.Code, rec.Body)
		}
	}
	if rec := g.deliver(succeeded); rec.Code != 200 || !json.Valid(rec.Body.Bytes()) { // a duplicate delivery
		t.Fatalf("duplicate: %d", rec.Code)
	}
	after := g.get(p.ID)
	if after.Status != payments.Succeeded || after.AmountCaptured != 2500 {
		t.Fatalf("after updates: %+v", after)
	}
	ps := postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))
	if len(ps) != 1 {
		t.Fatalf("%d postings, want 1", len(ps))
	}
}

func TestGatewayUpdateOfAFailureReturnsThePaymentForANewAttempt(t *testing.T) {
	g := newRig(t)
	p := g.pay(2500, "USD", "pm_sandbox_delayed", "automatic", true)
	g.deliver(gatewayUpdated(t, p, "failed", time.Now()))
	after := g.get(p.ID)
	if after.Status != payments.RequiresPaymentMethod || after.LastPaymentError == nil || after.LastPaymentError.Reason != "insufficient_funds" {
		t.Fatalf("after failure: %+v", after)
	}
	evs := g.consume(events.TopicPayment, 2, forPayment(p.ID))
	if got := types(evs); got[len(got)-1] != events.TypePaymentFailed {
		t.Fatalf("events %v", got)
	}
}

func TestGatewayRefundsDisputesAndMismatches(t *testing.T) {
	g := newRig(t)
	p := g.pay(8000, "USD", "pm_card_visa", "automatic", true, func(b map[string]any) {
		b["invoice_id"] = g.openInvoice(t, b["account_id"].(string), "USD", 8000)
	})
	// A refund made in the gateway's dashboard: recorded once, posted once.
	refunded := func() events.Event {
		return gatewayUpdated(t, p, "refunded", time.Now(), func(d map[string]any) {
			d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "charge", "charge.refunded", "ch_1"
			d["amount_refunded"], d["amount_received"] = 3000, 8000
		})
	}
	g.deliver(refunded())
	g.deliver(refunded())
	after := g.get(p.ID)
	if after.AmountRefunded != 3000 {
		t.Fatalf("refunded %d, want 3000", after.AmountRefunded)
	}
	rs := decode[struct{ Data []payments.Refund }](t, g.do(req{method: "GET", path: "/payments/" + p.ID + "/refunds"}), 200)
	if len(rs.Data) != 1 || rs.Data[0].Reason != "gateway" || rs.Data[0].Amount != 3000 {
		t.Fatalf("refunds %+v", rs.Data)
	}
	kinds := map[string]int{}
	for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(p.ID))) {
		kinds[ps.Data.Metadata["kind"]]++
	}
	if kinds[payments.KindRefund] != 1 || kinds[payments.KindInvRefund] != 1 || kinds[payments.KindCapture] != 1 || kinds[payments.KindSettlement] != 1 {
		t.Fatalf("postings by kind %v", kinds)
	}
	// A dispute is recorded and announced once.
	dispute := func() events.Event {
		return gatewayUpdated(t, p, "disputed", time.Now(), func(d map[string]any) {
			d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "dispute", "charge.dispute.created", "dp_1"
		})
	}
	g.deliver(dispute())
	g.deliver(dispute())
	if after := g.get(p.ID); after.DisputedAt == nil {
		t.Fatal("dispute not recorded")
	}
	n := 0
	for _, r := range g.drain(events.TopicPayment, forPayment(p.ID)) {
		if r.Event.Type() == events.TypePaymentDisputed {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d dispute events", n)
	}
	// A disputed payment's money goes back through the dispute, not a
	// refund as well (Stripe refuses it: charge_disputed), or the payer is
	// paid back twice. Nothing is reserved, nothing recorded.
	rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 1000}})
	if code := problemCode(t, rec, 409); code != string(payments.CodeChargeDisputed) {
		t.Fatalf("refund of a disputed payment: %s", code)
	}
	if after := g.get(p.ID); after.AmountRefunded != 3000 || after.AmountRefundPending != 0 {
		t.Fatalf("after a refused refund: %+v", after)
	}
	// News that does not match the payment is parked, not applied.
	bad := gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) { d["currency"] = "EUR" })
	if rec := g.deliver(bad); rec.Code != 200 || !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("mismatch: %d %s", rec.Code, rec.Body)
	}
	unknown := gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) { d["payment_id"] = uuid.NewString() })
	if rec := g.deliver(unknown); rec.Code != 200 {
		t.Fatalf("unknown payment: %d %s", rec.Code, rec.Body)
	}
	var parked int
	_ = g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE consumer = $1 AND event_id IN ($2, $3)`,
		name, bad.ID(), unknown.ID()).Scan(&parked)
	if parked != 2 {
		t.Fatalf("%d of 2 events parked", parked)
	}
}

// Issue 20: capture-payment's events are signed with the function's origin
// key as they are written, and their outbox rows name the key, so the
// publisher relays them without decoding them. (The publisher is stopped
// first, so the rows stay to be read.)
func TestPaymentEventsAreSignedAsTheyAreWritten(t *testing.T) {
	g := newRig(t)
	g.d.Publisher.Close(context.Background())
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	if rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2000}}); rec.Code != 201 {
		t.Fatalf("refund: %d %s", rec.Code, rec.Body)
	}
	seen := map[string]int{}
	for _, ev := range testenv.SignedAsWritten(t, g.d.Pool, g.d.Publisher.Signer.KeyID(), g.kit.Origins,
		`source = $1 AND strpos(convert_from(payload, 'UTF8'), $2::text) > 0`, name, p.ID) {
		seen[ev.Type()]++
	}
	if seen[events.TypePaymentCreated] != 1 || seen[events.TypePaymentCaptured] != 1 ||
		seen[events.TypeTransactionRequested] != 1 || seen[events.TypeRefundSucceeded] != 1 {
		t.Fatalf("rows %v, want the payment's creation, capture and posting, and the refund", seen)
	}
}

// chargeRefunded is Stripe's charge.refunded as handle-webhook normalizes
// it: the charge's running total refunded as of at (its created), no
// refund id.
func chargeRefunded(t *testing.T, p payments.Payment, total int64, at time.Time) events.Event {
	t.Helper()
	return gatewayUpdated(t, p, "refunded", at, func(d map[string]any) {
		d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "charge", "charge.refunded", "ch_"+p.ID[:8]
		d["amount_refunded"], d["amount_received"], d["amount"] = total, p.Amount, p.Amount
	})
}

// refundReport is a refund event (refund.created, refund.updated,
// refund.failed, charge.refund.updated) about gateway refund id, with its
// status ("succeeded", "pending", "requires_action", "failed" with the
// reason of a card that was closed, or "canceled" at the merchant's
// request), as handle-webhook
// normalizes it. A refund made in the gateway's dashboard names no billfn
// refund.
func refundReport(t *testing.T, p payments.Payment, eventType, id, status string, amount int64, at time.Time,
	mutate ...func(map[string]any)) events.Event {
	t.Helper()
	update := "refunded"
	switch status {
	case "failed", "canceled":
		update = "failed"
	case "pending", "requires_action":
		update = "processing"
	}
	return gatewayUpdated(t, p, update, at, func(d map[string]any) {
		d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "refund", eventType, id
		d["refund_id"], d["refund_status"], d["refund_amount"], d["amount"], d["amount_received"] = id, status, amount, amount, 0
		d["failure_code"], d["decline_code"], d["failure_message"] = nil, nil, nil
		switch status {
		case "failed":
			d["failure_code"] = "expired_or_canceled_card"
		case "canceled":
			d["failure_code"] = "merchant_request"
		}
		for _, m := range mutate {
			m(d)
		}
	})
}

// A refund made in the gateway's dashboard is reported twice: as a charge
// event (charge.refunded: the charge's running total, no refund id) and as
// a refund event (refund.created: the refund's id and amount), in either
// order. It is recorded and posted once. Two dashboard refunds reported
// by one running total and then one by one are recorded once each too.
// Before, the charge event first made a refund of its total, and each
// refund event then added itself again (one refund of 3000 became 6000,
// two refund postings).
func TestADashboardRefundReportedAsChargeAndAsRefundIsRecordedOnce(t *testing.T) {
	g := newRig(t)
	charge := func(p payments.Payment, total int64) events.Event { return chargeRefunded(t, p, total, time.Now()) }
	refund := func(p payments.Payment, id string, amount int64) events.Event {
		return refundReport(t, p, "refund.created", id, "succeeded", amount, time.Now())
	}
	for _, c := range []struct {
		name  string
		evs   func(p payments.Payment) []events.Event
		total int64
	}{
		{"charge, then refund", func(p payments.Payment) []events.Event {
			return []events.Event{charge(p, 3000), refund(p, "re_a"+p.ID[:6], 3000)}
		}, 3000},
		{"refund, then charge", func(p payments.Payment) []events.Event {
			return []events.Event{refund(p, "re_b"+p.ID[:6], 3000), charge(p, 3000)}
		}, 3000},
		{"two refunds: their total, then each", func(p payments.Payment) []events.Event {
			return []events.Event{charge(p, 3000), refund(p, "re_c"+p.ID[:6], 1000), refund(p, "re_d"+p.ID[:6], 2000)}
		}, 3000},
		{"two refunds: one, the total, the other", func(p payments.Payment) []events.Event {
			return []events.Event{refund(p, "re_e"+p.ID[:6], 1000), charge(p, 3000), refund(p, "re_f"+p.ID[:6], 2000)}
		}, 3000},
		{"two refunds one by one, the totals late", func(p payments.Payment) []events.Event {
			return []events.Event{refund(p, "re_g"+p.ID[:6], 1000), refund(p, "re_h"+p.ID[:6], 2000), charge(p, 1000), charge(p, 3000)}
		}, 3000},
	} {
		p := g.pay(8000, "USD", "pm_card_visa", "automatic", true)
		for _, ev := range c.evs(p) {
			if rec := g.deliver(ev); rec.Code != 200 {
				t.Fatalf("%s: delivery: %d %s", c.name, rec.Code, rec.Body)
			}
		}
		var posted int64
		for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(p.ID))) {
			if ps.Data.Metadata["kind"] == payments.KindRefund {
				posted += ps.Data.Amount
			}
		}
		if got := g.get(p.ID); got.AmountRefunded != c.total || posted != c.total {
			t.Errorf("%s: amount_refunded %d, refund postings %d, want %d", c.name, got.AmountRefunded, posted, c.total)
		}
	}
}
