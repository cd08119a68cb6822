package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/functions/capture-payment/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/testenv"
)

// customers is two customers of the rig, each with one resource of every
// kind capture-payment's routes name: an account, a saved payment method
// (the account's default), a payment, a refund and an invoice. Bob's
// figures (his paid payment's amount, his invoice's total) differ from
// Alice's and from any request's: bobPrivate, which no answer to Alice
// may hold (testenv.Attack.Private).
type customers struct {
	alice, bob       string
	aliceOwn, bobOwn map[string]string
	bobPrivate       []string
}

func (g *rig) twoCustomers(t *testing.T) customers {
	t.Helper()
	c := customers{alice: uuid.NewString(), bob: uuid.NewString()}
	own := func(user string, paid, invoiced int64, paymentStatus func(acct, method string) payments.Payment) map[string]string {
		acct := g.newAccount(user, "USD")
		m := decode[payments.Method](t, g.do(req{method: "POST", path: "/accounts/" + acct + "/payment-methods", sub: user, role: auth.RoleCustomer,
			body: map[string]any{"token": "pm_card_visa", "brand": "visa", "last4": "4242", "default": true}}), http.StatusCreated)
		p := paymentStatus(acct, m.ID)
		done := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", sub: user, role: auth.RoleCustomer,
			body: map[string]any{"account_id": acct, "amount": paid, "currency": "USD", "payment_method": m.ID, "confirm": true}}), http.StatusCreated)
		return map[string]string{"account": acct, "payment-method": m.ID, "payment": p.ID, "refund": g.refundRow(t, done),
			"invoice": g.openInvoice(t, acct, "USD", invoiced)}
	}
	// Alice's payment waits for its confirmation (so a confirm naming
	// Bob's method reaches the method check); Bob's is authorized, so a
	// capture or cancel that got through would change it.
	c.aliceOwn = own(c.alice, 700, 10_000, func(acct, _ string) payments.Payment {
		return decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", sub: c.alice, role: auth.RoleCustomer,
			body: map[string]any{"account_id": acct, "amount": 500, "currency": "USD", "payment_method": "pm_card_visa"}}), http.StatusCreated)
	})
	// Seven digits or more: a shorter figure turns up by chance in the
	// hex of an id (a UUID's "a4817b" holds 4817 as a whole number).
	const bobAuthorized, bobPaid, bobInvoiced = 4_817_293, 6_309_451, 13_571_887
	c.bobOwn = own(c.bob, bobPaid, bobInvoiced, func(acct, method string) payments.Payment {
		return decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", sub: c.bob, role: auth.RoleCustomer,
			body: map[string]any{"account_id": acct, "amount": bobAuthorized, "currency": "USD", "payment_method": method,
				"capture_method": "manual", "confirm": true}}), http.StatusCreated)
	})
	// What is left of the paid payment after its refund row of 100.
	c.bobPrivate = []string{"4817293", "6309451", "13571887", "6309351"}
	return c
}

// refundRow records a succeeded refund of p directly (the refund flow is
// not what the attack is about; its route is Privileged).
func (g *rig) refundRow(t *testing.T, p payments.Payment) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := g.d.Pool.Exec(context.Background(), `INSERT INTO refunds (id, payment_id, n, account_id, user_id, amount, currency,
		status, gateway, created_at, updated_at) VALUES ($1, $2, 1, $3, $4, 100, $5, 'succeeded', 'sandbox', now(), now())`,
		id, p.ID, p.AccountID, p.UserID, string(p.Currency)); err != nil {
		t.Fatal(err)
	}
	return id
}

