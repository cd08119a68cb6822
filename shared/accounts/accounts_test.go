package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func event(t *testing.T, source, typ string, f Facts) events.Event {
	t.Helper()
	ev, err := events.New(context.Background(), source, typ, f.ID, f)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// deliver applies ev as the receiver would: in its own transaction.
func deliver(t *testing.T, d *Directory, ev events.Event) error {
	t.Helper()
	return postgres.Tx(context.Background(), d.pool, func(tx pgx.Tx) error { return d.apply(context.Background(), tx, ev) })
}

func code(err error) problem.Code {
	var pe *problem.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestReadModelKeepsTheNewestVersionOfEachAccount(t *testing.T) {
	d := New(testenv.Pool(t), "invoice_accounts", nil)
	ctx := context.Background()
	acc := Facts{ID: uuid.NewString(), UserID: uuid.NewString(), Currency: "usd", Status: Active, Version: 1}

	if _, err := d.Lookup(ctx, acc.ID); code(err) != problem.NotFound {
		t.Fatalf("unknown account without a source: %v, want not_found", err)
	}
	created := event(t, Owner, TypeCreated, acc)
	for i := 0; i < 2; i++ { // the same event twice
		if err := deliver(t, d, created); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.Lookup(ctx, acc.ID)
	if err != nil || got.UserID != acc.UserID || got.Currency != "USD" || got.Status != Active {
		t.Fatalf("after account.created: %+v, %v", got, err)
	}

	frozen := acc
	frozen.Status, frozen.Version = Frozen, 2
	if err := deliver(t, d, event(t, Owner, TypeUpdated, frozen)); err != nil {
		t.Fatal(err)
	}
	// An older version arriving late changes nothing.
	if err := deliver(t, d, created); err != nil {
		t.Fatal(err)
	}
	got, _ = d.Lookup(ctx, acc.ID)
	if got.Status != Frozen || got.Version != 2 {
		t.Fatalf("after a late account.created: %+v, want frozen v2", got)
	}
	if err := got.Active(); code(err) != NotActive || problem.Common[NotActive].Status != http.StatusConflict {
		t.Fatalf("a frozen account: %v, want 409 account_not_active", err)
	}
}

func TestAccountFactsAreAcceptedOnlyFromProcessTransaction(t *testing.T) {
	d := New(testenv.Pool(t), "invoice_accounts", nil)
	acc := Facts{ID: uuid.NewString(), UserID: uuid.NewString(), Currency: "USD", Status: Active, Version: 1}
	err := deliver(t, d, event(t, "capture-payment", TypeCreated, acc))
	if !events.IsPermanent(err) {
		t.Fatalf("an account event from another source: %v, want a permanent error (parked)", err)
	}
	if _, ok, _ := d.Get(context.Background(), nil, acc.ID); ok {
		t.Fatal("the forged account was stored")
	}
	bad := acc
	bad.UserID = "nobody"
	if err := deliver(t, d, event(t, Owner, TypeCreated, bad)); !events.IsPermanent(err) {
		t.Fatalf("an account event without a user id: %v, want permanent", err)
	}
}

func TestUnknownAccountIsReadThroughOnceWithTheServiceToken(t *testing.T) {
	owner := uuid.NewString()
	known := uuid.NewString()
	var calls atomic.Int32
	ledger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer svc-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		id := strings.TrimPrefix(r.URL.Path, "/function/process-transaction/accounts/")
		if id != known {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "user_id": owner, "currency": "EUR", "status": "active",
			"version": 1, "balance": 0, "account_number": "ACC-1"})
	}))
	defer ledger.Close()
	src := Config{LedgerURL: ledger.URL + "/function/process-transaction", ServiceToken: "svc-token"}.Source()
	d := New(testenv.Pool(t), "invoice_accounts", src)
	ctx := context.Background()

	cust := auth.Principal{Subject: owner, Role: auth.RoleCustomer}
	for i := 0; i < 3; i++ {
		f, err := d.For(ctx, cust, strings.ToUpper(known))
		if err != nil || f.Currency != "EUR" || f.UserID != owner {
			t.Fatalf("read-through: %+v, %v", f, err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("process-transaction was asked %d times, want once (the answer is kept)", n)
	}
	other := auth.Principal{Subject: uuid.NewString(), Role: auth.RoleCustomer}
	if _, err := d.For(ctx, other, known); code(err) != problem.NotFound {
		t.Fatalf("another customer: %v, want not_found", err)
	}
	if _, err := d.For(ctx, auth.Principal{Subject: uuid.NewString(), Role: auth.RoleService}, known); err != nil {
		t.Fatalf("a service caller: %v", err)
	}
	if _, err := d.Lookup(ctx, uuid.NewString()); code(err) != problem.NotFound {
		t.Fatalf("an account process-transaction does not know: %v, want not_found", err)
	}
	if _, err := d.Lookup(ctx, "not-a-uuid"); code(err) != problem.NotFound {
		t.Fatalf("a malformed id: %v, want not_found", err)
	}
	ledger.Close()
	if _, err := d.Lookup(ctx, uuid.NewString()); code(err) != problem.Unavailable {
		t.Fatalf("process-transaction down: %v, want unavailable (retry), never a guess", err)
	}
}

func TestCheckUserAndCurrencyNameTheField(t *testing.T) {
	f := Facts{ID: uuid.NewString(), UserID: uuid.NewString(), Currency: "USD", Status: Active}
	var v problem.Validator
	f.CheckUser(&v, "user_id", "")
	f.CheckUser(&v, "user_id", strings.ToUpper(f.UserID))
	f.CheckCurrency(&v, "currency", "usd")
	if err := v.Err(); err != nil {
		t.Fatalf("the owner and the currency: %v", err)
	}
	f.CheckUser(&v, "user_id", uuid.NewString())
	f.CheckCurrency(&v, "currency", "EUR")
	pe := problem.From(v.Err())
	if pe.Code != problem.ValidationFailed || len(pe.Errors) != 2 || pe.Errors[0].Pointer != "#/user_id" || pe.Errors[1].Pointer != "#/currency" {
		t.Fatalf("got %+v", pe)
	}
}

// TestKnownAnswersManyAccountsInOneQuery: the facts of every stored
// account named (however its id is spelled), none of the others, and no
// read-through for an unknown one.
func TestKnownAnswersManyAccountsInOneQuery(t *testing.T) {
	src := sourceFunc(func(context.Context, string) (Facts, error) {
		t.Error("Known read through to the source")
		return Facts{}, ErrUnknown
	})
	d := New(testenv.Pool(t), "invoice_accounts", src)
	ctx := context.Background()
	a := Facts{ID: uuid.NewString(), UserID: uuid.NewString(), Currency: "USD", Status: Active, Version: 1}
	b := Facts{ID: uuid.NewString(), UserID: uuid.NewString(), Currency: "EUR", Status: Frozen, Version: 3}
	for _, f := range []Facts{a, b} {
		if _, err := d.Put(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	unknown := uuid.NewString()
	got, err := d.Known(ctx, []string{strings.ToUpper(a.ID), b.ID, unknown, "not-a-uuid", a.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[a.ID] != a || got[b.ID] != b {
		t.Fatalf("Known = %+v, want %s and %s", got, a.ID, b.ID)
	}
	if got, err := d.Known(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("Known(nil) = %v, %v", got, err)
	}
}

type sourceFunc func(context.Context, string) (Facts, error)

func (f sourceFunc) Account(ctx context.Context, id string) (Facts, error) { return f(ctx, id) }

// An invoice or payment on a frozen account answered 409
// {"status":409,…,"status":"frozen"}: the account's status as an extension
// named like RFC 9457's own status member, so a JSON parser (the last
// member wins) read the problem's status as "frozen". The account's status
// is account_status; the problem names status once.
func TestNotActiveNamesTheHTTPStatusOnce(t *testing.T) {
	f := Facts{ID: uuid.NewString(), UserID: uuid.NewString(), Currency: "USD", Status: Frozen, Version: 2}
	rec := httptest.NewRecorder()
	problem.Write(rec, httptest.NewRequest("POST", "/invoices", nil), f.Active())
	if n := strings.Count(rec.Body.String(), `"status":`); rec.Code != http.StatusConflict || n != 1 {
		t.Fatalf("%d, status named %d times: %s", rec.Code, n, rec.Body)
	}
	var d struct {
		Status        int    `json:"status"`
		AccountID     string `json:"account_id"`
		AccountStatus string `json:"account_status"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || d.Status != 409 || d.AccountID != f.ID || d.AccountStatus != Frozen {
		t.Fatalf("%+v %v: %s", d, err, rec.Body)
	}
}
