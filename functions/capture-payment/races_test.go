package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

func codesOf(recs []*httptest.ResponseRecorder) map[int]int {
	m := map[int]int{}
	for _, r := range recs {
		m[r.Code]++
	}
	return m
}

// Refunds of one payment fired together never refund more than was
// captured, each accepted one holds its own money in the ledger, and each
// is announced once.
func TestConcurrentRefundsNeverExceedTheCapture(t *testing.T) {
	g := newRig(t)
	for round := 0; round < 10; round++ {
		p := g.pay(10000, "USD", "pm_card_visa", "automatic", true)
		calls := make([]func() *httptest.ResponseRecorder, 8)
		for i := range calls {
			calls[i] = func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 3000}})
			}
		}
		recs := testenv.TogetherResults(calls...)
		codes := codesOf(recs)
		after := g.get(p.ID)
		var sum int64
		var rows int
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(amount),0), count(*) FROM refunds WHERE payment_id = $1`, p.ID).Scan(&sum, &rows); err != nil {
			t.Fatal(err)
		}
		if codes[201] > 3 || after.AmountRefunded+after.AmountRefundPending > after.AmountCaptured || sum > 10000 || rows != codes[201] {
			t.Fatalf("round %d: answers %v, payment refunded %d pending %d of %d, refund rows %d summing %d", round, codes,
				after.AmountRefunded, after.AmountRefundPending, after.AmountCaptured, rows, sum)
		}
		if after.AmountRefunded != int64(codes[201])*3000 {
			t.Fatalf("round %d: refunded %d for %d refunds", round, after.AmountRefunded, codes[201])
		}
	}
}

// A capture and a cancel of one authorization fired together: one wins,
// the payment ends in its state, and exactly one of captured/canceled is
// announced.
func TestCaptureRacingCancelHasOneOutcome(t *testing.T) {
	g := newRig(t)
	for round := 0; round < 15; round++ {
		p := g.pay(5000, "USD", "pm_card_visa", "manual", true)
		recs := testenv.TogetherResults(
			func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture", body: map[string]any{"amount": 4000}})
			},
			func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments/" + p.ID + "/cancel"})
			},
			func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture", body: map[string]any{"amount": 3000}})
			},
		)
		codes := codesOf(recs)
		after := g.get(p.ID)
		if codes[200] != 1 {
			t.Fatalf("round %d: answers %v (%s / %s / %s)", round, codes, recs[0].Body, recs[1].Body, recs[2].Body)
		}
		var received, capturable int64
		var status string
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT amount_received, amount_capturable, status FROM sandbox_intents WHERE id = $1`,
			*after.GatewayPaymentID).Scan(&received, &capturable, &status); err != nil {
			t.Fatal(err)
		}
		switch after.Status {
		case payments.Succeeded:
			if received != after.AmountCaptured || (received != 4000 && received != 3000) {
				t.Fatalf("round %d: captured %d, the gateway received %d (%s)", round, after.AmountCaptured, received, status)
			}
		case payments.Canceled:
			if received != 0 || after.AmountCaptured != 0 {
				t.Fatalf("round %d: canceled, the gateway received %d", round, received)
			}
		default:
			t.Fatalf("round %d: status %s", round, after.Status)
		}
		evs := g.drain(events.TopicPayment, forPayment(p.ID))
		n := map[string]int{}
		for _, e := range evs {
			n[e.Event.Type()]++
		}
		if n[events.TypePaymentCaptured]+n[events.TypePaymentCanceled] != 1 {
			t.Fatalf("round %d: events %v", round, n)
		}
		ps := postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))
		var posted int64
		for _, x := range ps {
			posted += x.Data.Amount
		}
		if posted != after.AmountCaptured {
			t.Fatalf("round %d: posted %d, captured %d", round, posted, after.AmountCaptured)
		}
	}
}

