package api

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/platform"
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

// victim is, for one kind of resource a route may name, the attacker's
// own and the victim's, and what the attacker must get for the victim's.
type victim struct {
	alice, bob string
	want       []int // acceptable statuses; nil: the catalog is shared, any 2xx/4xx
}

// TestEveryRouteRefusesAnotherCustomersResources is generated from the
// route table: every route is called anonymously (401), by a customer
// when it is privileged (403), and, for customer routes, by customer A
// with customer B's resource in each reference the route declares, one at
// a time (404, or the 422 the contract gives a foreign user_id). B's
// invoices, lines, subscriptions and requests must not change. A route
// whose wildcard has no Refs entry, a route with nil Refs, a kind without
// a victim here, or a customer write without a base body fails the test.
func TestEveryRouteRefusesAnotherCustomersResources(t *testing.T) {
	g := newRig(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	rate := g.taxRate("VAT", "20", false, false)
	coupon := "ATTACK-" + alice[:8]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": coupon, "percent_off": "10"}), 201)

	type own struct{ account, invoice, sub, request string }
	fixtures := func(user string) own {
		o := own{account: g.account(user, "USD")}
		o.invoice = decode[invoicing.Invoice](t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", o.account))).ID
		o.sub = g.subscribe(map[string]any{"account_id": o.account, "plan": monthly(1000)}).ID
		rec := g.call(call{method: "POST", path: "/invoices", body: invoiceBody("", o.account), sub: user, role: auth.RoleCustomer,
			header: http.Header{"Prefer": {"respond-async"}}})
		must(t, rec, 202)
		o.request = decode[store.InvoiceRequest](t, rec).ID
		return o
	}
	a, b := fixtures(alice), fixtures(bob)
	notFound := []int{404}
	victims := map[string]victim{
		"account":         {a.account, b.account, notFound},
		"invoice":         {a.invoice, b.invoice, notFound},
		"subscription":    {a.sub, b.sub, notFound},
		"invoice-request": {a.request, b.request, notFound},
		"user":            {alice, bob, []int{422}},
		// The delivery log is admin-only: a customer gets 403 before any
		// notification is looked up.
		"notification": {uuid.NewString(), uuid.NewString(), notFound},
		// Tax rates and coupons are the merchant's catalog, owned by nobody.
		"tax-rate": {rate, rate, nil},
		"coupon":   {coupon, coupon, nil},
	}
	// bodies are A's own valid bodies of the customer write routes.
	line := map[string]any{"description": "Item", "unit_amount": 100, "tax_rate_ids": []any{rate}}
	bodies := map[string]func() map[string]any{
		"POST /invoices": func() map[string]any {
			body := invoiceBody("", a.account, line)
			body["coupon"], body["auto_finalize"] = coupon, true
			return body
		},
		"PATCH /invoices/{id}":            func() map[string]any { return map[string]any{"coupon": coupon, "line_items": []any{line}} },
		"POST /invoices/{id}/lines":       func() map[string]any { return map[string]any{"line_items": []any{line}} },
		"POST /invoices/{id}/finalize":    func() map[string]any { return nil },
		"POST /subscriptions/{id}/cancel": func() map[string]any { return map[string]any{"at_period_end": false} },
	}
	snapshot := func() string {
		var s string
		err := g.d.Pool.QueryRow(t.Context(), `SELECT concat_ws('|',
			(SELECT string_agg(row_to_json(i)::text, ',' ORDER BY id) FROM invoices i WHERE owner_user_id = $1 OR account_id = $2),
			(SELECT string_agg(row_to_json(l)::text, ',' ORDER BY id) FROM invoice_line_items l WHERE invoice_id IN (SELECT id FROM invoices WHERE account_id = $2)),
			(SELECT string_agg(row_to_json(s)::text, ',' ORDER BY id) FROM subscriptions s WHERE owner_user_id = $1 OR account_id = $2),
			(SELECT string_agg(row_to_json(r)::text, ',' ORDER BY id) FROM invoice_requests r WHERE owner_user_id = $1 OR account_id = $2))`,
			bob, b.account).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()

	wildcard := regexp.MustCompile(`\{[^}]+\}`)
	for _, rt := range g.s.routeTable() {
		t.Run(rt.Pattern, func(t *testing.T) {
			if rt.Refs == nil {
				t.Fatalf("%s has nil Refs: declare what it names (map[string]string{} for nothing)", rt.Pattern)
			}
			for _, w := range wildcard.FindAllString(rt.Path(), -1) {
				if _, ok := rt.Refs[w]; !ok && w != "{$}" {
					t.Fatalf("%s: wildcard %s has no Refs entry", rt.Pattern, w)
				}
			}
			for ref, kind := range rt.Refs {
				if _, ok := victims[kind]; !ok {
					t.Fatalf("%s: Refs %s names kind %q, which this test has no victim of", rt.Pattern, ref, kind)
				}
			}
			method := rt.Method()
			// A request of A's with the reference ref (or none) pointing at B's.
			build := func(ref string) call {
				path := rt.Path()
				for w, kind := range rt.Refs {
					if strings.HasPrefix(w, "{") {
						v := victims[kind].alice
						if w == ref {
							v = victims[kind].bob
						}
						path = strings.Replace(path, w, v, 1)
					}
				}
				path = strings.TrimSuffix(path, "{$}")
				var query []string
				for q, kind := range rt.Refs {
					if name, ok := strings.CutPrefix(q, "?"); ok && q == ref {
						query = append(query, name+"="+victims[kind].bob)
					}
				}
				if len(query) > 0 {
					path += "?" + strings.Join(query, "&")
				}
				c := call{method: method, path: path, sub: alice, role: auth.RoleCustomer}
				if method != http.MethodGet && rt.Access == platform.Customer {
					mk, ok := bodies[rt.Pattern]
					if !ok {
						t.Fatalf("%s: a customer write route without a base body in this test", rt.Pattern)
					}
					body := mk()
					for p, kind := range rt.Refs {
						if strings.HasPrefix(p, "{") || strings.HasPrefix(p, "?") {
							continue
						}
						v := victims[kind].alice
						if p == ref {
							v = victims[kind].bob
						}
						if !setPointer(body, p, v) {
							t.Fatalf("%s: the base body has no %s to put a %s in", rt.Pattern, p, kind)
						}
					}
					if body != nil {
						c.body = body
					}
				}
				return c
			}
			switch rt.Access {
			case platform.Public, platform.Delivery:
				return
			case platform.Privileged, platform.Admin:
				c := build("")
				c.sub = ""
				problemOf(t, g.call(c), 401, "unauthorized")
				c.sub = alice
				problemOf(t, g.call(c), 403, "forbidden")
				return
			}
			c := build("")
			c.sub = ""
			problemOf(t, g.call(c), 401, "unauthorized")
			for ref, kind := range rt.Refs {
				v := victims[kind]
				rec := g.call(build(ref))
				if v.want == nil {
					if rec.Code >= 500 {
						t.Fatalf("%s with %s = %s: %d %s", rt.Pattern, ref, kind, rec.Code, rec.Body)
					}
					continue
				}
				if !slices.Contains(v.want, rec.Code) {
					t.Fatalf("%s with B's %s in %s: %d, want %v: %s", rt.Pattern, kind, ref, rec.Code, v.want, rec.Body)
				}
			}
		})
	}
	if after := snapshot(); after != before {
		t.Fatalf("B's rows changed:\nbefore %s\nafter  %s", before, after)
	}
}

// setPointer sets the member at a JSON pointer (without the leading "/")
// in body, through objects and arrays that exist; false if one does not.
func setPointer(body any, pointer, v string) bool {
	parts := strings.Split(pointer, "/")
	cur := body
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if _, ok := c[p]; !ok {
					return false
				}
				c[p] = v
				return true
			}
			cur = c[p]
		case []map[string]any:
			n, err := strconv.Atoi(p)
			if err != nil || n >= len(c) || last {
				return false
			}
			cur = c[n]
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n >= len(c) {
				return false
			}
			if last {
				c[n] = v
				return true
			}
			cur = c[n]
		default:
			return false
		}
	}
	return false
}
