package main

// What the system tests check after they drove a stack: helpers to set up
// customers through the gateway, to wait for the system to settle, and the
// invariants read straight from the stack's database (the test owns it).

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// systemOwner owns the SYS-… accounts.
const systemOwner = "00000000-0000-0000-0000-000000000000"

// customer is a user with an account in process-transaction.
type customer struct {
	user    string
	account string
	number  string
	token   string // the customer's own JWT
}

// newCustomer opens an account for a new user (as an admin, as the
// platform's onboarding would).
func (e *e2e) newCustomer(currency string) customer {
	e.t.Helper()
	user := uuid.NewString()
	r := e.req(http.MethodPost, "/function/process-transaction/accounts",
		map[string]any{"currency": currency, "user_id": user}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		e.t.Fatalf("create account: %s", r)
	}
	return customer{user: user, account: str(r.body, "id"), number: str(r.body, "account_number"), token: e.tokenFor(user, auth.RoleCustomer)}
}

// fund moves amount from SYS-EXTERNAL into the account.
func (e *e2e) fund(c customer, amount int64, currency string) {
	e.t.Helper()
	r := e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
		"from_account_number": "SYS-EXTERNAL-" + currency, "to_account_id": c.account, "amount": amount, "currency": currency,
		"reference_id": "top-up"}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated || str(r.body, "status") != "posted" {
		e.t.Fatalf("fund: %s", r)
	}
}

// defaultMethod saves token as the account's default payment method in
// capture-payment (what invoice auto-collection charges).
func (e *e2e) defaultMethod(c customer, token string) {
	e.t.Helper()
	r := e.req(http.MethodPost, "/function/capture-payment/accounts/"+c.account+"/payment-methods", map[string]any{
		"user_id": c.user, "token": token, "default": true}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		e.t.Fatalf("payment method: %s", r)
	}
}

// balance reads an account's balance through process-transaction's API.
func (e *e2e) balance(account string) int64 {
	e.t.Helper()
	r := e.req(http.MethodGet, "/function/process-transaction/accounts/"+account, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("account %s: %s", account, r)
	}
	return num(r.body, "balance")
}

// systemBalances lists the SYS-… accounts' balances by number, through
// process-transaction's API (an admin lists the system owner's accounts).
func (e *e2e) systemBalances() map[string]int64 {
	e.t.Helper()
	out := map[string]int64{}
	cursor := ""
	for {
		r := e.req(http.MethodGet, "/function/process-transaction/accounts?limit=100&user_id="+systemOwner+cursor, nil)
		if r.status != http.StatusOK {
			e.t.Fatalf("system accounts: %s", r)
		}
		for _, a := range r.body["data"].([]any) {
			m := a.(map[string]any)
			out[str(m, "account_number")] = num(m, "balance")
		}
		if r.body["has_more"] != true {
			return out
		}
		cursor = "&cursor=" + str(r.body, "next_cursor")
	}
}

