package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
)

// testLedger answers process-transaction's POST /transfers for holds, as
// far as a refund's reservation needs it: an account holds what funds
// says (unlimited when absent), an Idempotency-Key replays its first
// answer. The real process-transaction is another binary; the system
// tests in cmd/stack run the refund against it.
type testLedger struct {
	srv   *httptest.Server
	mu    sync.Mutex
	funds map[string]int64 // account id → what it can still hold
	holds []payments.Hold  // every hold placed, in order
	byKey map[string][]byte
	calls int
	down  bool // answer 503, as an unreachable process-transaction would
}

func newTestLedger(t testing.TB) *testLedger {
	l := &testLedger{funds: map[string]int64{}, byKey: map[string][]byte{}}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *testLedger) serve(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/transfers" || r.Header.Get("Authorization") != "Bearer ledger-test-token" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	answer := func(status int, body []byte) {
		l.byKey[key] = append([]byte{byte(status >> 8), byte(status)}, body...)
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}
	if prev, ok := l.byKey[key]; ok {
		w.WriteHeader(int(prev[0])<<8 | int(prev[1]))
		_, _ = w.Write(prev[2:])
		return
	}
	var h payments.Hold
	if err := json.NewDecoder(r.Body).Decode(&h); err != nil || !h.Pending || h.Amount <= 0 {
		answer(http.StatusUnprocessableEntity, []byte(`{"code":"validation_failed"}`))
		return
	}
	if left, limited := l.funds[h.FromAccountID]; limited && h.FromAccountID != "" {
		if h.Amount > left {
			answer(http.StatusUnprocessableEntity, []byte(`{"code":"insufficient_funds","detail":"insufficient funds"}`))
			return
		}
		l.funds[h.FromAccountID] = left - h.Amount
	}
	l.holds = append(l.holds, h)
	body, _ := json.Marshal(map[string]any{"id": uuid.NewString(), "status": "held", "amount": h.Amount})
	answer(http.StatusCreated, body)
}

func (l *testLedger) state() (holds []payments.Hold, calls int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]payments.Hold(nil), l.holds...), l.calls
}

// holdEvents are the hold resolutions capture-payment asked for about p.
func (g *rig) holdEvents(t *testing.T, p string, want int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, r := range g.consume(events.TopicTransaction, want, func(r record) bool {
		return r.Key == p && (r.Event.Type() == events.TypeHoldCaptureRequested || r.Event.Type() == events.TypeHoldVoidRequested)
	}) {
		out[r.Event.Type()]++
	}
	return out
}

func TestRefundIsReservedInTheLedgerBeforeTheGatewayAndCapturedAfter(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2000}}), 201)
	if r.Status != "succeeded" || r.LedgerHoldID == nil {
		t.Fatalf("refund %+v: want succeeded with its ledger hold", r)
	}
	holds, _ := g.ledger.state()
	if len(holds) != 1 || holds[0].FromAccountID != g.account || holds[0].ToAccountNumber != "SYS-CLEARING-USD" ||
		holds[0].Amount != 2000 || holds[0].Metadata["kind"] != payments.KindRefund || holds[0].Metadata["refund_id"] != r.ID {
		t.Fatalf("holds %+v: want one hold of 2000 from the account to clearing", holds)
	}
	if got := g.holdEvents(t, p.ID, 1); got[events.TypeHoldCaptureRequested] != 1 || got[events.TypeHoldVoidRequested] != 0 {
		t.Fatalf("hold resolutions %v: want one capture", got)
	}
	// The refund's own postings are the hold: no second movement by event.
	for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(p.ID))) {
		if ps.Data.Metadata["kind"] == payments.KindRefund {
			t.Fatalf("a refund posting besides the hold: %+v", ps)
		}
	}
}

