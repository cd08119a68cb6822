package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestFlowRefundsNeverOutrunTheLedger is issue 14's fourth flaw, through
// the gateway on a whole stack: a customer tops up by card, moves the
// money on, and a refund of the top-up must not hand the card its money
// back while the ledger no longer holds it. A refund the ledger covers is
// reserved first, refunded at the gateway, then captured; an invoice
// payment's refund comes out of revenue. The books match the gateway to
// the unit afterwards.
func TestFlowRefundsNeverOutrunTheLedger(t *testing.T) {
	e := startStack(t, stackOptions{})
	a, b := e.newCustomer("USD"), e.newCustomer("USD")
	pay := func(c customer, amount int64) string {
		t.Helper()
		r := e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{
			"account_id": c.account, "amount": amount, "currency": "USD", "payment_method": "pm_card_visa", "confirm": true},
			"Authorization", "Bearer "+c.token, "Idempotency-Key", uuid.NewString())
		if r.status != http.StatusCreated || str(r.body, "status") != "succeeded" {
			t.Fatalf("top-up by card: %s", r)
		}
		return str(r.body, "id")
	}
	refund := func(payment string, amount int64) response {
		t.Helper()
		return e.req(http.MethodPost, "/function/capture-payment/payments/"+payment+"/refunds",
			map[string]any{"amount": amount, "reason": "requested_by_customer"}, "Idempotency-Key", uuid.NewString())
	}
	gatewayRefunds := func() int64 { return e.scalar(`SELECT count(*) FROM sandbox_refunds`) }

	topUp := pay(a, 5_000)
	e.eventually("the top-up to reach A's account", 30*time.Second, func() bool { return e.balance(a.account) == 5_000 })
	if r := e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
		"from_account_id": a.account, "to_account_id": b.account, "amount": 5_000, "currency": "USD"},
		"Authorization", "Bearer "+a.token, "Idempotency-Key", uuid.NewString()); r.status != http.StatusCreated {
		t.Fatalf("A pays B: %s", r)
	}

	t.Run("money already spent is not refunded, and the gateway is never asked", func(t *testing.T) {
		r := refund(topUp, 5_000)
		if r.status != http.StatusUnprocessableEntity || str(r.body, "code") != "insufficient_funds" {
			t.Fatalf("refund of spent money: %s", r)
		}
		if n := gatewayRefunds(); n != 0 {
			t.Errorf("the gateway made %d refunds", n)
		}
		if n := e.scalar(`SELECT count(*) FROM refunds`); n != 0 {
			t.Errorf("%d refund rows after a refused refund", n)
		}
	})

	t.Run("a refund the ledger covers is reserved, refunded, captured", func(t *testing.T) {
		if r := e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
			"from_account_id": b.account, "to_account_id": a.account, "amount": 3_000, "currency": "USD"},
			"Authorization", "Bearer "+b.token, "Idempotency-Key", uuid.NewString()); r.status != http.StatusCreated {
			t.Fatalf("B pays A back: %s", r)
		}
		r := refund(topUp, 2_000)
		if r.status != http.StatusCreated || str(r.body, "status") != "succeeded" || str(r.body, "ledger_hold_id") == "" {
			t.Fatalf("a covered refund: %s", r)
		}
		e.eventually("the refund's hold to be captured", 30*time.Second, func() bool {
			acc := e.req(http.MethodGet, "/function/process-transaction/accounts/"+a.account, nil)
			return num(acc.body, "balance") == 1_000 && num(acc.body, "held") == 0
		})
	})

	t.Run("an invoice payment's refund comes out of revenue", func(t *testing.T) {
		e.defaultMethod(b, "pm_card_visa")
		r := e.req(http.MethodPost, "/function/generate-invoice/invoices", map[string]any{
			"account_id": b.account, "currency": "USD",
			"customer":          map[string]any{"name": "Ada Lovelace", "email": "ada@example.com"},
			"line_items":        []any{map[string]any{"description": "Engine time", "quantity": "1", "unit_amount": 4_200}},
			"collection_method": "charge_automatically", "net_terms_days": 0, "auto_finalize": true,
		}, "Idempotency-Key", uuid.NewString())
		if r.status != http.StatusCreated {
			t.Fatalf("invoice: %s", r)
		}
		inv := str(r.body, "id")
		var payment string
		e.eventually("the invoice to be paid", 60*time.Second, func() bool {
			if str(e.req(http.MethodGet, "/function/generate-invoice/invoices/"+inv, nil).body, "status") != "paid" {
				return false
			}
			data, _ := e.req(http.MethodGet, "/function/capture-payment/payments?invoice_id="+inv, nil).body["data"].([]any)
			if len(data) == 1 {
				payment = str(data[0].(map[string]any), "id")
			}
			return payment != ""
		})
		e.quiesce(60 * time.Second)
		before := e.balance(b.account)
		r = refund(payment, 4_200)
		if r.status != http.StatusCreated || str(r.body, "status") != "succeeded" {
			t.Fatalf("invoice payment refund: %s", r)
		}
		e.eventually("the invoice to show the refund", 30*time.Second, func() bool {
			return num(e.req(http.MethodGet, "/function/generate-invoice/invoices/"+inv, nil).body, "amount_refunded") == 4_200
		})
		e.quiesce(60 * time.Second)
		if got := e.balance(b.account); got != before {
			t.Errorf("B's balance moved from %d to %d: an invoice refund comes out of revenue", before, got)
		}
	})

	e.quiesce(60 * time.Second)
	if p := e.ledgerProblems(); len(p) > 0 {
		t.Errorf("ledger: %v", p)
	}
	if dl := e.deadLetters(); len(dl) > 0 {
		t.Errorf("dead letters: %v", dl)
	}
	// Clearing holds what the gateway owes: captures minus refunds, to the unit.
	var captured, refunded int64
	captured = e.scalar(`SELECT coalesce(sum(amount_received), 0) FROM sandbox_intents`)
	refunded = e.scalar(`SELECT coalesce(sum(amount), 0) FROM sandbox_refunds WHERE status = 'succeeded'`)
	sys := e.systemBalances()
	if got, want := sys["SYS-CLEARING-USD"], -(captured - refunded); got != want {
		t.Errorf("SYS-CLEARING-USD = %d, want %d (captures %d − refunds %d)", got, want, captured, refunded)
	}
	if got := sys["SYS-REVENUE-USD"]; got != 0 {
		t.Errorf("SYS-REVENUE-USD = %d, want 0 (the one invoice was refunded in full)", got)
	}
}
