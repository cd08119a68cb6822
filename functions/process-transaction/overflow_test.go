package main

import (
	"math"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/auth"
)

// An account allowed a negative balance (an admin's overdraft) has no floor
// on what it spends, nor on what it holds: its available (balance − held)
// could fall below MinInt64. Then Postgres's balance - held in every read
// of the account failed (GET /accounts/{id}: 500, and the other functions'
// read-through of it), and the transfer's snapshot and events carried a
// wrapped, positive "available". A hold or a transfer that would take the
// available below int64 is refused as amount_invalid and changes nothing.
func TestAnOverdraftsAvailableNeverWrapsBelowInt64(t *testing.T) {
	e := newEnv(t)
	user := uuid.NewString()
	r := e.do("POST", "/accounts", e.admin, auth.RoleAdmin, map[string]any{"currency": "USD", "user_id": user, "allow_negative": true})
	if r.Code != 201 {
		t.Fatalf("overdraft account: %d %s", r.Code, r.Body)
	}
	var od Account
	r.json(t, &od)
	other := e.account(user, "USD")

	// Spend all an int64 allows, then hold a little more (and, the other
	// way round, hold then spend).
	if r := e.transfer(user, od, other, math.MaxInt64); r.Code != 201 {
		t.Fatalf("spend: %d %s", r.Code, r.Body)
	}
	for _, amount := range []int64{2, math.MaxInt64} {
		r := e.do("POST", "/transfers", user, auth.RoleCustomer, map[string]any{"from_account_id": od.ID, "to_account_id": other.ID,
			"amount": amount, "currency": "USD", "pending": true}, "Idempotency-Key", key())
		var tr Transfer
		if r.Code == 201 {
			r.json(t, &tr)
		}
		if r.Code == 201 && tr.Status == ledger.TransferHeld {
			t.Errorf("a hold of %d was placed on an account of balance %d: available %v", amount, -int64(math.MaxInt64), deref(tr.FromAvailable))
		} else if r.Code != 422 || r.code() != string(ledger.AmountInvalid) {
			t.Errorf("hold of %d: %d %s, want 422 amount_invalid", amount, r.Code, r.Body)
		}
	}
	if r := e.do("GET", "/accounts/"+od.ID, user, auth.RoleCustomer, nil); r.Code != 200 {
		t.Fatalf("GET the overdraft account: %d %s", r.Code, r.Body)
	}
	if a := e.get(od.ID); a.Balance != -math.MaxInt64 || a.Held != 0 {
		t.Errorf("overdraft account: balance %d held %d", a.Balance, a.Held)
	}

	// A second overdraft: hold first, then spend below what int64 can
	// show as available.
	r = e.do("POST", "/accounts", e.admin, auth.RoleAdmin, map[string]any{"currency": "USD", "user_id": user, "allow_negative": true})
	var od2 Account
	r.json(t, &od2)
	e.hold(user, od2, other, 10)
	if r := e.transfer(user, od2, e.account(user, "USD"), math.MaxInt64); r.Code != 422 || r.code() != string(ledger.AmountInvalid) {
		t.Errorf("spending MaxInt64 beside a hold of 10: %d %s, want 422 amount_invalid", r.Code, r.Body)
	}
	if a := e.get(od2.ID); a.Balance != 0 || a.Held != 10 || a.Available != -10 {
		t.Errorf("second overdraft account: balance %d held %d available %d", a.Balance, a.Held, a.Available)
	}
	checkLedger(t, e.d)
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
