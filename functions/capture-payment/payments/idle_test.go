package payments

import (
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

// idleMembers are the members of a payment ChangesNothing reads.
type idleMembers struct {
	gateway, object, currency string
	amount                    int64
	terminal, disputed        bool
}

func membersOf(p *Payment) idleMembers {
	return idleMembers{gateway: Str(p.Gateway), object: Str(p.GatewayPaymentID), currency: string(p.Currency),
		amount: p.Amount, terminal: p.Status.Terminal(), disputed: p.DisputedAt != nil}
}

// TestTerminalPaymentsKeepWhatChangesNothingReads holds Idle's argument
// for the gateway's side: whatever state, answer or object a gateway
// reports, ApplyGateway leaves a terminal payment terminal with the
// gateway, object, currency, amount and dispute Idle remembers.
func TestTerminalPaymentsKeepWhatChangesNothingReads(t *testing.T) {
	now := time.Now()
	for _, status := range []Status{Succeeded, Canceled} {
		for _, reported := range []Status{RequiresPaymentMethod, RequiresConfirmation, RequiresAction, Processing,
			RequiresCapture, Succeeded, Canceled, "unknown"} {
			for _, answer := range []bool{false, true} {
				for _, op := range []string{"", OpConfirm, OpCapture, OpCancel} {
					gw, obj := GatewaySandbox, "pi_1"
					p := &Payment{ID: "p", Gateway: &gw, GatewayPaymentID: &obj, Currency: "USD", Amount: 1000, Status: status,
						AmountCaptured: 1000, Attempts: 1}
					if op != "" {
						p.SetOp(op, now)
					}
					before := membersOf(p)
					ApplyGateway(p, GatewayState{Status: reported, GatewayPaymentID: "pi_other", AmountReceived: 5,
						AmountCapturable: 5, At: now.Add(time.Hour)}, answer, 1, now)
					if after := membersOf(p); after != before || p.Status != status {
						t.Errorf("%s payment, gateway reports %s (answer %v, op %q): %+v (%s), was %+v", status, reported, answer, op,
							after, p.Status, before)
					}
				}
			}
		}
	}
}

// Idle answers "changes nothing" only as ChangesNothing would on the
// payment it remembers, only for terminal payments, by id and by object.
func TestIdleRemembersTerminalPaymentsOnly(t *testing.T) {
	gw, obj := GatewaySandbox, "pi_1"
	u := events.GatewayUpdate{Gateway: gw, GatewayPaymentID: obj, ObjectType: "payment_intent", Status: "succeeded",
		Amount: 1000, Currency: "usd"}
	byID, byObject := PaymentName{ID: "p"}, PaymentName{Gateway: gw, Object: obj}
	var c Idle
	c.Put(&Payment{ID: "p", Gateway: &gw, GatewayPaymentID: &obj, Currency: "USD", Amount: 1000, Status: Processing})
	if c.ChangesNothing(byID, u) || c.ChangesNothing(byObject, u) {
		t.Fatal("a processing payment remembered")
	}
	c.Put(&Payment{ID: "p", Gateway: &gw, GatewayPaymentID: &obj, Currency: "USD", Amount: 1000, Status: Succeeded})
	if !c.ChangesNothing(byID, u) || !c.ChangesNothing(byObject, u) {
		t.Fatal("a succeeded payment not remembered")
	}
	refund := u
	refund.ObjectType = "charge"
	other := u
	other.Amount = 999
	if c.ChangesNothing(byID, refund) || c.ChangesNothing(byID, other) {
		t.Fatal("a refund or a mismatch judged idle")
	}
}
