package main

import (
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// A gateway's repeated confirmation of a payment this replica has seen
// succeeded costs PostgreSQL nothing: the first repeat reads the payment
// (one round trip, no transaction), the next are judged on what was read
// (payments.Idle), by billfn's id or by the gateway's object. A refund
// and a dispute of the remembered payment still apply.
func TestRepeatedConfirmationsOfAKnownTerminalPaymentCostNoRoundTrip(t *testing.T) {
	g, w := wiredRig(t)
	p := g.pay(2500, "USD", "pm_card_visa", "automatic", true)
	if p.Status != payments.Succeeded {
		t.Fatalf("payment: %+v", p)
	}
	quiet(w, w.mark())
	deliver := func(ev events.Event) (events.Result, int) {
		m := w.mark()
		res := g.deliverFor(ev)
		return res, len(quiet(w, m))
	}
	if res, trips := deliver(gatewayUpdated(t, p, "succeeded", time.Now())); res.Ignored != 1 || trips != 1 {
		t.Fatalf("the first repeated confirmation: %+v in %d round trips, want it ignored in 1", res, trips)
	}
	for _, ev := range []events.Event{
		gatewayUpdated(t, p, "succeeded", time.Now()),
		gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) { delete(d, "payment_id") }),
		gatewayUpdated(t, p, "canceled", time.Now()),
	} {
		if res, trips := deliver(ev); res.Ignored != 1 || trips != 0 {
			t.Errorf("a later repeated confirmation: %+v in %d round trips, want it ignored in 0", res, trips)
		}
	}
	refund := gatewayUpdated(t, p, "refunded", time.Now(), func(d map[string]any) {
		d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "charge", "charge.refunded", "ch_1"
		d["amount_refunded"], d["amount_received"] = 1000, 2500
	})
	if res, _ := deliver(refund); res.Processed != 1 {
		t.Fatalf("refund: %+v, want it processed", res)
	}
	dispute := gatewayUpdated(t, p, "disputed", time.Now(), func(d map[string]any) {
		d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "dispute", "charge.dispute.created", "dp_1"
	})
	if res, _ := deliver(dispute); res.Processed != 1 {
		t.Fatalf("dispute: %+v, want it processed", res)
	}
	if after := g.get(p.ID); after.AmountRefunded != 1000 || after.DisputedAt == nil || after.Status != payments.Succeeded {
		t.Fatalf("after the refund and the dispute: %+v", after)
	}
}

// idleFacts are the members of a payment payments.ChangesNothing reads.
func idleFacts(p payments.Payment) string {
	return strings.Join([]string{payments.Str(p.Gateway), payments.Str(p.GatewayPaymentID), string(p.Currency),
		time.Duration(p.Amount).String(), map[bool]string{true: "terminal"}[p.Status.Terminal()]}, " ")
}

// TestIdleFactsOutliveEveryOperation holds payments.Idle's argument
// through the API: from each terminal state, every operation of the API,
// every kind of gateway news and a tick leave the payment terminal with
// its gateway, object, currency and amount, and a dispute once recorded
// stays. It fails if the state machine comes to move a terminal payment.
func TestIdleFactsOutliveEveryOperation(t *testing.T) {
	g := newRig(t)
	for _, status := range []payments.Status{payments.Succeeded, payments.Canceled} {
		p := g.start(t, status)
		hasObject := p.Gateway != nil && p.GatewayPaymentID != nil // a payment canceled unconfirmed has none
		before := idleFacts(g.get(p.ID))
		for _, op := range []struct {
			path string
			body any
		}{
			{"/confirm", map[string]any{"payment_method": "pm_card_visa"}},
			{"/capture", nil},
			{"/cancel", nil},
			{"/refunds", map[string]any{"amount": 100}},
		} {
			g.do(req{method: "POST", path: "/payments/" + p.ID + op.path, body: op.body})
		}
		if hasObject {
			for _, st := range []string{"failed", "requires_capture", "processing", "requires_action", "succeeded", "canceled"} {
				g.deliverFor(gatewayUpdated(t, p, st, time.Now().Add(time.Hour)))
			}
			g.deliverFor(gatewayUpdated(t, p, "disputed", time.Now(), func(d map[string]any) {
				d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "dispute", "charge.dispute.created", "dp_1"
			}))
		}
		g.tick()
		after := g.get(p.ID)
		if got := idleFacts(after); got != before || after.Status != status {
			t.Errorf("%s payment after every operation: %q (%s), was %q", status, got, after.Status, before)
		}
		if hasObject && after.DisputedAt == nil {
			t.Errorf("%s payment: the dispute was not recorded", status)
		}
	}
}
