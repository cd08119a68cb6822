package payments_test

import (
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
)

// TestGatewayUpdatesAreMonotonic is the table of gateway states applied to
// every payment state as a webhook would deliver them: only forward moves
// apply, a failure applies only to an attempt in flight, stale news is
// ignored, and a repeat changes nothing.
func TestGatewayUpdatesAreMonotonic(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Minute), now.Add(-time.Minute)
	fail := &payments.Decline{Code: "card_declined", DeclineCode: "insufficient_funds"}
	cases := []struct {
		from    payments.Status
		op      string // pending operation
		st      payments.Status
		at      time.Time
		want    payments.Status
		changed bool
	}{
		{payments.Processing, "", payments.Succeeded, later, payments.Succeeded, true},
		{payments.Processing, "", payments.RequiresCapture, later, payments.RequiresCapture, true},
		{payments.Processing, "", payments.RequiresPaymentMethod, later, payments.RequiresPaymentMethod, true},
		{payments.Processing, "", payments.RequiresAction, later, payments.RequiresAction, true},
		{payments.Processing, "", payments.Canceled, later, payments.Canceled, true},
		{payments.Processing, payments.OpConfirm, payments.Succeeded, later, payments.Succeeded, true},               // forward even while our call runs
		{payments.Processing, payments.OpConfirm, payments.RequiresPaymentMethod, later, payments.Processing, false}, // only our call's answer fails it
		{payments.Processing, payments.OpConfirm, payments.RequiresAction, later, payments.Processing, false},        // idem
		{payments.Processing, "", payments.RequiresPaymentMethod, earlier, payments.Processing, false},               // stale
		{payments.RequiresCapture, "", payments.Processing, later, payments.RequiresCapture, false},                  // backwards
		{payments.RequiresCapture, "", payments.RequiresPaymentMethod, later, payments.RequiresCapture, false},       // not in flight
		{payments.RequiresCapture, "", payments.RequiresCapture, later, payments.RequiresCapture, false},             // repeat
		{payments.RequiresCapture, "", payments.Succeeded, later, payments.Succeeded, true},                          // captured at the gateway
		{payments.RequiresCapture, "", payments.Canceled, later, payments.Canceled, true},                            // expired at the gateway
		{payments.RequiresAction, "", payments.Processing, later, payments.Processing, true},                         // authenticated
		{payments.RequiresAction, "", payments.RequiresPaymentMethod, later, payments.RequiresPaymentMethod, true},   // authentication failed
		{payments.RequiresPaymentMethod, "", payments.RequiresPaymentMethod, later, payments.RequiresPaymentMethod, false},
		{payments.Succeeded, "", payments.Succeeded, later, payments.Succeeded, false},
		{payments.Succeeded, "", payments.Canceled, later, payments.Succeeded, false},
		{payments.Succeeded, "", payments.RequiresPaymentMethod, later, payments.Succeeded, false},
		{payments.Canceled, "", payments.Succeeded, later, payments.Canceled, false},
		{payments.Canceled, "", payments.RequiresCapture, later, payments.Canceled, false},
	}
	for _, c := range cases {
		p := &payments.Payment{ID: "p", Amount: 1000, Status: c.from, GatewayUpdatedAt: &now, Attempts: 1}
		if c.from == payments.RequiresCapture {
			p.AmountCapturable = 1000
		}
		if c.op != "" {
			p.SetOp(c.op, now)
		}
		st := payments.GatewayState{Status: c.st, At: c.at, AmountCapturable: 1000, AmountReceived: 1000}
		if c.st == payments.RequiresPaymentMethod {
			st.Decline = fail
		}
		ch := payments.ApplyGateway(p, st, false, 1, now)
		if p.Status != c.want || ch.Any() != c.changed {
			t.Errorf("%s (op %q) + %s at %v: got %s changed=%v, want %s changed=%v",
				c.from, c.op, c.st, c.at.Sub(now), p.Status, ch.Any(), c.want, c.changed)
		}
		again := payments.ApplyGateway(p, st, false, 1, now)
		if again.Captured != 0 || (again.Any() && c.st != payments.Processing) {
			t.Errorf("%s + %s twice changed it again: %+v", c.from, c.st, again)
		}
	}
}

// TestSucceededCapturesOnce proves a capture is counted once whatever the
// number of gateway answers saying so.
func TestSucceededCapturesOnce(t *testing.T) {
	now := time.Now()
	p := &payments.Payment{ID: "p", Amount: 1000, Status: payments.RequiresCapture, AmountCapturable: 1000}
	st := payments.GatewayState{Status: payments.Succeeded, AmountReceived: 700, At: now}
	if c := payments.ApplyGateway(p, st, true, 1, now); c.Captured != 700 || p.CaptureCount != 1 {
		t.Fatalf("first: %+v count %d", c, p.CaptureCount)
	}
	for i := 0; i < 3; i++ {
		if c := payments.ApplyGateway(p, st, true, 1, now); c.Captured != 0 || p.CaptureCount != 1 || p.AmountCaptured != 700 {
			t.Fatalf("repeat %d: %+v count %d captured %d", i, c, p.CaptureCount, p.AmountCaptured)
		}
	}
}
