package api

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/testenv"
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

// TestAttackEveryRoute is the generated attack
// (testenv.AttackRoutes) over generate-invoice's route table: every route
// is called anonymously (401), by a customer when it is privileged (403),
// and, for customer routes, by customer A with customer B's resource in
// each reference the route declares, one at a time (404, or the 422 the
// contract gives a foreign user_id). B's invoices, lines, subscriptions
// and requests must not change, and no answer may hold B's ids or B's
// figures. Tax rates and coupons are the merchant's catalog, owned by
// nobody (testenv.Attack.Shared). A customer write without a base body
// here fails the test.
func TestAttackEveryRoute(t *testing.T) {
	g := newRig(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	rate := g.taxRate("VAT", "20", false, false)
	coupon := "ATTACK-" + alice[:8]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": coupon, "percent_off": "10"}), 201)

	// Bob's figures differ from Alice's and from any request's, so an
	// answer to Alice that holds one holds Bob's invoice: 3 × 481,733 is a
	// line (and total) of 1,445,199; his plan bills 295,371 a month.
	const bobUnit, bobLine, bobPlan = 481_733, 1_445_199, 295_371
	bobPrivate := []string{strconv.Itoa(bobUnit), strconv.Itoa(bobLine), strconv.Itoa(bobPlan)}
	fixtures := func(user string, plan int64, lines ...map[string]any) map[string]string {
		account := g.account(user, "USD")
		rec := g.call(call{method: "POST", path: "/invoices", body: invoiceBody("", account, lines...), sub: user, role: auth.RoleCustomer,
			header: http.Header{"Prefer": {"respond-async"}}})
		must(t, rec, 202)
		return map[string]string{
			"account":         account,
			"invoice":         decode[invoicing.Invoice](t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", account, lines...))).ID,
			"subscription":    g.subscribe(map[string]any{"account_id": account, "plan": monthly(plan)}).ID,
			"invoice-request": decode[store.InvoiceRequest](t, rec).ID,
			"user":            user,
		}
	}
	a := fixtures(alice, 1000)
	b := fixtures(bob, bobPlan, map[string]any{"description": "Retainer", "quantity": "3", "unit_amount": bobUnit})

	// bodies are A's own valid bodies of the customer write routes.
	line := map[string]any{"description": "Item", "unit_amount": 100, "tax_rate_ids": []any{rate}}
	bodies := map[string]func() map[string]any{
		"POST /invoices": func() map[string]any {
			body := invoiceBody("", a["account"], line)
			body["coupon"], body["auto_finalize"] = coupon, true
			return body
		},
		"PATCH /invoices/{id}":            func() map[string]any { return map[string]any{"coupon": coupon, "line_items": []any{line}} },
		"POST /invoices/{id}/lines":       func() map[string]any { return map[string]any{"line_items": []any{line}} },
		"POST /invoices/{id}/finalize":    func() map[string]any { return nil },
		"POST /subscriptions/{id}/cancel": func() map[string]any { return map[string]any{"at_period_end": false} },
	}
	routes := g.s.routeTable()
	for _, rt := range routes {
		if _, ok := bodies[rt.Pattern]; !ok && rt.Access == platform.Customer && rt.Method() != http.MethodGet {
			t.Fatalf("%s: a customer write route without a base body in this test", rt.Pattern)
		}
	}
	testenv.AttackRoutes(t, routes, testenv.Attack{
		Handler:  g.h,
		Attacker: testenv.Party{Token: g.kit.Token(t, alice, auth.RoleCustomer), Own: a},
		Victim:   testenv.Party{Token: g.kit.Token(t, bob, auth.RoleCustomer), Own: b},
		Shared:   map[string]string{"tax-rate": rate, "coupon": coupon},
		Base: func(rt platform.Route, _ string) testenv.Request {
			if mk, ok := bodies[rt.Pattern]; ok {
				return testenv.Request{Body: mk()}
			}
			return testenv.Request{}
		},
		Expect: map[string]testenv.Outcome{
			// A customer may filter by no user but itself: another user_id
			// is an invalid filter (422), as docs/generate-invoice.md's route
			// table says ("?user_id: itself (else 422)").
			"GET /invoices ?user_id":      {Status: []int{http.StatusUnprocessableEntity}},
			"GET /subscriptions ?user_id": {Status: []int{http.StatusUnprocessableEntity}},
		},
		Snapshot: func(tb testing.TB) any {
			var s string
			err := g.d.Pool.QueryRow(t.Context(), `SELECT concat_ws('|',
				(SELECT string_agg(row_to_json(i)::text, ',' ORDER BY id) FROM invoices i WHERE owner_user_id = $1 OR account_id = $2),
				(SELECT string_agg(row_to_json(l)::text, ',' ORDER BY id) FROM invoice_line_items l WHERE invoice_id IN (SELECT id FROM invoices WHERE account_id = $2)),
				(SELECT string_agg(row_to_json(s)::text, ',' ORDER BY id) FROM subscriptions s WHERE owner_user_id = $1 OR account_id = $2),
				(SELECT string_agg(row_to_json(r)::text, ',' ORDER BY id) FROM invoice_requests r WHERE owner_user_id = $1 OR account_id = $2))`,
				bob, b["account"]).Scan(&s)
			if err != nil {
				tb.Fatal(err)
			}
			return s
		},
		Private: func(testing.TB) []string { return bobPrivate },
	})
}
