package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// rig is one generate-invoice over real Postgres, Redis and kfake.
type rig struct {
	t     testing.TB
	d     *platform.Deps
	kit   *testenv.Kit
	s     *Service
	h     http.Handler
	clock *testenv.Clock
	admin string
	// ledger plays process-transaction's GET /accounts/{id} for the
	// read-through.
	ledger *fakeLedger

	consumer  *kgo.Client
	published []events.Event
	seen      map[int32]int64
}

func newRig(t testing.TB) *rig {
	return newRigWith(t, DefaultConfig())
}

func newRigWith(t testing.TB, cfg Config) *rig {
	d, kit := testenv.Platform(t, FunctionName)
	c := testenv.NewClock(time.Date(2026, 3, 10, 9, 30, 0, 0, time.UTC))
	// Every rig numbers its invoices in a series of its own: tests share the
	// package database.
	if cfg.NumberPrefix == "INV" {
		cfg.NumberPrefix = "T" + strings.ToUpper(strings.ReplaceAll(uuid.NewString(), "-", "")[:8])
	}
	ledger := newFakeLedger(t)
	if cfg.Accounts == (accounts.Config{}) {
		cfg.Accounts = accounts.Config{LedgerURL: ledger.URL, ServiceToken: ledgerToken}
	}
	s := New(d, cfg, c.Now)
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(s.Routes())).Handler()
	// Tests share the package database and run one after another: a test
	// leaves no due work behind for the next one's ticks (whose clock may be
	// years ahead).
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = d.Pool.Exec(ctx, `UPDATE subscriptions SET status = 'canceled', next_billing_at = NULL WHERE status <> 'canceled'`)
		_, _ = d.Pool.Exec(ctx, `UPDATE invoices SET status = 'void', next_dunning_at = NULL WHERE status = 'open'`)
	})
	return &rig{t: t, d: d, kit: kit, s: s, h: h, clock: c, admin: uuid.NewString(), ledger: ledger}
}

type call struct {
	method, path string
	body         any // string, []byte or a value encoded as JSON
	sub          string
	role         auth.Role
	key          string // Idempotency-Key; a fresh one for writes when empty
	header       http.Header
}

func (g *rig) call(c call) *httptest.ResponseRecorder {
	g.t.Helper()
	var rd *bytes.Reader
	switch b := c.body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			g.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(c.method, c.path, rd)
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range c.header {
		for _, v := range vs {
			req.Header.Set(k, v)
		}
	}
	if c.method != http.MethodGet {
		key := c.key
		if key == "" {
			key = uuid.NewString()
		}
		req.Header.Set("Idempotency-Key", key)
	}
	if c.sub != "" {
		g.kit.Authorize(g.t, req, c.sub, c.role)
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	return rec
}

// as* call as an admin, a service or a customer.
func (g *rig) asAdmin(method, path string, body any) *httptest.ResponseRecorder {
	g.t.Helper()
	return g.call(call{method: method, path: path, body: body, sub: g.admin, role: auth.RoleAdmin})
}

func (g *rig) asCustomer(user, method, path string, body any) *httptest.ResponseRecorder {
	g.t.Helper()
	return g.call(call{method: method, path: path, body: body, sub: user, role: auth.RoleCustomer})
}

func must(t testing.TB, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
	}
}

func decode[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %T: %v: %s", v, err, rec.Body)
	}
	return v
}

// problemOf checks a problem response's status and code.
func problemOf(t testing.TB, rec *httptest.ResponseRecorder, status int, code string) map[string]any {
	t.Helper()
	if rec.Code != status || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
		t.Fatalf("status %d (%s), want %d problem %s: %s", rec.Code, rec.Header().Get("Content-Type"), status, code, rec.Body)
	}
	doc := decode[map[string]any](t, rec)
	if doc["code"] != code {
		t.Fatalf("code %v, want %s: %s", doc["code"], code, rec.Body)
	}
	return doc
}