func TestRefundTheLedgerCannotCoverIsRefusedWithoutAskingTheGateway(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	// The customer spent the money: the account holds 1000 only.
	g.ledger.mu.Lock()
	g.ledger.funds[g.account] = 1000
	g.ledger.mu.Unlock()
	before := g.sandboxRefunds(t)
	rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2000}})
	if code := problemCode(t, rec, 422); code != string(payments.CodeInsufficientFunds) {
		t.Fatalf("refund beyond the ledger: %s", code)
	}
	if after := g.sandboxRefunds(t); after != before {
		t.Fatalf("the gateway was asked to refund (%d refunds, %d before)", after, before)
	}
	var n int
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM refunds WHERE payment_id = $1`, p.ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refund rows after a refused refund: %d, %v", n, err)
	}
	if got := g.get(p.ID); got.AmountRefundPending != 0 || got.AmountRefunded != 0 {
		t.Fatalf("payment after a refused refund: %+v", got)
	}
	// What the account does hold can still be refunded.
	r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 1000}}), 201)
	if r.Status != "succeeded" {
		t.Fatalf("a covered refund: %+v", r)
	}
}

func TestRefundTheGatewayRefusesVoidsItsHold(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	// The sandbox refuses refunds of this payment (charge_not_refundable).
	if _, err := g.d.Pool.Exec(t.Context(), `UPDATE sandbox_intents SET status = 'canceled' WHERE payment_id = $1`, p.ID); err != nil {
		t.Fatal(err)
	}
	rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2000}})
	var r payments.Refund
	_ = json.Unmarshal(rec.Body.Bytes(), &r)
	if r.Status != "failed" && rec.Code < 400 {
		t.Fatalf("a refused refund: %d %s", rec.Code, rec.Body)
	}
	if got := g.holdEvents(t, p.ID, 1); got[events.TypeHoldVoidRequested] != 1 || got[events.TypeHoldCaptureRequested] != 0 {
		t.Fatalf("hold resolutions %v: want one void, no capture", got)
	}
	if got := g.get(p.ID); got.AmountRefunded != 0 || got.AmountRefundPending != 0 {
		t.Fatalf("payment after a failed refund: %+v", got)
	}
}

func TestRefundIsTheMerchantsAct(t *testing.T) {
	g := newRig(t)
	cust := uuid.NewString()
	acct := g.newAccount(cust, "USD")
	p := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", sub: cust, role: auth.RoleCustomer,
		body: map[string]any{"account_id": acct, "amount": 3000, "currency": "USD", "payment_method": "pm_card_visa", "confirm": true}}), 201)
	rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", sub: cust, role: auth.RoleCustomer, body: map[string]any{"amount": 3000}})
	if code := problemCode(t, rec, 403); code != "forbidden" {
		t.Fatalf("a customer's refund: %s", code)
	}
	if holds, _ := g.ledger.state(); len(holds) != 0 {
		t.Fatalf("a refused refund placed holds: %+v", holds)
	}
}

// sandboxRefunds counts the refunds the sandbox gateway has made.
func (g *rig) sandboxRefunds(t *testing.T) int {
	t.Helper()
	var n int
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM sandbox_refunds`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A refund whose request stopped before the ledger answered is finished by
// the reconciliation tick, ledger first: never refunded at the gateway
// without its hold (found by the fault test: a refund posted twice).
func TestAPendingRefundWithoutItsHoldIsReservedBeforeTheTickRefundsIt(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	g.ledger.mu.Lock()
	g.ledger.down = true
	g.ledger.mu.Unlock()
	before := g.sandboxRefunds(t)
	if rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 1500}}); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("refund while the ledger is down: %d %s", rec.Code, rec.Body)
	}
	g.clock.Advance(time.Minute)
	if err := g.s.api.Tick(t.Context()); err == nil { // the ledger is still down: nothing is refunded
		t.Fatal("the tick reported success with the refund's reservation unreachable")
	}
	if after := g.sandboxRefunds(t); after != before {
		t.Fatalf("the tick refunded at the gateway without a hold")
	}
	g.ledger.mu.Lock()
	g.ledger.down = false
	g.ledger.mu.Unlock()
	g.clock.Advance(time.Minute)
	g.tick()
	holds, _ := g.ledger.state()
	if len(holds) != 1 || g.sandboxRefunds(t) != before+1 {
		t.Fatalf("after the tick: holds %+v, gateway refunds %d (before %d)", holds, g.sandboxRefunds(t), before)
	}
	if got := g.holdEvents(t, p.ID, 1); got[events.TypeHoldCaptureRequested] != 1 {
		t.Fatalf("hold resolutions %v", got)
	}
	for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(p.ID))) {
		if ps.Data.Metadata["kind"] == payments.KindRefund {
			t.Fatalf("a refund posting besides the hold: %+v", ps)
		}
	}
}

// A refund's id is derived from its caller and Idempotency-Key. Once the
// key's record has expired (24 hours), the same key may come again for a
// refund of another payment: it must not be answered with the first
// payment's refund, a 201 that refunds nothing, but refused as a key
// already used for another request.
func TestAnExpiredRefundKeyIsNotAnsweredWithAnotherPaymentsRefund(t *testing.T) {
	g := newRig(t)
	p1 := g.pay(5000, "USD", "pm_card_visa", "automatic", true)
	p2 := g.pay(3000, "USD", "pm_card_visa", "automatic", true)
	k := uuid.NewString()
	first := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p1.ID + "/refunds", key: k, body: map[string]any{"amount": 1000}}), 201)
	if _, err := g.d.Pool.Exec(context.Background(), `DELETE FROM idempotency_keys WHERE key = $1`, k); err != nil {
		t.Fatal(err)
	}
	rec := g.do(req{method: "POST", path: "/payments/" + p2.ID + "/refunds", key: k, body: map[string]any{"amount": 1000}})
	if code := problemCode(t, rec, 422); code != "idempotency_key_reused" {
		t.Fatalf("the expired key on another payment: %s (the first refund was %s)", code, first.ID)
	}
	if got := g.get(p2.ID); got.AmountRefunded != 0 || got.AmountRefundPending != 0 {
		t.Fatalf("the second payment after a refused refund: %+v", got)
	}
}

// A payment's id is derived from its caller and Idempotency-Key too: once
// the key's record has expired, the same key with another request (another
// amount, account or invoice) is refused as a reused key, not answered 201
// with the earlier payment, which the client would take for a new charge.
// The same request again still answers the payment it made.
func TestAnExpiredPaymentKeyIsNotAnsweredWithAnotherPayment(t *testing.T) {
	g := newRig(t)
	for _, confirm := range []bool{true, false} {
		k := uuid.NewString()
		body := map[string]any{"account_id": g.account, "amount": 5000, "currency": "USD",
			"payment_method": "pm_card_visa", "capture_method": "automatic", "confirm": confirm}
		first := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", key: k, body: body}), 201)
		expire := func() {
			if _, err := g.d.Pool.Exec(context.Background(), `DELETE FROM idempotency_keys WHERE key = $1`, k); err != nil {
				t.Fatal(err)
			}
		}
		expire()
		again := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", key: k, body: body}), 201)
		if again.ID != first.ID || again.Amount != 5000 {
			t.Fatalf("confirm %v: the same request after expiry answered %+v, want payment %s", confirm, again, first.ID)
		}
		expire()
		body["amount"] = 3000
		rec := g.do(req{method: "POST", path: "/payments", key: k, body: body})
		if code := problemCode(t, rec, 422); code != "idempotency_key_reused" {
			t.Fatalf("confirm %v: another amount under the expired key: %s", confirm, code)
		}
	}
}
