package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/testenv"
)

// ledgerParty is one customer of the attack: two funded accounts, a
// posted transfer between them and an open hold.
type ledgerParty struct {
	user         string
	main, second Account
	transfer     string
	hold         string
}

// ledgerParty funds its two accounts with main and second: the victim's
// amounts differ from the attacker's, so its balances are figures no
// answer to the attacker may hold (Attack.Private).
func (e *env) ledgerParty(main, second int64) ledgerParty {
	e.t.Helper()
	p := ledgerParty{user: uuid.NewString()}
	p.main, p.second = e.account(p.user, "USD"), e.account(p.user, "USD")
	e.fund(p.main, main)
	e.fund(p.second, second)
	var tr Transfer
	r := e.transfer(p.user, p.main, p.second, 1_000)
	if r.Code != 201 {
		e.t.Fatalf("transfer: %d %s", r.Code, r.Body)
	}
	r.json(e.t, &tr)
	p.transfer = tr.ID
	r = e.do("POST", "/transfers", p.user, auth.RoleCustomer, map[string]any{"from_account_id": p.main.ID,
		"to_account_id": p.second.ID, "amount": 2_000, "currency": "USD", "pending": true}, "Idempotency-Key", key())
	if r.Code != 201 {
		e.t.Fatalf("hold: %d %s", r.Code, r.Body)
	}
	r.json(e.t, &tr)
	p.hold = tr.ID
	return p
}

func (p ledgerParty) own(e *env) testenv.Party {
	return testenv.Party{Token: e.kit.Token(e.t, p.user, auth.RoleCustomer), Own: map[string]string{
		"user":                          p.user,
		"account":                       p.main.ID,
		"account-number":                p.main.AccountNumber,
		"to_account_id":                 p.second.ID,
		"to_account_number":             p.second.AccountNumber,
		"transfers/0/to_account_id":     p.second.ID,
		"transfers/0/to_account_number": p.second.AccountNumber,
		"transfer":                      p.transfer,
		"hold":                          p.hold,
	}}
}

// snapshot is everything of p's the ledger holds: its accounts' balances,
// holds and statuses, and every transfer touching them.
func (p ledgerParty) snapshot(tb testing.TB, e *env) any {
	tb.Helper()
	ctx := context.Background()
	rows, _ := e.d.Pool.Query(ctx, `SELECT id::text, balance, held, status, version FROM accounts WHERE user_id = $1 ORDER BY id`, p.user)
	type acct struct {
		ID, Status             string
		Balance, Held, Version int64
	}
	accts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (acct, error) {
		var a acct
		return a, r.Scan(&a.ID, &a.Balance, &a.Held, &a.Status, &a.Version)
	})
	if err != nil {
		tb.Fatal(err)
	}
	rows, _ = e.d.Pool.Query(ctx, `SELECT t.id::text, t.status, t.amount, t.captured_amount FROM transfers t
		WHERE t.from_account_id IN (SELECT id FROM accounts WHERE user_id = $1)
		   OR t.to_account_id IN (SELECT id FROM accounts WHERE user_id = $1) ORDER BY t.id`, p.user)
	type transfer struct {
		ID, Status       string
		Amount, Captured int64
	}
	trs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (transfer, error) {
		var t transfer
		return t, r.Scan(&t.ID, &t.Status, &t.Amount, &t.Captured)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return map[string]any{"accounts": accts, "transfers": trs}
}

