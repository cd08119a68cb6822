package main

import (
	"bytes"
	"context"
	"encoding/json"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/billfn/billfn/functions/process-transaction/api"
	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The ledger's resources, as these black-box tests read them.
type (
	Account         = ledger.Account
	Transfer        = ledger.Transfer
	TransferRequest = ledger.TransferRequest
)

// env is process-transaction served over its real runtime on real services.
type env struct {
	t     testing.TB
	d     *platform.Deps
	kit   *testenv.Kit
	s     *api.Service
	h     http.Handler
	clock *testenv.Clock
	admin string
}

// newEnv serves the function; committers > 1 runs concurrent group commits
// (as several replicas of the function would).
func newEnv(t testing.TB, committers ...int) *env {
	t.Helper()
	d, kit := testenv.Platform(t, "process-transaction")
	c := testenv.NewClock(time.Now())
	s := api.New(d, c.Now)
	if len(committers) > 0 {
		s.Committer().Workers = committers[0]
	}
	s.Start()
	cfg := server.Config{MaxBodyBytes: 1 << 20, ExecTimeout: config.Duration(10 * time.Second)}
	return &env{t: t, d: d, kit: kit, s: s, h: server.New(cfg, d.App(s.Handler())).Handler(), clock: c, admin: uuid.NewString()}
}

type resp struct {
	*httptest.ResponseRecorder
}

func (r resp) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (r resp) code() string {
	var d struct{ Code string }
	_ = json.Unmarshal(r.Body.Bytes(), &d)
	return d.Code
}

// do sends a request as sub with role; hdr is pairs of header name, value.
func (e *env) do(method, path, sub string, role auth.Role, body any, hdr ...string) resp {
	e.t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if sub != "" {
		e.kit.Authorize(e.t, req, sub, role)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return resp{rec}
}

func key() string { return uuid.NewString() }

// account opens an account for user in currency and returns it.
func (e *env) account(user, currency string) Account {
	e.t.Helper()
	r := e.do("POST", "/accounts", user, auth.RoleCustomer, map[string]any{"currency": currency})
	if r.Code != 201 {
		e.t.Fatalf("create account: %d %s", r.Code, r.Body)
	}
	var a Account
	r.json(e.t, &a)
	return a
}

// fund moves amount from the currency's external system account to a.
func (e *env) fund(a Account, amount int64) {
	e.t.Helper()
	r := e.do("POST", "/transfers", e.admin, auth.RoleAdmin, map[string]any{
		"from_account_number": "SYS-EXTERNAL-" + a.Currency, "to_account_id": a.ID, "amount": amount, "currency": a.Currency,
		"description": "top-up"}, "Idempotency-Key", key())
	if r.Code != 201 {
		e.t.Fatalf("fund: %d %s", r.Code, r.Body)
	}
}

func (e *env) transfer(user string, from, to Account, amount int64, extra ...string) resp {
	e.t.Helper()
	body := map[string]any{"from_account_id": from.ID, "to_account_id": to.ID, "amount": amount, "currency": from.Currency}
	hdr := append([]string{"Idempotency-Key", key()}, extra...)
	return e.do("POST", "/transfers", user, auth.RoleCustomer, body, hdr...)
}

// hold places a hold of amount from → to as user (a customer), and fails
// the test unless it is held.
func (e *env) hold(user string, from, to Account, amount int64) Transfer {
	e.t.Helper()
	r := e.do("POST", "/transfers", user, auth.RoleCustomer, map[string]any{"from_account_id": from.ID, "to_account_id": to.ID,
		"amount": amount, "currency": from.Currency, "pending": true}, "Idempotency-Key", key())
	var h Transfer
	r.json(e.t, &h)
	if r.Code != 201 || h.Status != ledger.TransferHeld {
		e.t.Fatalf("hold: %d %s", r.Code, r.Body)
	}
	return h
}

func (e *env) get(id string) Account {
	e.t.Helper()
	r := e.do("GET", "/accounts/"+id, e.admin, auth.RoleAdmin, nil)
	if r.Code != 200 {
		e.t.Fatalf("get account: %d %s", r.Code, r.Body)
	}
	var a Account
	r.json(e.t, &a)
	return a
}

// deliver posts events to the function's event endpoint, signed as the
// kafka-trigger signs them.
func (e *env) deliver(evs ...events.Event) resp {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, e.kit.Delivery(e.t, evs...))
	return resp{rec}
}

// kafkaEvents waits until Kafka holds want events of typ about subject
// (the outbox publishes them right after each commit) and returns them.
func (e *env) kafkaEvents(typ, subject string, want int) []events.Event {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kit.Brokers...), kgo.ConsumeTopics(events.TopicTransaction, events.TopicUser),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []events.Event
	for len(out) < want && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			ev, err := events.Unmarshal(rec.Value)
			if err != nil {
				e.t.Errorf("record is not a CloudEvent: %v", err)
				return
			}
			if ev.Type() == typ && (subject == "" || ev.Subject() == subject) {
				out = append(out, ev)
			}
		})
	}
	if len(out) < want {
		e.t.Fatalf("%d %s events about %s reached Kafka, want %d", len(out), typ, subject, want)
	}
	return out
}

// checkLedger asserts the ledger invariants over the whole database.
func checkLedger(t testing.TB, d *platform.Deps) {
	t.Helper()
	ctx := context.Background()
	rows, err := d.Pool.Query(ctx, `SELECT currency, sum(balance) FROM accounts GROUP BY currency HAVING sum(balance) <> 0`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cur string
		var sum int64
		_ = rows.Scan(&cur, &sum)
		t.Errorf("balances in %s sum to %d, want 0", cur, sum)
	}
	rows.Close()
	var n int
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM accounts a LEFT JOIN
		(SELECT account_id, sum(amount) s FROM postings GROUP BY account_id) p ON p.account_id = a.id
		WHERE a.balance <> coalesce(p.s, 0)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d accounts whose balance differs from the sum of their postings", n)
	}
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM accounts a LEFT JOIN
		(SELECT from_account_id, sum(amount) s FROM transfers WHERE status = 'held' GROUP BY 1) h ON h.from_account_id = a.id
		WHERE a.held <> coalesce(h.s, 0)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d accounts whose held amount differs from their open holds", n)
	}
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE NOT allow_negative AND balance - held < 0`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d accounts overdrawn", n)
	}
	if err := d.Pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM transfers t WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.from_account_id)
		                                     OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = t.to_account_id))
		+ (SELECT count(*) FROM postings p WHERE NOT EXISTS (SELECT 1 FROM transfers t WHERE t.id = p.transfer_id)
		                                    OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id))`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d transfers or postings reference a missing row", n)
	}
	if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT transfer_id FROM postings GROUP BY transfer_id HAVING sum(amount) <> 0) x`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d transfers whose postings do not balance", n)
	}
}

func newRand(seed uint64) *mrand.Rand { return mrand.New(mrand.NewPCG(seed, 0x9e3779b97f4a7c15)) }
