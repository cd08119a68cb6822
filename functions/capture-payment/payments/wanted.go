package payments

import (
	"strings"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
)

// Named is what a gateway.updated event names: a payment by billfn's id
// when it carries one (ID, canonical), else by the gateway's object (Gateway, Object),
// as OnGatewayUpdated looks it up. ok is false when the event names none
// that could be looked up (the handler refuses it).
func Named(u events.GatewayUpdate) (n PaymentName, ok bool) {
	switch {
	case Str(u.PaymentID) != "":
		id, ok := ids.Canonical(*u.PaymentID)
		return PaymentName{ID: id}, ok
	case u.GatewayPaymentID != "":
		return PaymentName{Gateway: u.Gateway, Object: u.GatewayPaymentID}, true
	}
	return n, false
}

// PaymentName names a payment by its id, or by its gateway object.
type PaymentName struct {
	ID              string
	Gateway, Object string
}

// ChangesNothing reports whether OnGatewayUpdated, given update u about p
// (the payment u names, as it is now), would certainly change nothing and
// refuse nothing: a repeated confirmation of a payment that succeeded or
// was canceled (terminal: ApplyGateway moves it no more, whatever u
// reports, and writes no attempt), a dispute already recorded. It is the
// capture-payment receiver's Wanted test, so it is conservative: false
// for anything the handler could write or park (an update about another
// object or gateway, a currency or amount that does not match, a refund
// or charge update, which settles or records refunds, an object type or
// status it does not know). Both states are monotonic (a terminal
// payment stays so, disputed_at is set once), so an event found idle
// stays idle at every later delivery.
func ChangesNothing(p *Payment, u events.GatewayUpdate) bool {
	if p == nil || p.Gateway == nil || *p.Gateway != u.Gateway || p.GatewayPaymentID == nil ||
		(u.GatewayPaymentID != "" && *p.GatewayPaymentID != u.GatewayPaymentID) {
		return false
	}
	if u.Currency != "" && !strings.EqualFold(u.Currency, string(p.Currency)) {
		return false
	}
	switch u.ObjectType {
	case "payment_intent":
		if u.Amount != 0 && u.Amount != p.Amount {
			return false
		}
		switch u.Status {
		case "failed", "requires_capture", "processing", "requires_action", "succeeded", "canceled":
			return p.Status.Terminal()
		}
	case "dispute":
		return p.DisputedAt != nil
	}
	return false
}