// balances are p's accounts' balances and available amounts, as the
// answers write them.
func (p ledgerParty) balances(tb testing.TB, e *env) []string {
	tb.Helper()
	rows, err := e.d.Pool.Query(context.Background(), `SELECT balance, balance - held FROM accounts WHERE user_id = $1`, p.user)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var bal, avail int64
		if err := rows.Scan(&bal, &avail); err != nil {
			tb.Fatal(err)
		}
		out = append(out, strconv.FormatInt(bal, 10), strconv.FormatInt(avail, 10))
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestAttackEveryRoute attacks every route of the route table as customer
// A with customer B's resources (testenv.AttackRoutes): a route added to
// the table is attacked without anyone writing a case for it.
func TestAttackEveryRoute(t *testing.T) {
	e := newEnv(t)
	a, b := e.ledgerParty(100_000, 100_000), e.ledgerParty(7_340_911, 5_129_377)
	transfer := func(prefixed string) map[string]any {
		tr := map[string]any{"amount": 100, "currency": "USD", "description": "attack"}
		// One reference of each side: an account is named by id or by
		// number, never both.
		from, to := "from_account_id", "to_account_id"
		switch prefixed {
		case "from_account_number":
			from = prefixed
		case "to_account_number":
			to = prefixed
		}
		tr[from], tr[to] = "", ""
		return tr
	}
	testenv.AttackRoutes(t, e.s.Routes(), testenv.Attack{
		Handler:  e.h,
		Attacker: a.own(e),
		Victim:   b.own(e),
		Base: func(rt platform.Route, ref string) testenv.Request {
			switch rt.Pattern {
			case "POST /accounts":
				return testenv.Request{Body: map[string]any{"currency": "USD", "user_id": ""}}
			case "PATCH /accounts/{id}":
				return testenv.Request{Body: map[string]any{"status": "frozen"}}
			case "POST /transfers":
				return testenv.Request{Body: transfer(ref)}
			case "POST /transfers/batch":
				ref = strings.TrimPrefix(ref, "transfers/0/")
				items := []any{transfer(ref)}
				if strings.HasPrefix(ref, "to_") {
					// Paying the victim, a second item the attacker
					// cannot afford: its rejection must not show the
					// victim's balances (Private) any more than a
					// posted item does.
					items = append(items, map[string]any{"from_account_id": a.main.ID, "to_account_id": b.second.ID,
						"amount": 1_000_000_000, "currency": "USD"})
				}
				return testenv.Request{Body: map[string]any{"transfers": items}}
			}
			return testenv.Request{}
		},
		Expect: map[string]testenv.Outcome{
			// A customer opens accounts for itself only.
			"POST /accounts user_id": {Status: []int{403}},
			// Someone else's list is an empty list.
			"GET /accounts ?user_id": {Status: []int{200}},
			// Paying into someone else's account is what a transfer is for.
			"POST /transfers to_account_id":                       {Status: []int{201}, VictimChanges: true},
			"POST /transfers to_account_number":                   {Status: []int{201}, VictimChanges: true, Reveals: []string{"to_account_id"}},
			"POST /transfers/batch transfers/0/to_account_id":     {Status: []int{200}, VictimChanges: true},
			"POST /transfers/batch transfers/0/to_account_number": {Status: []int{200}, VictimChanges: true, Reveals: []string{"to_account_id"}},
			// A batch (not atomic) answers each item: the one naming
			// the victim's account as its source is a 404 item.
			"POST /transfers/batch transfers/0/from_account_id":     {Status: []int{200}},
			"POST /transfers/batch transfers/0/from_account_number": {Status: []int{200}},
		},
		Snapshot: func(tb testing.TB) any { return b.snapshot(tb, e) },
		Private:  func(tb testing.TB) []string { return b.balances(tb, e) },
	})
}

// A transfer's metadata.kind names what billfn's own functions moved money
// for (events.TransferKinds: a payment's capture, a refund, an invoice's
// settlement), and consumers read it as a fact about a payment
// (aggregate-report's reconciliation). Such a fact is accepted only from
// its owner: a customer's transfer claiming one of those kinds is refused,
// in a batch too, and nothing moves; an administrator's is accepted.
func TestACustomerCannotClaimABillfnTransferKind(t *testing.T) {
	e := newEnv(t)
	owner := uuid.NewString()
	a, b := e.account(owner, "USD"), e.account(owner, "USD")
	e.fund(a, 1_000)
	for _, kind := range events.TransferKinds {
		md := map[string]string{"kind": kind, "payment_id": uuid.NewString(), "gateway": "stripe"}
		r := e.do("POST", "/transfers", owner, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
			"amount": 1, "currency": "USD", "metadata": md}, "Idempotency-Key", key())
		if r.Code != 422 || !strings.Contains(r.Body.String(), `"pointer":"#/metadata/kind"`) {
			t.Errorf("a customer's transfer of kind %s: %d %s", kind, r.Code, r.Body)
		}
		r = e.do("POST", "/transfers/batch", owner, auth.RoleCustomer, map[string]any{"transfers": []any{
			map[string]any{"from_account_id": a.ID, "to_account_id": b.ID, "amount": 1, "currency": "USD"},
			map[string]any{"from_account_id": a.ID, "to_account_id": b.ID, "amount": 1, "currency": "USD", "metadata": md}}},
			"Idempotency-Key", key())
		if r.Code != 422 || !strings.Contains(r.Body.String(), `"pointer":"#/transfers/1/metadata/kind"`) {
			t.Errorf("a customer's batch with a transfer of kind %s: %d %s", kind, r.Code, r.Body)
		}
	}
	if got := e.get(a.ID); got.Balance != 1_000 {
		t.Fatalf("refused transfers moved money: %+v", got)
	}
	ok := e.do("POST", "/transfers", e.admin, auth.RoleAdmin, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
		"amount": 1, "currency": "USD", "metadata": map[string]string{"kind": events.KindRefund}}, "Idempotency-Key", key())
	if ok.Code != 201 {
		t.Errorf("an administrator's transfer of kind refund: %d %s", ok.Code, ok.Body)
	}
}

