package api

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
)

// accountEvent is a billfn.account.* event as process-transaction emits it.
func accountEvent(t testing.TB, source, typ string, f accounts.Facts) events.Event {
	t.Helper()
	return event(t, source, typ, f.ID, f)
}

// TestAccountReadModelFollowsTheAccountEvents: the read model learns an
// account from billfn.account.created, refuses it once an update freezes
// it, ignores a duplicate and an older version arriving late, and parks
// account facts from anyone but process-transaction.
func TestAccountReadModelFollowsTheAccountEvents(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	f := accounts.Facts{ID: uuid.NewString(), UserID: user, Currency: "USD", Status: accounts.Active, Version: 1}
	// Known by its event alone: the fake ledger does not know it.
	if res := g.deliver(accountEvent(t, accounts.Owner, accounts.TypeCreated, f)); res.Processed != 1 {
		t.Fatalf("created = %+v", res)
	}
	calls := g.ledger.Calls()
	must(t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", f.ID)), 201)
	if g.ledger.Calls() != calls {
		t.Fatal("an account learnt from its event was read through")
	}

	frozen := f
	frozen.Status, frozen.Version = accounts.Frozen, 2
	up := accountEvent(t, accounts.Owner, accounts.TypeUpdated, frozen)
	if res := g.deliver(up); res.Processed != 1 {
		t.Fatalf("updated = %+v", res)
	}
	problemOf(t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", f.ID)), 409, "account_not_active")
	// The same event twice is a duplicate.
	if res := g.deliver(up); res.Duplicates != 1 {
		t.Fatalf("redelivery = %+v", res)
	}
	// An older version arriving after the newer one changes nothing.
	old := f
	old.Version = 1
	if res := g.deliver(accountEvent(t, accounts.Owner, accounts.TypeUpdated, old)); res.Processed != 1 {
		t.Fatalf("older = %+v", res)
	}
	problemOf(t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", f.ID)), 409, "account_not_active")
	// A newer one thaws it; both events in one batch are applied one by one.
	thawed := f
	thawed.Version = 3
	other := accounts.Facts{ID: uuid.NewString(), UserID: user, Currency: "EUR", Status: accounts.Active, Version: 1}
	if res := g.deliver(accountEvent(t, accounts.Owner, accounts.TypeUpdated, thawed), accountEvent(t, accounts.Owner, accounts.TypeCreated, other)); res.Processed != 2 {
		t.Fatalf("batch = %+v", res)
	}
	must(t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", f.ID)), 201)
	eur := invoiceBody("", other.ID)
	eur["currency"] = "EUR"
	must(t, g.asCustomer(user, "POST", "/invoices", eur), 201)

	// Account facts from another source are parked, never applied: the
	// forged owner does not get the account.
	mallory := uuid.NewString()
	forged := thawed
	forged.UserID, forged.Version = mallory, 99
	if res := g.deliver(accountEvent(t, "capture-payment", accounts.TypeUpdated, forged)); res.Parked != 1 {
		t.Fatalf("forged = %+v", res)
	}
	problemOf(t, g.asCustomer(mallory, "POST", "/invoices", invoiceBody("", f.ID)), 404, "not_found")
	must(t, g.asCustomer(user, "GET", "/invoices?account_id="+f.ID, nil), 200)
}

// TestFreshAccountIsReadThrough: an account whose event has not arrived
// is asked of process-transaction (once), so it is never refused.
func TestFreshAccountIsReadThrough(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	account := g.account(user, "USD")
	calls := g.ledger.Calls()
	must(t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", account)), 201)
	must(t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", account)), 201)
	if n := g.ledger.Calls() - calls; n != 1 {
		t.Fatalf("%d read-throughs, want 1", n)
	}
	// Still unknown to process-transaction: 404 for a customer and an admin alike.
	problemOf(t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", uuid.NewString())), 404, "not_found")
	problemOf(t, g.asAdmin("POST", "/invoices", invoiceBody("", uuid.NewString())), 404, "not_found")
	// The owner comes from the account: an admin need not name it.
	inv := decode[invoicing.Invoice](t, g.asAdmin("POST", "/invoices", invoiceBody("", account)))
	if inv.UserID != user {
		t.Fatalf("owner = %s, want the account's %s", inv.UserID, user)
	}
}

// TestInvoiceRequestedTakesTheOwnerFromTheAccount: an integrator's
// command naming an unknown account, another owner, another currency or
// a frozen account is parked and writes nothing; without user_id the
// owner is the account's.
func TestInvoiceRequestedTakesTheOwnerFromTheAccount(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	account := g.account(user, "USD")
	frozen := uuid.NewString()
	ledgerAccounts.Store(frozen, accounts.Facts{ID: frozen, UserID: user, Currency: "USD", Status: accounts.Frozen, Version: 1})
	cases := map[string]map[string]any{
		"unknown account": invoiceBody("", uuid.NewString()),
		"another owner":   invoiceBody(uuid.NewString(), account),
		"other currency":  map[string]any{"account_id": account, "currency": "EUR", "line_items": []any{map[string]any{"description": "x", "unit_amount": 1}}},
		"frozen account":  invoiceBody("", frozen),
	}
	for name, body := range cases {
		ev := event(t, "integrator", events.TypeInvoiceRequested, "", body)
		if res := g.deliver(ev); res.Parked != 1 {
			t.Fatalf("%s: %+v", name, res)
		}
		problemOf(t, g.asAdmin("GET", "/invoice-requests/"+ev.ID(), nil), 404, "not_found")
	}
	var n int
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM invoices WHERE account_id = ANY($1::uuid[])`, []string{account, frozen}).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d invoices written (%v)", n, err)
	}
	ok := event(t, "integrator", events.TypeInvoiceRequested, "", invoiceBody("", account))
	if res := g.deliver(ok); res.Processed != 1 {
		t.Fatalf("ok = %+v", res)
	}
	req := decode[store.InvoiceRequest](t, g.asCustomer(user, "GET", "/invoice-requests/"+ok.ID(), nil))
	if req.Status != "succeeded" || req.UserID == nil || *req.UserID != user {
		t.Fatalf("request = %+v", req)
	}
}

// TestFrozenAccountIsNotChargedOrBilled: finalize is refused, a
// subscription's due period waits (skipped, counted) until the account is
// active again, and is then caught up.
func TestFrozenAccountIsNotChargedOrBilled(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	account := g.account(user, "USD")
	draft := decode[invoicing.Invoice](t, g.asCustomer(user, "POST", "/invoices", invoiceBody("", account)))
	sub := g.subscribe(map[string]any{"account_id": account, "plan": monthly(1000)})
	if sub.UserID != user {
		t.Fatalf("subscription owner = %s, want %s", sub.UserID, user)
	}
	before := countInvoices(t, g, account)

	frz := accounts.Facts{ID: account, UserID: user, Currency: "USD", Status: accounts.Frozen, Version: 2}
	g.deliver(accountEvent(t, accounts.Owner, accounts.TypeUpdated, frz))
	problemOf(t, g.asCustomer(user, "POST", "/invoices/"+draft.ID+"/finalize", nil), 409, "account_not_active")
	problemOf(t, g.call(call{method: "POST", path: "/subscriptions", body: map[string]any{"account_id": account, "plan": monthly(1000)},
		sub: g.admin, role: auth.RoleService}), 409, "account_not_active")
	problemOf(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"plan": monthly(2000)}), 409, "account_not_active")

	g.clock.Advance(32 * 24 * time.Hour)
	g.tick()
	if n := countInvoices(t, g, account); n != before {
		t.Fatalf("%d invoices after a tick on a frozen account, want %d", n, before)
	}
	// A customer may still cancel… but first, thawed, the period is caught up.
	frz.Status, frz.Version = accounts.Active, 3
	g.deliver(accountEvent(t, accounts.Owner, accounts.TypeUpdated, frz))
	g.tick()
	if n := countInvoices(t, g, account); n != before+1 {
		t.Fatalf("%d invoices after thawing, want %d", n, before+1)
	}
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", nil), 200)
}

func countInvoices(t testing.TB, g *rig, account string) int {
	t.Helper()
	var n int
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM invoices WHERE account_id = $1`, account).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAFrozenAccountsSubscriptionEndsWithItsStartedPeriodsBilled: a
// period that started while the account was frozen waits, unbilled; a
// cancel at period end bills it first (it was used), and the tick that
// ends the subscription loses nothing.
func TestAFrozenAccountsSubscriptionEndsWithItsStartedPeriodsBilled(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	account := g.account(user, "USD")
	g.clock.Set(day("2026-06-01T00:00:00Z"))
	sub := g.subscribe(map[string]any{"account_id": account, "plan": monthly(1000)})
	frz := accounts.Facts{ID: account, UserID: user, Currency: "USD", Status: accounts.Frozen, Version: 2}
	g.clock.Set(day("2026-06-20T00:00:00Z"))
	g.deliver(accountEvent(t, accounts.Owner, accounts.TypeUpdated, frz))
	g.clock.Set(day("2026-07-05T00:00:00Z")) // July has started: its period waits
	g.tick()
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", nil), 200)
	g.clock.Set(day("2026-08-05T00:00:00Z"))
	g.tick()
	frz.Status, frz.Version = accounts.Active, 3
	g.deliver(accountEvent(t, accounts.Owner, accounts.TypeUpdated, frz))
	g.tick()
	s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
	invs := g.subInvoices(sub.ID)
	if s.Status != invoicing.SubCanceled || periods(invs) != "06-01..07-01 07-01..08-01" {
		t.Fatalf("after the thaw: %s, billed %s; want canceled, billed June and July", s.Status, periods(invs))
	}
}