// ownedRows is everything capture-payment holds of user or account: its
// payments and their attempts, refunds and saved methods with their
// default flag, as JSON.
func (g *rig) ownedRows(tb testing.TB, user, account string) any {
	tb.Helper()
	var out [4]string
	for i, q := range []string{
		`SELECT coalesce(json_agg(t ORDER BY t.id), '[]')::text FROM payments t WHERE t.user_id = $1 OR t.account_id = $2`,
		`SELECT coalesce(json_agg(t ORDER BY t.payment_id, t.n), '[]')::text FROM payment_attempts t
			WHERE t.payment_id IN (SELECT id FROM payments WHERE user_id = $1 OR account_id = $2)`,
		`SELECT coalesce(json_agg(t ORDER BY t.id), '[]')::text FROM refunds t WHERE t.user_id = $1 OR t.account_id = $2`,
		`SELECT coalesce(json_agg(t ORDER BY t.id), '[]')::text FROM payment_methods t WHERE t.user_id = $1 OR t.account_id = $2`,
	} {
		if err := g.d.Pool.QueryRow(context.Background(), q, user, account).Scan(&out[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

// TestAttackEveryRoute is the generated attack
// (testenv.AttackRoutes) over capture-payment's own route table: a route
// added later is attacked without a case written for it, and one whose
// references are not declared fails.
func TestAttackEveryRoute(t *testing.T) {
	g := newRig(t)
	c := g.twoCustomers(t)
	testenv.AttackRoutes(t, g.s.api.Routes(), testenv.Attack{
		Handler:  g.h,
		Attacker: testenv.Party{Token: g.kit.Token(t, c.alice, auth.RoleCustomer), Own: c.aliceOwn},
		Victim:   testenv.Party{Token: g.kit.Token(t, c.bob, auth.RoleCustomer), Own: c.bobOwn},
		Base: func(rt platform.Route, ref string) testenv.Request {
			switch rt.Pattern {
			case "POST /payments":
				return testenv.Request{Body: map[string]any{"account_id": "", "payment_method": "", "invoice_id": "",
					"amount": 100, "currency": "USD", "confirm": true}}
			case "POST /payments/{id}/confirm":
				return testenv.Request{Body: map[string]any{"payment_method": ""}}
			case "POST /accounts/{id}/payment-methods":
				// Issue 14's attack: a declining card as the victim's default.
				return testenv.Request{Body: map[string]any{"token": "pm_card_chargeDeclinedInsufficientFunds", "default": true}}
			}
			return testenv.Request{}
		},
		Expect: map[string]testenv.Outcome{
			// Another account's saved method is no method of the payment's
			// account; another account's invoice is not this account's.
			"POST /payments payment_method":              {Status: []int{http.StatusUnprocessableEntity}},
			"POST /payments invoice_id":                  {Status: []int{http.StatusUnprocessableEntity}},
			"POST /payments/{id}/confirm payment_method": {Status: []int{http.StatusUnprocessableEntity}},
		},
		Snapshot: func(tb testing.TB) any { return g.ownedRows(tb, c.bob, c.bobOwn["account"]) },
		Private:  func(testing.TB) []string { return c.bobPrivate },
	})
}

// Issue 14, flaw 2: a customer made its declining card the default
// payment method of someone else's account.
func TestACustomerCannotSetAnotherCustomersDefaultMethod(t *testing.T) {
	g := newRig(t)
	c := g.twoCustomers(t)
	bobAccount := c.bobOwn["account"]
	before := g.ownedRows(t, c.bob, bobAccount)
	rec := g.do(req{method: "POST", path: "/accounts/" + bobAccount + "/payment-methods", sub: c.alice, role: auth.RoleCustomer,
		body: map[string]any{"token": "pm_card_chargeDeclinedInsufficientFunds", "default": true}})
	if code := problemCode(t, rec, http.StatusNotFound); code != "not_found" {
		t.Fatalf("alice saves a method on bob's account: %s", code)
	}
	if m, err := store.New(g.d.Pool, g.d.Publisher.Writer()).Fresh().DB().DefaultMethod(context.Background(), bobAccount); err != nil || m.ID != c.bobOwn["payment-method"] {
		t.Fatalf("bob's default: %+v %v", m, err)
	}
	assertSame(t, before, g.ownedRows(t, c.bob, bobAccount))
	// Nor through the default route with her own method's id.
	rec = g.do(req{method: "POST", path: "/accounts/" + bobAccount + "/payment-methods/" + c.aliceOwn["payment-method"] + "/default",
		sub: c.alice, role: auth.RoleCustomer})
	problemCode(t, rec, http.StatusNotFound)
	// An admin saving one for bob needs no user_id; the owner is bob.
	m := decode[payments.Method](t, g.do(req{method: "POST", path: "/accounts/" + bobAccount + "/payment-methods",
		body: map[string]any{"token": "pm_card_mastercard"}}), http.StatusCreated)
	if m.UserID != c.bob {
		t.Fatalf("method owner %s, want the account's owner %s", m.UserID, c.bob)
	}
	list := decode[struct{ Data []payments.Method }](t, g.do(req{method: "GET", path: "/accounts/" + bobAccount + "/payment-methods",
		sub: c.bob, role: auth.RoleCustomer}), http.StatusOK)
	if len(list.Data) != 2 {
		t.Fatalf("bob sees %d methods of his account, want 2", len(list.Data))
	}
	rec = g.do(req{method: "POST", path: "/accounts/" + bobAccount + "/payment-methods",
		body: map[string]any{"token": "pm_card_amex", "user_id": c.alice}})
	if d := problemDoc(t, rec, http.StatusUnprocessableEntity); !fieldNamed(d, "user_id") {
		t.Fatalf("an admin naming another owner: %v", d)
	}
}

// Issue 14, flaw 3: POST /payments took any account_id and the caller's
// word for its owner.
func TestACustomerCannotPayIntoOrChargeAnotherCustomersAccount(t *testing.T) {
	g := newRig(t)
	c := g.twoCustomers(t)
	bobAccount := c.bobOwn["account"]
	before := g.ownedRows(t, c.bob, bobAccount)
	for _, body := range []map[string]any{
		{"account_id": bobAccount, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa", "confirm": true},
		{"account_id": bobAccount, "amount": 100, "currency": "USD", "payment_method": c.bobOwn["payment-method"], "confirm": true},
		{"account_id": bobAccount, "user_id": c.alice, "amount": 100, "currency": "USD"},
	} {
		rec := g.do(req{method: "POST", path: "/payments", sub: c.alice, role: auth.RoleCustomer, body: body})
		if code := problemCode(t, rec, http.StatusNotFound); code != "not_found" {
			t.Fatalf("alice on bob's account %v: %s", body, code)
		}
	}
	assertSame(t, before, g.ownedRows(t, c.bob, bobAccount))

	// Admin and service callers send no user_id: the owner is the account's.
	for _, role := range []auth.Role{auth.RoleAdmin, auth.RoleService} {
		p := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", sub: uuid.NewString(), role: role,
			body: map[string]any{"account_id": bobAccount, "amount": 100, "currency": "USD"}}), http.StatusCreated)
		if p.UserID != c.bob {
			t.Fatalf("%s: owner %s, want the account's %s", role, p.UserID, c.bob)
		}
	}
	before = g.ownedRows(t, c.bob, bobAccount)
	for field, body := range map[string]map[string]any{
		"user_id":  {"account_id": bobAccount, "user_id": c.alice, "amount": 100, "currency": "USD"},
		"currency": {"account_id": bobAccount, "amount": 100, "currency": "EUR"},
	} {
		rec := g.do(req{method: "POST", path: "/payments", role: auth.RoleService, sub: uuid.NewString(), body: body})
		if d := problemDoc(t, rec, http.StatusUnprocessableEntity); !fieldNamed(d, field) {
			t.Fatalf("%s: %v", field, d)
		}
	}
	for _, id := range []string{uuid.NewString(), "nope", "123"} {
		rec := g.do(req{method: "POST", path: "/payments", body: map[string]any{"account_id": id, "amount": 100, "currency": "USD"}})
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusUnprocessableEntity {
			t.Fatalf("account %q: %d %s", id, rec.Code, rec.Body)
		}
	}
	assertSame(t, before, g.ownedRows(t, c.bob, bobAccount))
}

func assertSame(t *testing.T, before, after any) {
	t.Helper()
	if b, a := before.([4]string), after.([4]string); b != a {
		t.Fatalf("the victim's rows changed:\nbefore %v\nafter  %v", b, a)
	}
}

// A customer who names another customer's invoice in POST /payments learns
// nothing of it: not its account, currency or status, nor that it exists
// (the answer is an unknown invoice's). The generic attack above checks
// the body for the victim's ids; this one its other facts too, with an
// invoice that is open and one already paid (docs/security.md: "an id
// reveals nothing").
func TestAnotherCustomersInvoiceIsNotRevealedByPaymentProblems(t *testing.T) {
	g := newRig(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	aliceAcct := g.newAccount(alice, "USD")
	bobAcct := g.newAccount(bob, "EUR")
	bobOpen := g.openInvoice(t, bobAcct, "EUR", 10_000)
	bobPaid := uuid.NewString()
	if rec := g.deliver(invoiceEvent(t, events.TypeInvoicePaid, bobPaid, bobAcct, "EUR", "paid", 5_000, 5_000)); rec.Code != 200 {
		t.Fatalf("paid: %d %s", rec.Code, rec.Body)
	}
	pay := func(invoice string) (int, string) {
		rec := g.do(req{method: "POST", path: "/payments", sub: alice, role: auth.RoleCustomer,
			body: map[string]any{"account_id": aliceAcct, "invoice_id": invoice, "amount": 100, "currency": "USD",
				"payment_method": "pm_card_visa", "confirm": true}})
		return rec.Code, strings.ReplaceAll(rec.Body.String(), invoice, "<invoice>")
	}
	unknownCode, unknown := pay(uuid.NewString())
	if unknownCode != http.StatusUnprocessableEntity {
		t.Fatalf("an unknown invoice: %d %s", unknownCode, unknown)
	}
	scrub := regexp.MustCompile(`"request_id":"[^"]*"`)
	for name, inv := range map[string]string{"open": bobOpen, "paid": bobPaid} {
		code, body := pay(inv)
		if code != unknownCode || scrub.ReplaceAllString(body, "") != scrub.ReplaceAllString(unknown, "") {
			t.Errorf("bob's %s invoice answers %d %s\nan unknown invoice %d %s", name, code, body, unknownCode, unknown)
		}
	}
}