// refund_reversal (capture-payment's posting of a refund that failed
// after it succeeded) is a kind of billfn's own like the other refund
// kinds, but was missing from events.TransferKinds: a customer's transfer
// claiming it was posted, stating a reversal of a payment's refund that
// capture-payment never made. It is refused, and nothing moves.
func TestACustomerCannotClaimARefundReversal(t *testing.T) {
	e := newEnv(t)
	owner := uuid.NewString()
	a, b := e.account(owner, "USD"), e.account(owner, "USD")
	e.fund(a, 1_000)
	md := map[string]string{"kind": events.KindRefundReversal, "payment_id": uuid.NewString(), "gateway": "stripe"}
	r := e.do("POST", "/transfers", owner, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
		"amount": 1, "currency": "USD", "metadata": md}, "Idempotency-Key", key())
	if r.Code != 422 || !strings.Contains(r.Body.String(), `"pointer":"#/metadata/kind"`) {
		t.Errorf("a customer's transfer of kind refund_reversal: %d %s", r.Code, r.Body)
	}
	if got := e.get(a.ID); got.Balance != 1_000 {
		t.Fatalf("the refused transfer moved money: %+v", got)
	}
}

// The refusal above reads metadata the way its consumers do. A consumer
// (aggregate-report's reconciliation) reads the member named exactly
// "kind", last one wins; encoding/json's struct decoding matched any case
// ("KIND", "Kind", even a Kelvin sign for the K), so a customer wrote
// {"kind":"payment_capture","KIND":"note"}: the check saw "note", the
// posted event carried kind payment_capture, and the merchant's
// reconciliation counted a capture the customer made up. Every such
// spelling is refused, and none reaches an event.
func TestACustomerCannotClaimABillfnTransferKindInAnotherSpelling(t *testing.T) {
	e := newEnv(t)
	owner := uuid.NewString()
	a, b := e.account(owner, "USD"), e.account(owner, "USD")
	e.fund(a, 1_000)
	pay := uuid.NewString()
	posted := map[string]string{} // transfer id → its metadata
	for _, md := range []string{
		`{"kind":"payment_capture","KIND":"note","payment_id":"` + pay + `","gateway":"stripe"}`,
		`{"kind":"refund","Kind":"note","payment_id":"` + pay + `"}`,
		`{"kind":"payment_capture","\u212aind":"note","payment_id":"` + pay + `"}`,
		`{"Kind":"payment_capture","payment_id":"` + pay + `"}`,
		`{"kind":"payment_capture","kind":"note","KIND":"note"}`,
	} {
		r := e.do("POST", "/transfers", owner, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
			"amount": 1, "currency": "USD", "metadata": json.RawMessage(md)}, "Idempotency-Key", key())
		if r.Code == 201 {
			var tr Transfer
			r.json(t, &tr)
			posted[tr.ID] = md
			continue
		}
		if r.Code != 422 || !strings.Contains(r.Body.String(), `"pointer":"#/metadata/kind"`) {
			t.Errorf("metadata %s: %d %s", md, r.Code, r.Body)
		}
	}
	if len(posted) == 0 {
		return
	}
	// What left process-transaction: the posted events, as a consumer reads them.
	for _, ev := range e.kafkaEvents(events.TypeTransactionPosted, a.ID, len(posted)) {
		var d struct {
			ID       string         `json:"id"`
			Metadata map[string]any `json:"metadata"`
		}
		_ = json.Unmarshal(ev.Data(), &d)
		t.Errorf("a customer's transfer with metadata %s was posted; its event's metadata.kind is %v", posted[d.ID], d.Metadata["kind"])
	}
}

