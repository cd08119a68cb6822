package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/api"
	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
)

func shortTimeout(c *Config) { c.GatewayTimeout = config.Duration(300 * time.Millisecond) }

func TestSandboxTimeoutLeavesProcessingThenReconciliationSettlesOnce(t *testing.T) {
	g := newRig(t, shortTimeout)
	for _, capture := range []string{"automatic", "manual"} {
		t.Run(capture, func(t *testing.T) {
			start := time.Now()
			p := g.pay(4100, "USD", "pm_sandbox_timeout", capture, true)
			if waited := time.Since(start); waited < 300*time.Millisecond {
				t.Fatalf("answered after %v: the sandbox should never answer", waited)
			}
			if p.Status != payments.Processing || p.PendingOperation != nil || p.AmountCaptured != 0 {
				t.Fatalf("after the timeout: %+v", p)
			}
			view := decode[api.PaymentView](t, g.do(req{method: "GET", path: "/payments/" + p.ID}), 200)
			if a := view.AttemptHistory; len(a) != 1 || a[0].Status != "processing" || a[0].FinishedAt != nil {
				t.Fatalf("attempt %+v", a)
			}
			g.tick() // too early: nothing
			if got := g.get(p.ID); got.Status != payments.Processing {
				t.Fatalf("reconciled before RECONCILE_AFTER: %s", got.Status)
			}
			g.clock.Advance(g.s.cfg.ReconcileAfter.D() + time.Second)
			g.tick()
			got := g.get(p.ID)
			want := map[string]payments.Status{"automatic": payments.Succeeded, "manual": payments.RequiresCapture}[capture]
			if got.Status != want {
				t.Fatalf("after reconciliation: %s, want %s", got.Status, want)
			}
			if capture == "manual" {
				got = decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture"}), 200)
			}
			g.clock.Advance(g.s.cfg.ReconcileAfter.D() + time.Second)
			g.tick()
			if got.AmountCaptured != 4100 {
				t.Fatalf("captured %d", got.AmountCaptured)
			}
			ps := postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))
			if len(ps) != 1 || ps[0].Data.Amount != 4100 {
				t.Fatalf("postings %+v", ps)
			}
		})
	}
}

func TestSandboxDelayedSettlesLaterAndReconciliationFindsIt(t *testing.T) {
	g := newRig(t)
	p := g.pay(1999, "EUR", "pm_sandbox_delayed", "automatic", true)
	if p.Status != payments.Processing || *p.GatewayPaymentID == "" {
		t.Fatalf("delayed: %+v", p)
	}
	// Not due yet: the gateway still says processing.
	g.clock.Advance(g.s.cfg.ReconcileAfter.D() + time.Second)
	g.tick()
	if got := g.get(p.ID); got.Status != payments.Processing {
		t.Fatalf("settled early: %s", got.Status)
	}
	g.clock.Advance(g.s.cfg.SandboxSettleDelay.D())
	g.tick()
	got := g.get(p.ID)
	if got.Status != payments.Succeeded || got.AmountCaptured != 1999 {
		t.Fatalf("after settlement: %+v", got)
	}
	evs := g.consume(events.TopicPayment, 2, forPayment(p.ID))
	if got := types(evs); len(got) != 2 || got[0] != events.TypePaymentCreated || got[1] != events.TypePaymentCaptured {
		t.Fatalf("events %v", got)
	}
	// payment.created tells handle-webhook the gateway object of the
	// processing payment, before any webhook about it.
	var created struct {
		Status           string `json:"status"`
		GatewayPaymentID string `json:"gateway_payment_id"`
	}
	_ = jsonUnmarshal(evs[0].Event.Data(), &created)
	if created.Status != "processing" || created.GatewayPaymentID != *p.GatewayPaymentID {
		t.Fatalf("payment.created %s", evs[0].Event.Data())
	}
}

func TestReconciliationFinishesAnOperationWhoseAnswerWasLost(t *testing.T) {
	g := newRig(t)
	p := g.pay(600, "USD", "pm_card_visa", "manual", true)
	// The capture reached the gateway, then the process died before
	// recording it: the gateway captured, the payment is still marked.
	ctx := context.Background()
	if _, err := g.s.sandbox.Capture(ctx, payments.CaptureRequest{GatewayPaymentID: *p.GatewayPaymentID, Key: payments.GatewayKey(p.ID, "capture"), Amount: 600}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.d.Pool.Exec(ctx, `UPDATE payments SET pending_op = 'capture', op_started_at = $2 WHERE id = $1`, p.ID, g.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if code := problemCode(t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture"}), 409); code != string(payments.CodeOpInProgress) {
		t.Fatalf("capture while one waits: %s", code)
	}
	g.clock.Advance(g.s.cfg.ReconcileAfter.D() + time.Second)
	g.tick()
	got := g.get(p.ID)
	if got.Status != payments.Succeeded || got.AmountCaptured != 600 || got.PendingOperation != nil {
		t.Fatalf("after reconciliation: %+v", got)
	}
	if n := len(postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))); n != 1 {
		t.Fatalf("%d postings", n)
	}
}

func TestStaleAuthorizationsExpire(t *testing.T) {
	g := newRig(t)
	p := g.pay(700, "USD", "pm_card_visa", "manual", true)
	g.clock.Advance(g.s.cfg.AuthorizationTTL.D() - time.Hour)
	g.tick()
	if got := g.get(p.ID); got.Status != payments.RequiresCapture {
		t.Fatalf("expired early: %s", got.Status)
	}
	g.clock.Advance(2 * time.Hour)
	g.tick()
	got := g.get(p.ID)
	if got.Status != payments.Canceled || got.CancellationReason == nil || *got.CancellationReason != "expired" || got.AmountCapturable != 0 {
		t.Fatalf("after expiry: %+v", got)
	}
	var status string
	_ = g.d.Pool.QueryRow(context.Background(), `SELECT status FROM sandbox_intents WHERE id = $1`, *p.GatewayPaymentID).Scan(&status)
	if status != "canceled" {
		t.Fatalf("the gateway still holds the authorization: %s", status)
	}
	evs := g.consume(events.TopicPayment, 3, forPayment(p.ID))
	if got := types(evs); got[len(got)-1] != events.TypePaymentCanceled {
		t.Fatalf("events %v", got)
	}
}

func TestSandboxUnavailableIsAGatewayErrorNotADecline(t *testing.T) {
	g := newRig(t)
	p := g.pay(500, "USD", "pm_sandbox_unavailable", "automatic", true)
	e := p.LastPaymentError
	if p.Status != payments.RequiresPaymentMethod || e == nil || e.Reason != "gateway_unavailable" {
		t.Fatalf("payment %+v", p)
	}
	view := decode[api.PaymentView](t, g.do(req{method: "GET", path: "/payments/" + p.ID}), http.StatusOK)
	if a := view.AttemptHistory; len(a) != 1 || !a[0].GatewayError {
		t.Fatalf("attempts %+v", a)
	}
	// Nothing reached the gateway, so a cancel is local.
	if got := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/cancel"}), 200); got.Status != payments.Canceled {
		t.Fatalf("cancel: %s", got.Status)
	}
}
