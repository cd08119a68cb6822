package main

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/auth"
)

// UUIDs are case-insensitive: an account named by its id in upper case is
// the same account (it was "no such source account", found by
// FuzzTransferRequest), and naming one account in two cases is the same
// account twice.
func TestAccountIDsInUpperCaseNameTheSameAccounts(t *testing.T) {
	e := newEnv(t)
	u := uuid.NewString()
	a, b := e.account(u, "EUR"), e.account(u, "EUR")
	e.fund(a, 1000)
	r := e.do("POST", "/transfers", u, auth.RoleCustomer, map[string]any{"from_account_id": strings.ToUpper(a.ID),
		"to_account_id": b.ID, "amount": 5, "currency": "EUR"}, "Idempotency-Key", key())
	if r.Code != 201 {
		t.Fatalf("upper-case source: %d %s", r.Code, r.Body)
	}
	r = e.do("POST", "/transfers", u, auth.RoleCustomer, map[string]any{"from_account_id": a.ID,
		"to_account_id": strings.ToUpper(a.ID), "amount": 5, "currency": "EUR"}, "Idempotency-Key", key())
	if r.Code != 422 || r.code() != string(ledger.SameAccount) {
		t.Fatalf("one account in two cases: %d %s", r.Code, r.Body)
	}
	if got := e.get(b.ID); got.Balance != 5 {
		t.Fatalf("destination balance %d, want 5", got.Balance)
	}
}
