package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/testenv"
)

// TestAttackEveryRoute runs the generated attack over the route table
// (testenv.AttackRoutes): customer A asks every report and the dashboard
// panels for customer B's account, and no answer may hold B's figures.
func TestAttackEveryRoute(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-10")
	userA, userB, acctA, acctB, ext := id(), id(), id(), id(), id()
	g.deliver(
		account(t, d, ext, id(), "SYS-EXTERNAL-USD", "USD"),
		account(t, d, acctA, userA, "ACC-ATTACKER", "USD"),
		account(t, d, acctB, userB, "ACC-VICTIM", "USD"),
		transfer(t, d.Add(time.Hour), ext, acctA, 5_000, "USD", "posted"),
		// B's figures have seven digits, none A's or any request's:
		// no answer to A may hold them (Private).
		transfer(t, d.Add(time.Hour), ext, acctB, 7_340_911, "USD", "posted"),
		transfer(t, d.Add(2*time.Hour), acctB, ext, 1_129_377, "USD", "posted"),
	)
	private := []string{"7340911", "1129377", "6211534"}
	// They are there to leak: an administrator's summary holds them.
	if rec := g.request("GET", "/reports/summary?from=2026-03-01&to=2026-03-31&account_id="+acctB, asAdmin, nil); rec.Code != 200 ||
		!strings.Contains(rec.Body.String(), private[0]) {
		t.Fatalf("the administrator's summary: %d %s", rec.Code, rec.Body)
	}
	party := func(user, acct string) testenv.Party {
		return testenv.Party{Token: g.kit.Token(t, user, auth.RoleCustomer), Own: map[string]string{"user": user, "account": acct}}
	}
	// Each report's other parameters, valid, so that only the account
	// decides the answer.
	params := map[string]url.Values{
		"summary":        {"from": {"2026-03-01"}, "to": {"2026-03-31"}},
		"timeseries":     {"metric": {"revenue"}, "from": {"2026-03-01"}, "to": {"2026-03-31"}},
		"aging":          {"as_of": {"2026-03-15"}},
		"mrr":            {"month": {"2026-03"}},
		"reconciliation": {"date": {"2026-03-10"}},
		"top-accounts":   {"currency": {"USD"}, "from": {"2026-03-01"}, "to": {"2026-03-31"}},
		"panels":         {"from": {"2026-03-01"}, "to": {"2026-03-31"}},
	}
	testenv.AttackRoutes(t, g.svc.RouteTable(), testenv.Attack{
		Handler:  g.h,
		Attacker: party(userA, acctA),
		Victim:   party(userB, acctB),
		Base: func(rt platform.Route, ref string) testenv.Request {
			name := strings.TrimSuffix(rt.Path()[strings.LastIndexByte(rt.Path(), '/')+1:], ".csv")
			return testenv.Request{Query: params[name]}
		},
		Snapshot: func(tb testing.TB) any {
			rows, _ := g.d.Pool.Query(context.Background(), `SELECT day::text || ':' || currency || ':' || metric || ':' || dim || ':' || amount
				FROM report_account_rollups WHERE account_id = $1 ORDER BY 1`, acctB)
			figures, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				tb.Fatal(err)
			}
			return figures
		},
		Private: func(testing.TB) []string { return private },
	})
	// A's own reports do answer (the attack above is not a 404 for every
	// request), and never with B's account.
	for name, q := range params {
		path := "/reports/" + name
		if name == "panels" {
			path = "/dashboard/panels"
		}
		rec := g.request("GET", path+"?"+q.Encode(), asCustomer(userA), nil)
		if rec.Code != 200 || strings.Contains(rec.Body.String(), acctB) {
			t.Errorf("A's own %s: %d %s", name, rec.Code, rec.Body)
		}
		for _, f := range private {
			if strings.Contains(rec.Body.String(), f) {
				t.Errorf("A's own %s holds B's figure %s: %s", name, f, rec.Body)
			}
		}
	}
}

// A customer's reconciliation shows its own accounts' side of a payment
// only. A transfer's metadata is its caller's words: a customer moving 1
// between its own accounts with {"kind":"refund","payment_id":<another
// customer's payment>} (process-transaction now refuses those kinds from
// customers; an event replayed from before, or an administrator's
// transfer, can still carry them) made that payment one of the customer's,
// and the report then listed its whole history: the victim's captured
// amount, gateway event ids and ledger transfer ids, in JSON and CSV.
func TestReconciliationShowsOnlyTheCallersSideOfAPayment(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-10")
	attacker, victim := id(), id()
	atkA, atkB, vicAcct, clearing := id(), id(), id(), id()
	victimPayment := id()
	capture := payment(t, d.Add(9*time.Hour), "captured", paymentFields{id: victimPayment, account: vicAcct, cur: "USD",
		gateway: "stripe", amount: 987654, captured: 987654})
	victimPosting := transfer(t, d.Add(9*time.Hour+time.Second), clearing, vicAcct, 987654, "USD", "posted",
		withMeta("payment_capture", victimPayment, "stripe"))
	forged := transfer(t, d.Add(10*time.Hour), atkA, atkB, 1, "USD", "posted", withMeta("refund", victimPayment, "stripe"))
	g.deliver(
		account(t, d, atkA, attacker, "ACC-ATK-A", "USD"),
		account(t, d, atkB, attacker, "ACC-ATK-B", "USD"),
		account(t, d, vicAcct, victim, "ACC-VIC", "USD"),
		account(t, d, clearing, id(), "SYS-CLEARING-USD", "USD"),
		capture, victimPosting, forged,
	)
	leaks := func(s string) bool {
		return strings.Contains(s, "987654") || strings.Contains(s, capture.ID()) || strings.Contains(s, victimPosting.Subject())
	}
	res := g.request(http.MethodGet, "/reports/reconciliation?date=2026-03-10", asCustomer(attacker), nil)
	if res.Code != http.StatusOK || leaks(res.Body.String()) {
		t.Errorf("the attacker's reconciliation: %d %s", res.Code, res.Body)
	}
	res = g.request(http.MethodGet, "/reports/reconciliation.csv?date=2026-03-10", asCustomer(attacker), nil)
	if res.Code != http.StatusOK || leaks(res.Body.String()) {
		t.Errorf("the attacker's reconciliation as CSV: %d %s", res.Code, res.Body)
	}
	// The victim still sees its payment whole.
	var rec store.Reconciliation
	g.getJSON("/reports/reconciliation?date=2026-03-10", asCustomer(victim), &rec)
	for _, m := range rec.Mismatches {
		if m.PaymentID == victimPayment && (m.GatewayCaptured != 987654 || m.LedgerRefunded != 0) {
			t.Errorf("the victim's own view of its payment: %+v", m)
		}
	}
}