// Two confirms of one payment under different keys make one charge.
func TestConfirmTwiceWithDifferentKeysChargesOnce(t *testing.T) {
	g := newRig(t)
	for round := 0; round < 10; round++ {
		p := g.pay(2500, "USD", "pm_card_visa", "automatic", false)
		calls := make([]func() *httptest.ResponseRecorder, 5)
		for i := range calls {
			calls[i] = func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments/" + p.ID + "/confirm", body: map[string]any{"payment_method": "pm_card_visa"}})
			}
		}
		recs := testenv.TogetherResults(calls...)
		codes := codesOf(recs)
		after := g.get(p.ID)
		var intents int
		var received int64
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(amount_received),0) FROM sandbox_intents WHERE payment_id = $1`, p.ID).Scan(&intents, &received); err != nil {
			t.Fatal(fmt.Errorf("sandbox intents: %w", err))
		}
		if codes[200] != 1 || received != 2500 || after.AmountCaptured != 2500 {
			t.Fatalf("round %d: answers %v, intents %d received %d, payment %+v", round, codes, intents, received, after)
		}
	}
}

// A capture racing the gateway's own news of it (the webhook, delivered
// twice under two event ids): captured and posted once, with the clock
// following the wall clock and with it standing still. The capture's final
// write is guarded by the payment's updated_at as the flow read it; every
// write stamped the clock's instant, so two writes in one microsecond — a
// clock standing still, as the tests' does, or one stepped back — left the
// version as it was, the guard could not see the webhook's write, and the
// capture was announced twice (two payment.captured events, two postings
// of one event id). Each write now moves the version on by at least a
// microsecond (Payment.Touch).
func TestCaptureRacingItsWebhookPostsOnce(t *testing.T) {
	t.Run("wall clock", func(t *testing.T) { captureRacingItsWebhook(t, true) })
	t.Run("clock standing still", func(t *testing.T) { captureRacingItsWebhook(t, false) })
}

func captureRacingItsWebhook(t *testing.T, wall bool) {
	g := newRig(t)
	if wall {
		g.clock.FollowWallClock()
	}
	for round := 0; round < 15; round++ {
		p := g.pay(5000, "USD", "pm_card_visa", "manual", true)
		news := func() events.Event {
			return gatewayUpdated(t, p, "succeeded", time.Now(), func(d map[string]any) { d["amount_received"] = 3000 })
		}
		testenv.TogetherResults(
			func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture", body: map[string]any{"amount": 3000}})
			},
			func() *httptest.ResponseRecorder { return g.deliver(news()) },
			func() *httptest.ResponseRecorder { return g.deliver(news()) },
		)
		after := g.get(p.ID)
		ps := postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))
		var posted int64
		for _, x := range ps {
			posted += x.Data.Amount
		}
		n := 0
		for _, e := range g.drain(events.TopicPayment, forPayment(p.ID)) {
			if e.Event.Type() == events.TypePaymentCaptured {
				n++
			}
		}
		if after.AmountCaptured != 3000 || posted != 3000 || n != 1 {
			t.Fatalf("round %d: payment %s captured %d, posted %d in %d postings %+v, %d captured events", round, after.Status, after.AmountCaptured, posted, len(ps), ps, n)
		}
	}
}

// One Idempotency-Key sent at once with different bodies: one payment.
func TestOneKeyWithDifferentBodiesAtOnceHasOneEffect(t *testing.T) {
	g := newRig(t)
	for round := 0; round < 10; round++ {
		key := "race-" + uuid.NewString()
		calls := make([]func() *httptest.ResponseRecorder, 6)
		for i := range calls {
			calls[i] = func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments", key: key, body: map[string]any{"account_id": g.account,
					"amount": 1000 + i, "currency": "USD", "payment_method": "pm_card_visa", "capture_method": "automatic", "confirm": true}})
			}
		}
		recs := testenv.TogetherResults(calls...)
		var n, charged int
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE i.amount_received > 0)
			FROM payments p LEFT JOIN sandbox_intents i ON i.payment_id = p.id WHERE p.account_id = $1`, g.account).Scan(&n, &charged); err != nil {
			t.Fatal(err)
		}
		codes := codesOf(recs)
		if n != round+1 || charged != round+1 || codes[201] < 1 {
			t.Fatalf("round %d: %d payments, %d charged for %d keys (answers %v)", round, n, charged, round+1, codes)
		}
	}
}

// An invoice charged automatically: its finalized event delivered twice at
// once (one id, and another id), dunning retries, a confirm of its payment
// and a new payment of it by the merchant, all at once: the invoice is
// charged at most its total.
func TestAnInvoiceCollectedFromEverySideAtOnceIsChargedOnce(t *testing.T) {
	g := newRig(t)
	g.saveMethod(t, "pm_card_visa_chargeDeclined", true)
	for round := 0; round < 8; round++ {
		invoice := uuid.NewString()
		fin := invoiceFinalized(t, g.account, invoice, 990)
		if rec := g.deliver(fin); rec.Code != 200 {
			t.Fatalf("finalized: %d %s", rec.Code, rec.Body)
		}
		pid := payments.InvoicePaymentID(invoice)
		if p := g.get(pid); p.Status != payments.RequiresPaymentMethod {
			t.Fatalf("round %d: declined first: %+v", round, p)
		}
		good := g.saveMethod(t, "pm_card_visa", true)
		retry := func() *httptest.ResponseRecorder {
			return g.deliver(event(t, "generate-invoice", events.TypeInvoicePaymentRetryRequested, invoice, map[string]any{
				"invoice_id": invoice, "account_id": g.account, "currency": "USD", "amount_due": 990,
				"collection_method": "charge_automatically", "attempt": 2}))
		}
		testenv.TogetherResults(
			retry, retry,
			func() *httptest.ResponseRecorder { return g.deliver(fin) },
			func() *httptest.ResponseRecorder { return g.deliver(invoiceFinalized(t, g.account, invoice, 990)) },
			func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments/" + pid + "/confirm", body: map[string]any{"payment_method": good.ID}})
			},
			func() *httptest.ResponseRecorder { return g.payInvoice(g.account, invoice, 990, "USD") },
		)
		var received int64
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(i.amount_received), 0) FROM sandbox_intents i
			JOIN payments p ON p.id = i.payment_id WHERE p.invoice_id = $1`, invoice).Scan(&received); err != nil {
			t.Fatal(err)
		}
		var captured int64
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(amount_captured), 0) FROM payments WHERE invoice_id = $1`, invoice).Scan(&captured); err != nil {
			t.Fatal(err)
		}
		if received > 990 || captured > 990 {
			t.Fatalf("round %d: the gateway received %d, payments captured %d of an invoice of 990", round, received, captured)
		}
		g.saveMethod(t, "pm_card_visa_chargeDeclined", true)
	}
}
