package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
)

// TestCardNumbersAreRefusedInEveryFreeTextField: a card number in any
// free-text field of any write route is a 422 card_number_rejected that
// does not echo it, and nothing is written; an event asking for a transfer
// with one is refused (parked) without a transfer.
func TestCardNumbersAreRefusedInEveryFreeTextField(t *testing.T) {
	e := newEnv(t)
	alice := uuid.NewString()
	a, b := e.account(alice, "EUR"), e.account(alice, "EUR")
	e.fund(a, 10_000)
	count := func() (n int) {
		t.Helper()
		err := e.d.Pool.QueryRow(context.Background(),
			`SELECT (SELECT count(*) FROM accounts) + (SELECT count(*) FROM transfers) + (SELECT count(*) FROM postings)`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	transfer := func(extra map[string]any) map[string]any {
		m := map[string]any{"from_account_id": a.ID, "to_account_id": b.ID, "amount": 100, "currency": "EUR"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	const digits = "4000056655665556"
	cases := []struct {
		name, method, path string
		role               auth.Role
		body               map[string]any
	}{
		{"transfer description", "POST", "/transfers", auth.RoleCustomer, transfer(map[string]any{"description": "card 4000 0566 5566 5556 thanks"})},
		{"transfer reference", "POST", "/transfers", auth.RoleCustomer, transfer(map[string]any{"reference_id": "4000.0566.5566.5556"})},
		{"transfer metadata value", "POST", "/transfers", auth.RoleCustomer, transfer(map[string]any{"metadata": map[string]any{"n": "4000/0566/5566/5556"}})},
		{"transfer metadata key", "POST", "/transfers", auth.RoleCustomer, transfer(map[string]any{"metadata": map[string]any{"４０００_０５６６_５５６６_５５５６": 1}})},
		{"transfer account number", "POST", "/transfers", auth.RoleCustomer,
			map[string]any{"from_account_id": a.ID, "to_account_number": digits, "amount": 100, "currency": "EUR"}},
		{"batch item", "POST", "/transfers/batch", auth.RoleCustomer, map[string]any{"transfers": []any{
			transfer(nil), transfer(map[string]any{"description": "4000-0566-5566-5556"})}}},
		{"account number", "POST", "/accounts", auth.RoleCustomer, map[string]any{"currency": "EUR", "account_number": digits}},
		{"account metadata", "POST", "/accounts", auth.RoleCustomer, map[string]any{"currency": "EUR", "metadata": map[string]any{"card": digits}}},
		{"account patch", "PATCH", "/accounts/" + a.ID, auth.RoleAdmin, map[string]any{"metadata": map[string]any{"x": "٤٠٠٠٠٥٦٦٥٥٦٦٥٥٥٦"}}},
		{"hold capture", "POST", "/transfers/" + uuid.NewString() + "/capture", auth.RoleCustomer, map[string]any{"amount": 4000056655665556}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := count()
			sub := alice
			if c.role == auth.RoleAdmin {
				sub = e.admin
			}
			r := e.do(c.method, c.path, sub, c.role, c.body, "Idempotency-Key", key(), "If-Match", "*")
			if r.Code != 422 || r.code() != "card_number_rejected" {
				t.Fatalf("%d %s", r.Code, r.Body)
			}
			if strings.Contains(r.Body.String(), "0566") || strings.Contains(r.Body.String(), "٠٥٦٦") || strings.Contains(r.Body.String(), "０５６６") {
				t.Fatalf("the answer echoes the card number: %s", r.Body)
			}
			if after := count(); after != before {
				t.Fatalf("%d rows written", after-before)
			}
		})
	}
	// An event's request goes through the same check: refused, no transfer.
	before := count()
	ev := events.Must(events.New(context.Background(), "x", "billfn.transaction.requested", "", TransferRequest{
		FromAccountID: a.ID, ToAccountID: b.ID, Amount: 1, Currency: "EUR", Description: "4000 0566 5566 5556"}))
	if r := e.deliver(ev); r.Code != 200 || !strings.Contains(r.Body.String(), `"parked":1`) {
		t.Fatalf("event: %d %s", r.Code, r.Body)
	}
	if after := count(); after != before {
		t.Fatalf("the event wrote %d rows", after-before)
	}
	// Ids, amounts and grouped numbers that are not card numbers pass.
	if r := e.do("POST", "/transfers", alice, auth.RoleCustomer, transfer(map[string]any{
		"description": "order 2026-11-23 #4242 4242 4242", "reference_id": uuid.NewString(),
		"metadata": map[string]any{"invoice": uuid.NewString(), "phone": "+1 415-555-0100"}}), "Idempotency-Key", key()); r.Code != 201 {
		t.Fatalf("a legitimate transfer: %d %s", r.Code, r.Body)
	}
}