// An account read by its id in upper case is cached under its canonical
// id, the one every change invalidates: before, it had an entry of its own
// that no transfer reached, and showed the balance of the first read for
// five minutes.
func TestAnAccountReadByItsIdInUpperCaseIsNotStale(t *testing.T) {
	e := newEnv(t)
	owner := uuid.NewString()
	a := e.account(owner, "USD")
	upper := "/accounts/" + strings.ToUpper(a.ID)
	if r := e.do("GET", upper, owner, auth.RoleCustomer, nil); r.Code != 200 {
		t.Fatalf("GET %s: %d %s", upper, r.Code, r.Body)
	}
	e.fund(a, 1_000)
	r := e.do("GET", upper, owner, auth.RoleCustomer, nil)
	var got Account
	r.json(t, &got)
	if got.Balance != 1_000 {
		t.Errorf("read by its id in upper case after a transfer: balance %d, want 1000", got.Balance)
	}
}

// A batch's rejected item shows the caller what a refused transfer shows:
// its own side. Paying someone reveals nothing about their balance, yet
// the batch answered a rejected item with the transfer as decided, both
// balances in it: customer A sent B's account a batch item larger than
// its own balance and read B's balance and available in to_balance and
// to_available, and again in the key's replay. An atomic batch's 422
// shows no transfer; it is checked alike.
func TestABatchsRejectedItemShowsNoOneElsesBalance(t *testing.T) {
	e := newEnv(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	a, b := e.account(alice, "USD"), e.account(bob, "USD")
	e.fund(a, 100)
	e.fund(b, 987_654)
	for _, atomic := range []bool{false, true} {
		k := key()
		body := map[string]any{"atomic": atomic, "transfers": []any{
			map[string]any{"from_account_id": a.ID, "to_account_number": b.AccountNumber, "amount": 5_000, "currency": "USD"}}}
		for _, try := range []string{"first", "replay"} {
			r := e.do("POST", "/transfers/batch", alice, auth.RoleCustomer, body, "Idempotency-Key", k)
			if (atomic && r.Code != 422) || (!atomic && r.Code != 200) || !strings.Contains(r.Body.String(), "insufficient_funds") {
				t.Fatalf("atomic %v, %s: %d %s", atomic, try, r.Code, r.Body)
			}
			for _, leak := range []string{"to_balance", "to_available", "987654"} {
				if strings.Contains(r.Body.String(), leak) {
					t.Errorf("atomic %v, %s: the answer shows the payee's %s: %s", atomic, try, leak, r.Body)
				}
			}
		}
	}
	if got := e.get(b.ID); got.Balance != 987_654 {
		t.Fatalf("the payee's balance %d changed", got.Balance)
	}
	checkLedger(t, e.d)
}

// The same rule over Kafka: an outside integrator may request transfers
// (its principal may write transaction-events, its key sign commands),
// but a billfn kind in their metadata states a fact about a payment,
// which only capture-payment states. The ledger posted an integrator's
// request of kind payment_capture, and aggregate-report reconciled it as
// a capture of the payment it named. Such a request is parked, nothing
// moves; capture-payment's own is posted.
func TestAnIntegratorCannotClaimABillfnTransferKind(t *testing.T) {
	e := newEnv(t)
	a := e.account(uuid.NewString(), "USD")
	request := func(source, kind string) events.Event {
		md := events.MetadataOf(map[string]string{"kind": kind, "payment_id": uuid.NewString(), "gateway": "stripe"})
		ev := events.Must(events.New(context.Background(), "capture-payment", events.TypeTransactionRequested, a.ID,
			TransferRequest{FromAccountNumber: "SYS-CLEARING-USD", ToAccountID: a.ID, Amount: 700, Currency: "USD", Metadata: md}))
		ev.SetSource(source)
		return ev
	}
	for _, kind := range events.TransferKinds {
		if r := e.deliver(request(testenv.IntegratorSource, kind)); r.Code != 200 || !strings.Contains(r.Body.String(), `"parked":1`) {
			t.Errorf("an integrator's transfer of kind %s: %d %s", kind, r.Code, r.Body)
		}
	}
	if got := e.get(a.ID); got.Balance != 0 {
		t.Fatalf("an integrator's claimed kinds moved money: balance %d", got.Balance)
	}
	var parked int
	if err := e.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE type = $1 AND error LIKE '%metadata/kind%'`,
		events.TypeTransactionRequested).Scan(&parked); err != nil {
		t.Fatal(err)
	}
	if parked != len(events.TransferKinds) {
		t.Errorf("%d requests parked naming metadata/kind, want %d", parked, len(events.TransferKinds))
	}
	// An integrator's plain transfer and capture-payment's capture post.
	plain := request(testenv.IntegratorSource, "top-up")
	if r := e.deliver(plain, request(events.Source("capture-payment"), events.KindPaymentCapture)); r.Code != 200 ||
		strings.Contains(r.Body.String(), `"parked":1`) {
		t.Fatalf("allowed requests: %d %s", r.Code, r.Body)
	}
	if got := e.get(a.ID); got.Balance != 1_400 {
		t.Fatalf("balance %d, want 1400", got.Balance)
	}
	checkLedger(t, e.d)
}

// A transaction.requested naming a transfer_id decides a transfer the
// ledger accepted with 202; only the ledger's own event may (it names
// the transfer it stored). Any source's was taken at its word: an
// integrator's event naming a customer's pending transfer and two other
// accounts made the group commit look the transfer's accounts up among
// those it had locked, find none, and panic, so the delivery failed
// (5xx, retried without end) and so did every transfer decided in the
// same group. Such an event is parked and the transfer stays pending
// until its own event; a malformed one under the ledger's own name is
// parked too.
func TestOnlyTheLedgerDecidesATransferItAccepted(t *testing.T) {
	e := newEnv(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	a, b := e.account(alice, "USD"), e.account(alice, "USD")
	c, d := e.account(bob, "USD"), e.account(bob, "USD")
	e.fund(a, 500)
	e.fund(c, 500)
	r := e.transfer(alice, a, b, 200, "Prefer", "respond-async")
	if r.Code != 202 {
		t.Fatalf("async: %d %s", r.Code, r.Body)
	}
	var tr Transfer
	r.json(t, &tr)
	decide := func(source string, from, to Account) events.Event {
		ev := events.Must(events.New(context.Background(), "process-transaction", events.TypeTransactionRequested, from.ID,
			events.TransactionRequested{TransferRequest: events.TransferRequest{FromAccountID: from.ID, ToAccountID: to.ID,
				Amount: 1, Currency: "USD"}, TransferID: tr.ID}))
		ev.SetSource(source)
		return ev
	}
	for _, tc := range []struct {
		name string
		ev   events.Event
	}{
		{"an integrator's, naming other accounts", decide(testenv.IntegratorSource, c, d)},
		{"an integrator's, naming its accounts", decide(testenv.IntegratorSource, a, b)},
		{"capture-payment's", decide(events.Source("capture-payment"), a, b)},
		{"the ledger's own, naming other accounts", decide(events.Source("process-transaction"), c, d)},
	} {
		if r := e.deliver(tc.ev); r.Code != 200 || !strings.Contains(r.Body.String(), `"parked":1`) {
			t.Errorf("%s: %d %s", tc.name, r.Code, r.Body)
		}
		if got := e.do("GET", "/transfers/"+tr.ID, alice, auth.RoleCustomer, nil); !strings.Contains(got.Body.String(), `"status":"pending"`) {
			t.Fatalf("after %s: %s", tc.name, got.Body)
		}
	}
	for _, acct := range []Account{a, b, c, d} {
		if got, want := e.get(acct.ID).Balance, map[string]int64{a.ID: 500, c.ID: 500}[acct.ID]; got != want {
			t.Errorf("account %s: balance %d, want %d", acct.ID, got, want)
		}
	}
	// The ledger's own event decides it.
	if r := e.deliver(e.kafkaEvents(events.TypeTransactionRequested, a.ID, 1)[0]); r.Code != 200 || strings.Contains(r.Body.String(), `"parked":1`) {
		t.Fatalf("the ledger's event: %d %s", r.Code, r.Body)
	}
	if got := e.get(b.ID); got.Balance != 200 {
		t.Fatalf("b balance %d, want 200", got.Balance)
	}
	checkLedger(t, e.d)
}
