package payments

import (
	"strings"
	"sync"
	"time"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
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

// Idle remembers, per replica, the payments found terminal, as much of
// each as ChangesNothing reads, so that a gateway's repeated confirmation
// of one is judged without reading it again (issue 20: that read was a
// read-only commit per webhook, 0.498). It is used only to answer "changes
// nothing": an update the remembered payment would not ignore is judged on
// the payment read afresh, as before. That is sound because for a payment
// p seen terminal, ChangesNothing(p, u) implies ChangesNothing(q, u) for
// every later state q of p, since every member ChangesNothing reads keeps
// its value, or moves only towards "changes nothing":
//   - Amount and Currency are never updated (store's updateSet has neither);
//   - the status stays terminal: ApplyGateway moves a terminal payment no
//     more, and every other transition starts from a non-terminal state
//     (confirm, capture, cancel and the collection's retry refuse a
//     terminal payment; a refund writes only refund amounts);
//   - Gateway and GatewayPaymentID are set only by StartAttempt (a
//     confirmation, from a non-terminal state) and by ApplyGateway (which
//     returns first for a terminal payment), and the object stays the
//     payment's alone (payments_gateway_object_idx is unique), so naming
//     it by its object finds the same payment;
//   - DisputedAt is set once and never cleared;
//   - payments are never deleted.
//
// TestTerminalPaymentsKeepWhatChangesNothingReads and, through the API,
// TestIdleFactsOutliveEveryOperation fail if the state machine changes so
// that one of these no longer holds.
type Idle struct {
	mu sync.Mutex
	m  map[PaymentName]idle
	// Max bounds the entries (two per payment: by id and by object, about
	// 100 bytes each besides the object id); the map is emptied when it is
	// reached.
	Max int
}

// idle is what ChangesNothing reads of a terminal payment.
type idle struct {
	id, gateway, object string
	currency            money.Currency
	amount              int64
	status              Status
	disputedAt          *time.Time
}

// Put remembers p if it is terminal.
func (c *Idle) Put(p *Payment) {
	if p == nil || !p.Status.Terminal() || p.Gateway == nil || p.GatewayPaymentID == nil {
		return // ChangesNothing is false for a payment without a gateway object
	}
	e := idle{id: p.ID, gateway: *p.Gateway, object: *p.GatewayPaymentID, currency: p.Currency, amount: p.Amount,
		status: p.Status, disputedAt: p.DisputedAt}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m)+2 > max(c.Max, 2) {
		c.m = map[PaymentName]idle{}
	}
	c.m[PaymentName{ID: e.id}] = e
	c.m[PaymentName{Gateway: e.gateway, Object: e.object}] = e
}

// ChangesNothing reports whether the payment n names, remembered as
// terminal, certainly ignores u (ChangesNothing); false when it is not
// remembered or would not: then the caller reads it.
func (c *Idle) ChangesNothing(n PaymentName, u events.GatewayUpdate) bool {
	c.mu.Lock()
	e, ok := c.m[n]
	c.mu.Unlock()
	if !ok {
		return false
	}
	p := Payment{ID: e.id, Gateway: &e.gateway, GatewayPaymentID: &e.object, Currency: e.currency, Amount: e.amount,
		Status: e.status, DisputedAt: e.disputedAt}
	return ChangesNothing(&p, u)
}