// taxRate creates a tax rate through the API.
func (g *rig) taxRate(name, pct string, inclusive, compound bool) string {
	g.t.Helper()
	rec := g.asAdmin("POST", "/tax-rates", map[string]any{"display_name": name, "percentage": pct,
		"inclusive": inclusive, "compound": compound, "jurisdiction": "Testland"})
	must(g.t, rec, 201)
	return decode[invoicing.TaxRate](g.t, rec).ID
}

// ledgerAccounts are the accounts the fake process-transaction knows, by
// id: the tests' accounts. invoiceBody and subBody add theirs (owned by
// the user they name, in USD) unless the test added the account itself.
var ledgerAccounts sync.Map // id → accounts.Facts

const ledgerToken = "test-service-token"

// knownAccount makes account (of user, in currency) known to the fake
// ledger, unless it already is.
func knownAccount(account, user, currency string) {
	if user == "" || !ids.Valid(account) {
		return
	}
	ledgerAccounts.LoadOrStore(account, accounts.Facts{ID: account, UserID: user, Currency: currency, Status: accounts.Active, Version: 1})
}

// fakeLedger serves GET /accounts/{id} as process-transaction does, for a
// service token only, and counts the calls.
type fakeLedger = testenv.Owner

func newFakeLedger(t testing.TB) *fakeLedger {
	return testenv.NewOwner(t, ledgerToken, func(collection, id string) (any, bool) {
		if collection != "accounts" {
			return nil, false
		}
		return ledgerAccounts.Load(id)
	})
}

// inCurrency bills body's account in cur: the body names cur and the fake
// ledger's account (created by invoiceBody for body's user) is in cur.
func inCurrency(body map[string]any, cur string) map[string]any {
	body["currency"] = cur
	account, user := body["account_id"].(string), body["user_id"].(string)
	ledgerAccounts.Store(account, accounts.Facts{ID: account, UserID: user, Currency: strings.ToUpper(cur), Status: accounts.Active, Version: 1})
	return body
}

// account makes a fresh account of user known to the fake ledger (the
// read model learns it on first use, by the read-through) and returns it.
func (g *rig) account(user, currency string) string {
	id := uuid.NewString()
	knownAccount(id, user, currency)
	return id
}

// invoiceBody is a typical POST /invoices body for user and account; the
// account is known to the fake ledger, owned by user, in USD (unless the
// test made it known otherwise).
func invoiceBody(user, account string, lines ...map[string]any) map[string]any {
	knownAccount(account, user, "USD")
	if len(lines) == 0 {
		lines = []map[string]any{{"description": "Consulting", "quantity": "2", "unit_amount": 1050}}
	}
	b := map[string]any{"account_id": account, "currency": "USD", "line_items": lines,
		"customer": map[string]any{"name": "Ada Lovelace", "email": "ada@example.com",
			"address": map[string]any{"line1": "12 Analytical Row", "city": "London", "postal_code": "N1 9GU", "country": "GB"}}}
	if user != "" {
		b["user_id"] = user
	}
	return b
}

// createInvoice creates an invoice for user as an admin and returns it.
func (g *rig) createInvoice(user string, body map[string]any) invoicing.Invoice {
	g.t.Helper()
	if body == nil {
		body = invoiceBody(user, uuid.NewString())
	}
	rec := g.asAdmin("POST", "/invoices", body)
	must(g.t, rec, 201)
	return decode[invoicing.Invoice](g.t, rec)
}