// quiesce waits until the system has nothing left in flight: every outbox
// row published and every consumer of the kafka-trigger at the end of its
// partitions, three polls in a row.
func (e *e2e) quiesce(d time.Duration) {
	e.t.Helper()
	calm := 0
	e.eventually("the system to settle (outbox published, consumers caught up)", d, func() bool {
		unpublished := e.scalar(`SELECT count(*) FROM outbox`)
		var lag float64
		for _, addr := range e.triggerAddrs() {
			v := metric(e.t, "http://"+addr+"/metrics", "billfn_trigger_consumer_lag")
			if v < 0 { // unreachable (restarting): not settled
				v = 1
			}
			lag += v
		}
		if unpublished == 0 && lag == 0 {
			calm++
		} else {
			calm = 0
		}
		if calm < 3 {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	})
}

// ledgerProblems checks process-transaction's double entry in its own
// tables: every currency sums to zero, every account's balance is the sum
// of its postings, every transfer's postings sum to zero, held is what the
// open holds reserve, and no account that may not go negative did.
func (e *e2e) ledgerProblems() []string {
	e.t.Helper()
	ctx := context.Background()
	var problems []string
	checks := []struct{ what, query string }{
		{"currencies whose balances do not sum to zero",
			`SELECT currency || ' sums to ' || sum(balance) FROM accounts GROUP BY currency HAVING sum(balance) <> 0`},
		{"accounts whose balance differs from their postings",
			`SELECT a.account_number || ': balance ' || a.balance || ', postings ' || coalesce(p.s, 0)
			   FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) s FROM postings GROUP BY account_id) p ON p.account_id = a.id
			  WHERE a.balance <> coalesce(p.s, 0)`},
		{"transfers whose postings do not balance",
			`SELECT transfer_id::text || ' sums to ' || sum(amount) FROM postings GROUP BY transfer_id HAVING sum(amount) <> 0`},
		{"posted transfers without their two postings",
			`SELECT t.id::text FROM transfers t WHERE t.status IN ('posted', 'captured')
			    AND (SELECT count(*) FROM postings p WHERE p.transfer_id = t.id) <> 2`},
		{"unposted transfers with postings",
			`SELECT t.id::text FROM transfers t WHERE t.status NOT IN ('posted', 'captured')
			    AND EXISTS (SELECT 1 FROM postings p WHERE p.transfer_id = t.id)`},
		{"accounts whose held differs from their open holds",
			`SELECT a.account_number || ': held ' || a.held || ', holds ' || coalesce(h.s, 0)
			   FROM accounts a LEFT JOIN (SELECT from_account_id, sum(amount) s FROM transfers WHERE status = 'held' GROUP BY from_account_id) h
			     ON h.from_account_id = a.id
			  WHERE a.held <> coalesce(h.s, 0)`},
		{"accounts overdrawn though they may not go negative",
			`SELECT account_number || ': ' || balance FROM accounts WHERE NOT allow_negative AND balance - held < 0`},
	}
	for _, c := range checks {
		rows, err := e.db.Query(ctx, c.query)
		if err != nil {
			e.t.Fatalf("%s: %v", c.what, err)
		}
		var bad []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				e.t.Fatal(err)
			}
			bad = append(bad, s)
		}
		rows.Close()
		if len(bad) > 0 {
			problems = append(problems, fmt.Sprintf("%s: %s", c.what, strings.Join(bad, "; ")))
		}
	}
	return problems
}

// deadLetters lists the events any function parked.
func (e *e2e) deadLetters() []string {
	e.t.Helper()
	rows, err := e.db.Query(context.Background(), `SELECT consumer || ' parked ' || type || ': ' || error FROM dead_letters ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		out = append(out, s)
	}
	return out
}

// today and tomorrow are the UTC dates a report range of "today" spans;
// the ranges reach a day further back so a flow crossing midnight is in.
func reportRange() string {
	now := time.Now().UTC()
	return "from=" + now.AddDate(0, 0, -1).Format(time.DateOnly) + "&to=" + now.AddDate(0, 0, 1).Format(time.DateOnly)
}

// summary reads aggregate-report's summary for one currency (and account).
func (e *e2e) summary(currency, account string) map[string]any {
	e.t.Helper()
	q := "/function/aggregate-report/reports/summary?" + reportRange() + "&currency=" + currency
	if account != "" {
		q += "&account_id=" + account
	}
	r := e.req(http.MethodGet, q, nil)
	if r.status != http.StatusOK {
		return nil
	}
	cs, _ := r.body["currencies"].([]any)
	if len(cs) == 0 {
		return map[string]any{}
	}
	return cs[0].(map[string]any)
}

// figure digs a {count, amount} pair out of a summary: path like
// "invoices.paid" or "transfers.received".
func figure(sum map[string]any, path string) (count, amount int64) {
	var cur any = sum
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return -1, -1
		}
		cur = m[p]
	}
	m, ok := cur.(map[string]any)
	if !ok {
		return -1, -1
	}
	return num(m, "count"), num(m, "amount")
}

// gatewayFigure reads a payment gateway's {count, amount} from a summary.
func gatewayFigure(sum map[string]any, gateway, what string) (count, amount int64) {
	ps, _ := sum["payments"].([]any)
	for _, p := range ps {
		m := p.(map[string]any)
		if str(m, "gateway") == gateway {
			return figure(m, what)
		}
	}
	return 0, 0
}

// reconciliation reads aggregate-report's reconciliation of a UTC date.
func (e *e2e) reconciliation(date string) map[string]any {
	e.t.Helper()
	r := e.req(http.MethodGet, "/function/aggregate-report/reports/reconciliation?date="+date, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("reconciliation: %s", r)
	}
	return r.body
}

// reportCheck runs aggregate-report's own check: the streamed rollups must
// equal a replay of its event log.
func (e *e2e) reportCheck() map[string]any {
	e.t.Helper()
	r := e.req(http.MethodGet, "/function/aggregate-report/admin/check?"+reportRange(), nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("admin/check: %s", r)
	}
	return r.body
}
