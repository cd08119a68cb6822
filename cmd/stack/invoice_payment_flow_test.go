package main

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestFlowAnInvoiceIsChargedOnceInItsCurrency is issue 21 through the
// gateway on a whole stack: four payments of one open invoice at once make
// one charge; paying it again once it is paid, or in another currency, is
// refused before any gateway call; the invoice's amount_paid is its total
// and revenue holds exactly that.
func TestFlowAnInvoiceIsChargedOnceInItsCurrency(t *testing.T) {
	e := startStack(t, stackOptions{})
	c := e.newCustomer("USD")
	const total = 2_900
	r := e.req(http.MethodPost, "/function/generate-invoice/invoices", map[string]any{
		"account_id": c.account, "currency": "USD", "collection_method": "send_invoice", "net_terms_days": 30,
		"customer":      map[string]any{"name": "Grace Hopper", "email": "grace@example.com"},
		"line_items":    []any{map[string]any{"description": "Compiler time", "quantity": "1", "unit_amount": total}},
		"auto_finalize": true,
	}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated || str(r.body, "status") != "open" {
		t.Fatalf("invoice: %s", r)
	}
	inv := str(r.body, "id")
	charges := func() int64 { return e.scalar(`SELECT count(*) FROM sandbox_intents`) }
	pay := func(currency string, amount int64) response {
		return e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{
			"account_id": c.account, "invoice_id": inv, "amount": amount, "currency": currency,
			"payment_method": "pm_card_visa", "confirm": true},
			"Authorization", "Bearer "+c.token, "Idempotency-Key", uuid.NewString())
	}

	t.Run("another currency is refused before the gateway", func(t *testing.T) {
		before := charges()
		if r := pay("EUR", total); r.status != http.StatusUnprocessableEntity {
			t.Errorf("a EUR payment of a USD invoice: %s", r)
		}
		if n := charges(); n != before {
			t.Errorf("the gateway was asked %d times", n-before)
		}
	})

	t.Run("four payments at once make one charge", func(t *testing.T) {
		var wg sync.WaitGroup
		answers := make([]response, 4)
		for i := range answers {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				answers[i] = pay("USD", total)
			}(i)
		}
		wg.Wait()
		ok := 0
		for _, a := range answers {
			switch {
			case a.status == http.StatusCreated && str(a.body, "status") == "succeeded":
				ok++
			case a.status == http.StatusConflict:
			default:
				t.Errorf("a concurrent payment: %s", a)
			}
		}
		if ok != 1 || charges() != 1 {
			t.Fatalf("%d payments succeeded, %d gateway charges; want one of each", ok, charges())
		}
	})

	t.Run("a paid invoice is not charged again", func(t *testing.T) {
		e.eventually("the invoice to be paid", 60*time.Second, func() bool {
			return str(e.req(http.MethodGet, "/function/generate-invoice/invoices/"+inv, nil).body, "status") == "paid"
		})
		r := pay("USD", total)
		if r.status != http.StatusConflict || str(r.body, "code") != "invoice_not_payable" {
			t.Errorf("paying a paid invoice again: %s", r)
		}
		if n := charges(); n != 1 {
			t.Errorf("%d gateway charges", n)
		}
	})

	e.quiesce(60 * time.Second)
	got := e.req(http.MethodGet, "/function/generate-invoice/invoices/"+inv, nil).body
	if num(got, "amount_paid") != total {
		t.Errorf("amount_paid %d on a total of %d", num(got, "amount_paid"), total)
	}
	if rev := e.systemBalances()["SYS-REVENUE-USD"]; rev != total {
		t.Errorf("SYS-REVENUE-USD = %d, want %d", rev, total)
	}
	if p := e.ledgerProblems(); len(p) > 0 {
		t.Errorf("ledger: %v", p)
	}
	if dl := e.deadLetters(); len(dl) > 0 {
		t.Errorf("dead letters: %v", dl)
	}
}