// events returns the events generate-invoice published to Kafka (kfake)
// about subject ("" for all), in publication order per key. It sweeps the
// outbox first, so everything committed so far is on Kafka.
func (g *rig) events(subject string) []events.Event {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := g.d.Publisher.Sweep(ctx); err != nil {
		g.t.Fatalf("outbox sweep: %v", err)
	}
	if g.consumer == nil {
		cl, err := kgo.NewClient(kgo.SeedBrokers(g.kit.Brokers...), kgo.ConsumeTopics(eventsTopic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
		if err != nil {
			g.t.Fatal(err)
		}
		g.t.Cleanup(cl.Close)
		g.consumer = cl
	}
	// Read until the consumer has caught up with every partition's end.
	for {
		ends := g.endOffsets(ctx)
		done := true
		for p, end := range ends {
			if g.seen[p] < end {
				done = false
			}
		}
		if done {
			break
		}
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fs := g.consumer.PollFetches(pctx)
		pcancel()
		if ctx.Err() != nil {
			g.t.Fatal("timed out reading billing-events")
		}
		fs.EachRecord(func(r *kgo.Record) {
			ev, err := events.Unmarshal(r.Value)
			if err != nil {
				g.t.Fatalf("a record that is not a CloudEvent: %v", err)
			}
			g.published = append(g.published, ev)
			if g.seen == nil {
				g.seen = map[int32]int64{}
			}
			g.seen[r.Partition] = r.Offset + 1
		})
	}
	var out []events.Event
	for _, ev := range g.published {
		if subject == "" || ev.Subject() == subject {
			out = append(out, ev)
		}
	}
	return out
}

const eventsTopic = "billing-events"

// endOffsets lists the end offset of every billing-events partition.
func (g *rig) endOffsets(ctx context.Context) map[int32]int64 {
	req := kmsg.NewPtrListOffsetsRequest()
	t := kmsg.NewListOffsetsRequestTopic()
	t.Topic = eventsTopic
	for p := int32(0); p < events.Topics[eventsTopic]; p++ {
		pt := kmsg.NewListOffsetsRequestTopicPartition()
		pt.Partition, pt.Timestamp = p, -1 // latest
		t.Partitions = append(t.Partitions, pt)
	}
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, g.consumer)
	if err != nil {
		g.t.Fatal(err)
	}
	ends := map[int32]int64{}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				g.t.Fatal(err)
			}
			ends[p.Partition] = p.Offset
		}
	}
	return ends
}

// eventData decodes the data of the last event of typ about subject.
func eventData[T any](g *rig, subject, typ string) T {
	g.t.Helper()
	var v T
	evs := g.events(subject)
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type() == typ {
			if err := json.Unmarshal(evs[i].Data(), &v); err != nil {
				g.t.Fatal(err)
			}
			return v
		}
	}
	g.t.Fatalf("no %s about %s among %v", typ, subject, types(evs))
	return v
}

func types(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = strings.TrimPrefix(e.Type(), "billfn.")
	}
	return out
}

// deliver posts events to the function as the kafka-trigger does (signed,
// structured mode) and returns the receiver's result.
func (g *rig) deliver(evs ...events.Event) events.Result {
	g.t.Helper()
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Delivery(g.t, evs...))
	must(g.t, rec, 200)
	return decode[events.Result](g.t, rec)
}

// tick runs the schedule tick as the kafka-trigger sends it (signed).
func (g *rig) tick() {
	g.t.Helper()
	g.s.d.Events.TickEvery = time.Nanosecond
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Tick())
	must(g.t, rec, 200)
}

// event builds an event from another function.
func event(t testing.TB, source, typ, subject string, data any) events.Event {
	t.Helper()
	ev, err := events.New(context.Background(), source, typ, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (g *rig) invoice(id string) invoicing.Invoice {
	g.t.Helper()
	rec := g.asAdmin("GET", "/invoices/"+id, nil)
	must(g.t, rec, 200)
	return decode[invoicing.Invoice](g.t, rec)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func configDuration(d time.Duration) config.Duration { return config.Duration(d) }

// day parses an RFC 3339 instant or a date, in UTC.
func day(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t, err = time.Parse("2006-01-02", s)
		if err != nil {
			panic(err)
		}
	}
	return t.UTC()
}
