package main

import (
	"testing"

	"github.com/google/uuid"
)

// The flaw of issue 14: customer A invoices B's account with
// auto_finalize and the default charge_automatically; capture-payment
// would then charge B's saved card. A must get the 404 an unknown account
// gets, and nothing may be written for B.
func TestCustomerCannotInvoiceAnotherCustomersAccount(t *testing.T) {
	g := newRig(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	bobs := g.account(bob, "USD")
	body := invoiceBody("", bobs, map[string]any{"description": "Nothing at all", "unit_amount": 99999999})
	body["auto_finalize"] = true
	problemOf(t, g.asCustomer(alice, "POST", "/invoices", body), 404, "not_found")
	var n int
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM invoices WHERE account_id = $1`, bobs).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d invoices on bob's account (%v)", n, err)
	}
	// Bob himself may.
	must(t, g.asCustomer(bob, "POST", "/invoices", body), 201)
}
