package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// generate-invoice's report of money an invoice did not need arrives while
// a refund of that payment is still pending (its ledger reservation could
// not be made yet, or the gateway has not answered). The report credits
// the account only what revenue will still hold once that refund is
// through; when the refund then fails, what it would have taken must be
// credited after all: the invoice needed none of the payment, so revenue
// keeps none of it, whichever came first.
func TestAFailedRefundPendingDuringAnUnappliedReportIsCreditedAfterAll(t *testing.T) {
	g := newRig(t)
	inv, p := g.captureOnAPaidInvoice(t) // 2900 captured on an invoice paid another way
	key := "k-" + uuid.NewString()
	refund := func() *http.Response {
		return g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", key: key, body: map[string]any{"amount": 1000}}).Result()
	}
	g.ledger.mu.Lock()
	g.ledger.down = true
	g.ledger.mu.Unlock()
	if r := refund(); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("refund while the ledger is down: %d", r.StatusCode)
	}
	unapplied := event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": 2900, "currency": "USD", "reason": "invoice_paid"})
	if rec := g.deliver(unapplied); rec.Code != 200 {
		t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
	}
	// Meanwhile 2000 were refunded in the gateway's dashboard (its news
	// not in yet): the gateway refuses the 1000 billfn asks for.
	if _, err := g.d.Pool.Exec(context.Background(), `UPDATE sandbox_intents SET amount_refunded = 2000 WHERE id = $1`, *p.GatewayPaymentID); err != nil {
		t.Fatal(err)
	}
	g.ledger.mu.Lock()
	g.ledger.down = false
	g.ledger.mu.Unlock()
	r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", key: key, body: map[string]any{"amount": 1000}}), 201)
	if r.Status != "failed" {
		t.Fatalf("refund %+v, want failed at the gateway", r)
	}
	balance := g.postedBalances(t, p.ID)
	if balance["SYS-REVENUE-USD"] != 0 || balance[g.account] != 2900 {
		t.Fatalf("balances %v: want revenue 0 (the invoice needed none of the payment) and all 2900 credited to the account", balance)
	}
}

// The report of money an invoice did not need racing refunds of that
// payment: whatever the order, revenue ends holding none of it, the
// account the part not refunded, and no more is refunded than captured.
func TestAnUnappliedReportRacingRefundsLeavesRevenueNothing(t *testing.T) {
	g := newRig(t)
	for round := 0; round < 8; round++ {
		inv, p := g.captureOnAPaidInvoice(t) // 2900 the invoice did not need
		unapplied := event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID,
			"invoice_id": inv, "account_id": g.account, "amount": 2900, "currency": "USD", "reason": "invoice_paid"})
		refund := func(amount int64) func() *httptest.ResponseRecorder {
			return func() *httptest.ResponseRecorder {
				return g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": amount}})
			}
		}
		testenv.TogetherResults(func() *httptest.ResponseRecorder { return g.deliver(unapplied) }, refund(1000), refund(1000), refund(500))
		var refunded int64
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(amount), 0) FROM refunds
			WHERE payment_id = $1 AND status = 'succeeded'`, p.ID).Scan(&refunded); err != nil {
			t.Fatal(err)
		}
		balance := g.postedBalances(t, p.ID)
		holds, _ := g.ledger.state()
		for _, h := range holds {
			if h.ReferenceID != "" && strings.HasPrefix(h.ReferenceID, p.ID+":") {
				balance[h.FromAccountNumber+h.FromAccountID] -= h.Amount // every refund here succeeded: its hold captured
				balance[h.ToAccountNumber+h.ToAccountID] += h.Amount
			}
		}
		if refunded > 2900 || balance["SYS-REVENUE-USD"] != 0 || balance[g.account] != 2900-refunded {
			t.Fatalf("round %d: refunded %d; balances %v: want revenue 0 and the account %d", round, refunded, balance, 2900-refunded)
		}
	}
}

// The same, the refund's hold then refused by the ledger (the refund is
// removed): what the report withheld for it is credited after all.
func TestARefusedRefundPendingDuringAnUnappliedReportIsCreditedAfterAll(t *testing.T) {
	g := newRig(t)
	inv, p := g.captureOnAPaidInvoice(t)
	key := "k-" + uuid.NewString()
	refund := func() *httptest.ResponseRecorder {
		return g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", key: key, body: map[string]any{"amount": 1000}})
	}
	g.ledger.mu.Lock()
	g.ledger.down = true
	g.ledger.mu.Unlock()
	if r := refund(); r.Code != http.StatusServiceUnavailable {
		t.Fatalf("refund while the ledger is down: %d %s", r.Code, r.Body)
	}
	var refundID string
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT id::text FROM refunds WHERE payment_id = $1 AND status = 'pending'`, p.ID).Scan(&refundID); err != nil {
		t.Fatal(err)
	}
	unapplied := event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": 2900, "currency": "USD", "reason": "invoice_paid"})
	if rec := g.deliver(unapplied); rec.Code != 200 {
		t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
	}
	// The ledger refuses the hold when it is back (revenue frozen by an operator).
	g.ledger.mu.Lock()
	g.ledger.down = false
	g.ledger.byKey["refund-hold:"+refundID] = append([]byte{byte(422 >> 8), byte(422 & 0xff)}, `{"code":"account_frozen","detail":"frozen"}`...)
	g.ledger.mu.Unlock()
	if code := problemCode(t, refund(), http.StatusConflict); code != string(payments.CodeRefundNotReservable) {
		t.Fatalf("refund whose hold is refused: %s", code)
	}
	balance := g.postedBalances(t, p.ID)
	if balance["SYS-REVENUE-USD"] != 0 || balance[g.account] != 2900 {
		t.Fatalf("balances %v: want revenue 0 and all 2900 credited to the account", balance)
	}
	// The credit is the account's to have refunded: all of it, from the account.
	r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2900}}), 201)
	if r.Status != "succeeded" {
		t.Fatalf("refund of the whole credit: %+v", r)
	}
	holds, _ := g.ledger.state()
	if last := holds[len(holds)-1]; last.FromAccountID != g.account || last.Amount != 2900 {
		t.Fatalf("the credit's refund held %+v, want 2900 from the account", last)
	}
}
