package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/problem"
)

// askedAccounts counts the reads of the read model of accounts the
// service makes on its own (Directory.For and Lookup: each a statement,
// and a commit, outside any write).
type askedAccounts struct {
	payments.Accounts
	n atomic.Int64
}

func (a *askedAccounts) For(ctx context.Context, pr auth.Principal, id string) (accounts.Facts, error) {
	a.n.Add(1)
	return a.Accounts.For(ctx, pr, id)
}

func (a *askedAccounts) Lookup(ctx context.Context, id string) (accounts.Facts, error) {
	a.n.Add(1)
	return a.Accounts.Lookup(ctx, id)
}

// countAccountReads makes the rig's service count its reads of the
// accounts' read model.
func (g *rig) countAccountReads() *askedAccounts {
	a := &askedAccounts{Accounts: g.s.svc.Accounts}
	g.s.svc.Accounts = a
	return a
}

// Issue 20: the account's facts were read in a transaction of their own
// (AuthorizeAccount) before every POST /payments; a known, active account
// the caller may use is now decided by the payment's first write itself.
func TestAKnownAccountIsDecidedByThePaymentsFirstWrite(t *testing.T) {
	g := newRig(t)
	asked := g.countAccountReads()
	owner := uuid.NewString()
	acct := g.newAccount(owner, "USD")
	for _, c := range []struct {
		name string
		sub  string
		role auth.Role
		body map[string]any
		want payments.Status
	}{
		{"customer, create and confirm", owner, auth.RoleCustomer,
			map[string]any{"account_id": acct, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa", "confirm": true}, payments.Succeeded},
		{"customer, create", owner, auth.RoleCustomer,
			map[string]any{"account_id": acct, "amount": 100, "currency": "usd", "payment_method": "pm_card_visa"}, payments.RequiresConfirmation},
		{"customer naming itself, no method", owner, auth.RoleCustomer,
			map[string]any{"account_id": acct, "user_id": owner, "amount": 100, "currency": "USD"}, payments.RequiresPaymentMethod},
		{"service, create and confirm", uuid.NewString(), auth.RoleService,
			map[string]any{"account_id": acct, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa", "confirm": true}, payments.Succeeded},
		{"admin naming the owner, create", g.admin, auth.RoleAdmin,
			map[string]any{"account_id": acct, "user_id": owner, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa"}, payments.RequiresConfirmation},
	} {
		before := asked.n.Load()
		p := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", sub: c.sub, role: c.role, body: c.body}), http.StatusCreated)
		if n := asked.n.Load() - before; n != 0 {
			t.Errorf("%s: the read model was asked %d times outside the payment's write, want 0", c.name, n)
		}
		if p.UserID != owner || p.Status != c.want || p.AccountID != acct {
			t.Errorf("%s: %s owner %s status %s, want %s %s", c.name, p.ID, p.UserID, p.Status, owner, c.want)
		}
		if got := g.get(p.ID); got.UserID != owner {
			t.Errorf("%s: stored owner %s, want the account's %s", c.name, got.UserID, owner)
		}
	}
}

// The guard's refusals are AuthorizeAccount's answers, as before, and
// leave nothing behind: no payment, no attempt, no event.
func TestARefusedGuardAnswersAsBeforeAndWritesNothing(t *testing.T) {
	g := newRig(t, func(c *Config) { c.Routes = "USD=sandbox" })
	alice, bob := uuid.NewString(), uuid.NewString()
	bobs, bobsEUR := g.newAccount(bob, "USD"), g.newAccount(bob, "EUR")
	alices, alicesEUR := g.newAccount(alice, "USD"), g.newAccount(alice, "EUR")
	frozen := g.newAccount(alice, "USD")
	g.setAccount(accounts.Facts{ID: frozen, UserID: alice, Currency: "USD", Status: accounts.Frozen, Version: 2})
	unknown := uuid.NewString()
	for _, c := range []struct {
		name    string
		sub     string
		role    auth.Role
		account string
		extra   map[string]any
		status  int
		code    string
		field   string
	}{
		{"another customer's account", alice, auth.RoleCustomer, bobs, nil, http.StatusNotFound, "not_found", ""},
		{"another customer's account naming oneself", alice, auth.RoleCustomer, bobs, map[string]any{"user_id": alice}, http.StatusNotFound, "not_found", ""},
		{"another customer's account, no gateway for its currency", alice, auth.RoleCustomer, bobsEUR, map[string]any{"currency": "EUR"}, http.StatusNotFound, "not_found", ""},
		{"an unknown account", alice, auth.RoleCustomer, unknown, nil, http.StatusNotFound, "not_found", ""},
		{"an unknown account, admin", g.admin, auth.RoleAdmin, unknown, nil, http.StatusNotFound, "not_found", ""},
		{"a frozen account", alice, auth.RoleCustomer, frozen, nil, http.StatusConflict, string(accounts.NotActive), ""},
		{"the wrong currency", alice, auth.RoleCustomer, alices, map[string]any{"currency": "EUR"}, http.StatusUnprocessableEntity, "validation_failed", "currency"},
		{"the wrong user_id", g.admin, auth.RoleAdmin, alices, map[string]any{"user_id": bob}, http.StatusUnprocessableEntity, "validation_failed", "user_id"},
		{"no gateway for the account's currency", alice, auth.RoleCustomer, alicesEUR, map[string]any{"currency": "EUR"}, http.StatusUnprocessableEntity, string(payments.CodeNoRoute), ""},
	} {
		for _, confirm := range []bool{false, true} {
			body := map[string]any{"account_id": c.account, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa", "confirm": confirm}
			for k, v := range c.extra {
				body[k] = v
			}
			rec := g.do(req{method: "POST", path: "/payments", sub: c.sub, role: c.role, body: body})
			d := problemDoc(t, rec, c.status)
			if d["code"] != c.code || (c.field != "" && !fieldNamed(d, c.field)) {
				t.Errorf("%s (confirm %v): %v, want %s %s", c.name, confirm, d, c.code, c.field)
			}
		}
	}
	for _, acct := range []string{bobs, bobsEUR, alices, alicesEUR, frozen, unknown} {
		g.assertNothingWritten(t, acct)
	}
}

// assertNothingWritten fails if any payment, attempt or event of account
// exists (the outbox published first, so an event is found wherever it is).
func (g *rig) assertNothingWritten(t *testing.T, account string) {
	t.Helper()
	var n [3]int
	for i, q := range []string{
		`SELECT count(*) FROM payments WHERE account_id = $1`,
		`SELECT count(*) FROM payment_attempts a JOIN payments p ON p.id = a.payment_id WHERE p.account_id = $1`,
		`SELECT count(*) FROM outbox WHERE strpos(convert_from(payload, 'UTF8'), $1::text) > 0`,
	} {
		if err := g.d.Pool.QueryRow(context.Background(), q, account).Scan(&n[i]); err != nil {
			t.Fatal(err)
		}
	}
	if n != [3]int{} {
		t.Fatalf("account %s: %d payments, %d attempts, %d outbox rows written by refusals", account, n[0], n[1], n[2])
	}
	if evs := g.drain(events.TopicPayment, func(r record) bool { return strings.Contains(string(r.Event.Data()), account) }); len(evs) != 0 {
		t.Fatalf("account %s: %d events published for refusals", account, len(evs))
	}
}

// A request re-run after a crash (its payment exists, its answer was never
// recorded) answers with the payment that exists, as before; an account
// frozen since is refused first, as before.
func TestARerunOfAGuardedCreateAnswersWithThePaymentThatExists(t *testing.T) {
	g := newRig(t)
	ctx := context.Background()
	owner := uuid.NewString()
	acct := g.newAccount(owner, "USD")
	pr := auth.Principal{Subject: owner, Role: auth.RoleCustomer}
	ins := map[bool]payments.CreateInput{}
	for _, confirm := range []bool{false, true} {
		in := payments.CreateInput{ID: uuid.NewString(), AccountID: acct, Amount: 100, Currency: "USD", PaymentMethod: "pm_card_visa",
			CaptureMethod: payments.CaptureAutomatic, Confirm: confirm, Metadata: map[string]string{}}
		first, err := g.s.svc.CreateFor(ctx, g.s.svc.Store.Fresh(), pr, in, nil)
		if err != nil {
			t.Fatal(err)
		}
		again, err := g.s.svc.CreateFor(ctx, g.s.svc.Store.Fresh(), pr, in, nil)
		if err != nil {
			t.Fatalf("confirm %v, re-run: %v", confirm, err)
		}
		if again.ID != first.ID || again.UserID != owner || again.Status != first.Status || again.Attempts != first.Attempts {
			t.Fatalf("confirm %v, re-run: %+v, want %+v", confirm, again, first)
		}
		ins[confirm] = in
	}
	g.setAccount(accounts.Facts{ID: acct, UserID: owner, Currency: "USD", Status: accounts.Frozen, Version: 2})
	for confirm, in := range ins {
		_, err := g.s.svc.CreateFor(ctx, g.s.svc.Store.Fresh(), pr, in, nil)
		if code := problemOf(err); code != string(accounts.NotActive) {
			t.Fatalf("confirm %v, re-run on a frozen account: %v, want %s", confirm, err, accounts.NotActive)
		}
	}
}

// problemOf is the problem code of err ("" for none).
func problemOf(err error) string {
	var pe *problem.Error
	if errors.As(err, &pe) {
		return string(pe.Code)
	}
	return ""
}
