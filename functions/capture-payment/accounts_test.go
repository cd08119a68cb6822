package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

func (g *rig) deliverAccount(t *testing.T, source, typ string, f accounts.Facts) {
	t.Helper()
	if rec := g.deliver(event(t, source, typ, f.ID, f)); rec.Code >= 500 {
		t.Fatalf("%s: %d %s", typ, rec.Code, rec.Body)
	}
}

func (g *rig) facts(t *testing.T, id string) (accounts.Facts, bool) {
	t.Helper()
	f, ok, err := g.s.accounts.Get(context.Background(), nil, id)
	if err != nil {
		t.Fatal(err)
	}
	return f, ok
}

// createAs posts a payment of 100 USD from account as a customer.
func (g *rig) createAs(user, account string) *httptest.ResponseRecorder {
	return g.do(req{method: "POST", path: "/payments", sub: user, role: auth.RoleCustomer,
		body: map[string]any{"account_id": account, "amount": 100, "currency": "USD", "payment_method": "pm_card_visa"}})
}

func TestAccountReadModelFollowsTheAccountEvents(t *testing.T) {
	g := newRig(t)
	owner := uuid.NewString()
	f := accounts.Facts{ID: uuid.NewString(), UserID: owner, Currency: "USD", Status: accounts.Active, Version: 1}

	// Created, twice (a replay): known once, as it was.
	g.deliverAccount(t, "process-transaction", accounts.TypeCreated, f)
	g.deliverAccount(t, "process-transaction", accounts.TypeCreated, f)
	if got, ok := g.facts(t, f.ID); !ok || got != f {
		t.Fatalf("after created: %+v %v", got, ok)
	}
	p := decode[payments.Payment](t, g.createAs(owner, f.ID), http.StatusCreated)
	if p.UserID != owner {
		t.Fatalf("owner %s", p.UserID)
	}

	// Frozen: neither charged at create nor at confirm.
	frozen := f
	frozen.Status, frozen.Version = accounts.Frozen, 2
	g.deliverAccount(t, "process-transaction", accounts.TypeUpdated, frozen)
	g.deliverAccount(t, "process-transaction", accounts.TypeUpdated, frozen)
	if code := problemCode(t, g.createAs(owner, f.ID), http.StatusConflict); code != string(accounts.NotActive) {
		t.Fatalf("create on a frozen account: %s", code)
	}
	rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/confirm", sub: owner, role: auth.RoleCustomer})
	if code := problemCode(t, rec, http.StatusConflict); code != string(accounts.NotActive) {
		t.Fatalf("confirm on a frozen account: %s", code)
	}
	if got := g.get(p.ID); got.Status != payments.RequiresConfirmation || got.Attempts != 0 {
		t.Fatalf("the refused confirm wrote: %+v", got)
	}

	// An older version arriving late changes nothing.
	g.deliverAccount(t, "process-transaction", accounts.TypeUpdated, f)
	if got, _ := g.facts(t, f.ID); got != frozen {
		t.Fatalf("out of order: %+v", got)
	}

	// Account facts from anyone else are parked, never applied.
	forged := frozen
	forged.UserID, forged.Status, forged.Version = uuid.NewString(), accounts.Active, 9
	g.deliverAccount(t, "generate-invoice", accounts.TypeUpdated, forged)
	other := accounts.Facts{ID: uuid.NewString(), UserID: uuid.NewString(), Currency: "USD", Status: accounts.Active, Version: 1}
	g.deliverAccount(t, "capture-payment", accounts.TypeCreated, other)
	if got, _ := g.facts(t, f.ID); got != frozen {
		t.Fatalf("a forged update was applied: %+v", got)
	}
	if _, ok := g.facts(t, other.ID); ok {
		t.Fatal("a forged creation was applied")
	}

	// Closed is not active either; active again is.
	closed := frozen
	closed.Status, closed.Version = accounts.Closed, 3
	g.deliverAccount(t, "process-transaction", accounts.TypeUpdated, closed)
	problemCode(t, g.createAs(owner, f.ID), http.StatusConflict)
	open := f
	open.Version = 4
	g.deliverAccount(t, "process-transaction", accounts.TypeUpdated, open)
	decode[payments.Payment](t, g.createAs(owner, f.ID), http.StatusCreated)
}

// fakeLedger stands in for process-transaction's GET /accounts/{id}.
type fakeLedger struct {
	*testenv.Owner
	known sync.Map // account id → accounts.Facts
}

func newFakeLedger(t *testing.T, token string) *fakeLedger {
	l := &fakeLedger{}
	l.Owner = testenv.NewOwner(t, token, func(collection, id string) (any, bool) {
		if collection != "accounts" {
			return nil, false
		}
		return l.known.Load(id)
	})
	return l
}

func TestAnAccountWhoseEventHasNotArrivedIsReadThrough(t *testing.T) {
	const token = "service-token-for-tests"
	ledger := newFakeLedger(t, token)
	g := newRig(t, func(c *Config) { c.Accounts.LedgerURL, c.Accounts.ServiceToken = ledger.URL, token })
	owner := uuid.NewString()
	f := accounts.Facts{ID: uuid.NewString(), UserID: owner, Currency: "USD", Status: accounts.Active, Version: 1}
	ledger.known.Store(f.ID, f)

	// A fresh account is never refused; it is asked for once.
	decode[payments.Payment](t, g.createAs(owner, f.ID), http.StatusCreated)
	decode[payments.Payment](t, g.createAs(owner, f.ID), http.StatusCreated)
	if n := ledger.Calls(); n != 1 {
		t.Fatalf("process-transaction asked %d times, want once", n)
	}
	if got, ok := g.facts(t, f.ID); !ok || got != f {
		t.Fatalf("stored %+v %v", got, ok)
	}
	// Someone else's fresh account is a 404 like any other.
	g2 := accounts.Facts{ID: uuid.NewString(), UserID: uuid.NewString(), Currency: "USD", Status: accounts.Active, Version: 1}
	ledger.known.Store(g2.ID, g2)
	problemCode(t, g.createAs(owner, g2.ID), http.StatusNotFound)
	// Nobody's account: 404; the ledger unreachable: 503, nothing stored.
	problemCode(t, g.createAs(owner, uuid.NewString()), http.StatusNotFound)
	ledger.SetDown(true)
	g3 := accounts.Facts{ID: uuid.NewString(), UserID: owner, Currency: "USD", Status: accounts.Active, Version: 1}
	ledger.known.Store(g3.ID, g3)
	if rec := g.createAs(owner, g3.ID); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("ledger down: %d %s", rec.Code, rec.Body)
	}
	if _, ok := g.facts(t, g3.ID); ok {
		t.Fatal("stored an account the ledger did not answer for")
	}
}

func TestAnInactiveAccountsInvoiceIsAFailedCollectionNotACharge(t *testing.T) {
	g := newRig(t)
	g.saveMethod(t, "pm_card_visa", true)
	f, _ := g.facts(t, g.account)
	f.Status, f.Version = accounts.Frozen, f.Version+1
	g.setAccount(f)
	invoice := uuid.NewString()
	if rec := g.deliver(invoiceFinalized(t, g.account, invoice, 4200)); rec.Code != 200 {
		t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
	}
	p := g.get(payments.InvoicePaymentID(invoice))
	if p.Status != payments.RequiresPaymentMethod || p.Attempts != 0 || p.AmountCaptured != 0 || p.LastPaymentError == nil ||
		p.LastPaymentError.Code != string(accounts.NotActive) || p.UserID != g.admin {
		t.Fatalf("payment: %+v %+v", p, p.LastPaymentError)
	}
	evs := g.consume("payment-events", 2, forPayment(p.ID))
	if got := types(evs); len(got) != 2 || got[0] != events.TypePaymentCreated || got[1] != events.TypePaymentFailed {
		t.Fatalf("events %v", got)
	}
}

// An authorization taken while the account was active is not captured
// once the account is closed or frozen: a closed account cannot be paid
// into (the ledger rejects the payment_capture posting, account_closed),
// and a frozen one refuses an invoice's settlement. The capture used to
// take the money at the gateway and leave the ledger without it; now it is
// 409 account_not_active, nothing is captured or posted, and the
// authorization can be canceled (or expires) to release the card.
func TestAnAuthorizationIsNotCapturedIntoAnAccountNoLongerActive(t *testing.T) {
	g := newRig(t)
	for _, status := range []string{accounts.Closed, accounts.Frozen} {
		owner := uuid.NewString()
		acct := g.newAccount(owner, "USD")
		p := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", sub: owner, role: auth.RoleCustomer,
			body: map[string]any{"account_id": acct, "amount": 5000, "currency": "USD", "payment_method": "pm_card_visa",
				"capture_method": "manual", "confirm": true}}), http.StatusCreated)
		if p.Status != payments.RequiresCapture {
			t.Fatalf("authorization: %+v", p)
		}
		g.setAccount(accounts.Facts{ID: acct, UserID: owner, Currency: "USD", Status: status, Version: 2})
		rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture", sub: owner, role: auth.RoleCustomer, body: map[string]any{}})
		if code := problemCode(t, rec, http.StatusConflict); code != string(accounts.NotActive) {
			t.Fatalf("%s: capture: %s", status, code)
		}
		if got := g.get(p.ID); got.AmountCaptured != 0 || got.Status != payments.RequiresCapture {
			t.Fatalf("%s: after the refused capture %+v", status, got)
		}
		for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(p.ID))) {
			t.Fatalf("%s: a posting of the refused capture: %+v", status, ps)
		}
		if rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/cancel", sub: owner, role: auth.RoleCustomer, body: map[string]any{}}); rec.Code != http.StatusOK {
			t.Fatalf("%s: cancel of the authorization: %d %s", status, rec.Code, rec.Body)
		}
	}
}
