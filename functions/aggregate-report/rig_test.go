package main

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

	"github.com/billfn/billfn/functions/aggregate-report/api"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/redis"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// rig is aggregate-report served over httptest against real Postgres,
// Redis and kfake, with a clock the test moves.
type rig struct {
	t   testing.TB
	d   *platform.Deps
	kit *testenv.Kit
	svc *api.API
	h   http.Handler

	mu  sync.Mutex
	now time.Time
}

// newRig gives the test a database of its own (rollups are global, so
// tests sharing one would see each other's figures).
func newRig(t testing.TB) *rig {
	t.Helper()
	url := testenv.FreshDatabase(t, true)
	return rigOn(t, url)
}

func rigOn(t testing.TB, url string) *rig {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	_, brokers := testenv.Kafka(t)
	cfg := platform.Config{
		Postgres:  postgres.Config{URL: url, MaxConns: 20},
		Redis:     redis.Config{URL: "redis://" + rdb.Options().Addr + "/0", Prefix: prefix},
		Auth:      testenv.AuthConfig(),
		Kafka:     outbox.Config{Brokers: brokers},
		EventKeys: testenv.EventKey,
		// Issue 15: the function's origin key and every trusted source's.
		OriginPublicKeys: testenv.OriginPublicKeys(), OriginPrivateKey: testenv.OriginKeyPEM("aggregate-report"),
	}
	d, err := platform.OpenWith(context.Background(), "aggregate-report", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return finish(t, d, &testenv.Kit{Function: d.Name, Signer: testenv.NewSigner(), Brokers: brokers, Origins: d.Events.Origins})
}

func finish(t testing.TB, d *platform.Deps, kit *testenv.Kit) *rig {
	g := &rig{t: t, d: d, kit: kit, now: time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)}
	g.svc = api.New(d, g.clock)
	g.h = server.New(server.Config{MaxBodyBytes: 8 << 20}, d.App(g.svc.Routes())).Handler()
	return g
}

func (g *rig) clock() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.now
}

func (g *rig) setNow(t time.Time) {
	g.mu.Lock()
	g.now = t
	g.mu.Unlock()
}

// deliver posts events as the kafka-trigger does: one event structured, more
// as a signed CloudEvents batch.
func (g *rig) deliver(evs ...events.Event) events.Result {
	g.t.Helper()
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Delivery(g.t, evs...))
	if rec.Code != http.StatusOK {
		g.t.Fatalf("delivery answered %d: %s", rec.Code, rec.Body)
	}
	var res events.Result
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		g.t.Fatal(err)
	}
	return res
}

// caller is who makes a request.
type caller struct {
	sub  string
	role auth.Role
}

var (
	asAdmin   = caller{"6f1c7e0a-0000-4000-8000-000000000001", auth.RoleAdmin}
	asService = caller{"6f1c7e0a-0000-4000-8000-000000000002", auth.RoleService}
	anonymous = caller{}
)

func asCustomer(user string) caller { return caller{user, auth.RoleCustomer} }

func (g *rig) request(method, path string, who caller, body []byte, hdr ...string) *httptest.ResponseRecorder {
	g.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if who.role != "" {
		g.kit.Authorize(g.t, req, who.sub, who.role)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	return rec
}

// getJSON fetches path as who and decodes a 200 answer into v.
func (g *rig) getJSON(path string, who caller, v any) {
	g.t.Helper()
	rec := g.request(http.MethodGet, path, who, nil)
	if rec.Code != http.StatusOK {
		g.t.Fatalf("GET %s = %d: %s", path, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		g.t.Fatalf("GET %s: %v\n%s", path, err, rec.Body)
	}
}

// ---- event fixtures (the contracts of docs/events.md) ----

func newEvent(t testing.TB, source, typ, subject string, at time.Time, data any) events.Event {
	t.Helper()
	ev, err := events.New(context.Background(), source, typ, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	ev.SetTime(at)
	return ev
}

func id() string { return uuid.NewString() }

type transferOpt func(m map[string]any)

func withMeta(kind, paymentID, gateway string) transferOpt {
	return func(m map[string]any) {
		m["metadata"] = map[string]any{"kind": kind, "payment_id": paymentID, "gateway": gateway}
		m["reference_id"] = paymentID + ":" + kind + ":1"
	}
}

func transfer(t testing.TB, at time.Time, from, to string, amount int64, cur, status string, opts ...transferOpt) events.Event {
	t.Helper()
	tid := id()
	m := map[string]any{"id": tid, "from_account_id": from, "to_account_id": to, "amount": amount, "currency": cur,
		"status": status, "reject_reason": nil, "description": "", "reference_id": "", "metadata": map[string]any{},
		"pending": false, "captured_amount": 0, "expires_at": nil, "created_at": at, "posted_at": at}
	typ := "billfn.transaction.posted"
	if status != "posted" {
		typ = "billfn.transaction.rejected"
		m["reject_reason"] = status
		m["status"] = "rejected"
		m["posted_at"] = nil
	}
	for _, o := range opts {
		o(m)
	}
	return newEvent(t, "process-transaction", typ, tid, at, m)
}

func hold(t testing.TB, at time.Time, typ, from string, amount, captured int64, cur string) events.Event {
	hid := id()
	return newEvent(t, "process-transaction", typ, hid, at, map[string]any{"id": hid, "from_account_id": from,
		"to_account_id": id(), "amount": amount, "currency": cur, "status": "held", "pending": true, "captured_amount": captured})
}

func account(t testing.TB, at time.Time, accountID, user, number, cur string) events.Event {
	return newEvent(t, "process-transaction", "billfn.account.created", accountID, at, map[string]any{
		"id": accountID, "user_id": user, "account_number": number, "currency": cur, "status": "active", "balance": 0,
		"available": 0, "held": 0, "allow_negative": strings.HasPrefix(number, "SYS-"), "version": 1, "created_at": at, "updated_at": at})
}

type invoiceFields struct {
	id, account, cur, status, due string
	total, paid, dueAmount        int64
	finalizedAt                   *time.Time
}

func invoice(t testing.TB, at time.Time, verb string, f invoiceFields) events.Event {
	m := map[string]any{"invoice_id": f.id, "number": "INV-2026-000001", "account_id": f.account, "subscription_id": nil,
		"currency": f.cur, "subtotal": f.total, "discount": 0, "tax": 0, "total": f.total, "amount_paid": f.paid,
		"amount_due": f.dueAmount, "status": f.status, "due_date": f.due, "collection_method": "send_invoice",
		"finalized_at": f.finalizedAt, "paid_at": nil}
	return newEvent(t, "generate-invoice", "billfn.invoice."+verb, f.account, at, m)
}

func subscription(t testing.TB, at time.Time, verb, subID, accountID, status string, mrr int64, cur string) events.Event {
	return newEvent(t, "generate-invoice", "billfn.subscription."+verb, accountID, at, map[string]any{
		"subscription_id": subID, "account_id": accountID, "status": status,
		"plan": map[string]any{"name": "Pro", "amount": mrr, "currency": cur, "interval": "month", "interval_count": 1},
		"mrr":  mrr, "currency": cur, "current_period_start": at, "current_period_end": at.AddDate(0, 1, 0), "canceled_at": nil})
}

type paymentFields struct {
	id, account, invoice, cur, gateway, decline string
	amount, captured                            int64
}

func payment(t testing.TB, at time.Time, verb string, f paymentFields) events.Event {
	m := map[string]any{"payment_id": f.id, "account_id": f.account, "invoice_id": nil, "amount": f.amount,
		"currency": f.cur, "status": "succeeded", "gateway": f.gateway, "gateway_payment_id": "pi_" + f.id[:8],
		"capture_method": "automatic", "amount_capturable": 0, "amount_captured": f.captured, "amount_refunded": 0,
		"created_at": at, "updated_at": at}
	if f.invoice != "" {
		m["invoice_id"] = f.invoice
	}
	if verb == "failed" {
		m["status"] = "failed"
		m["decline_code"] = f.decline
		m["failure_reason"] = "declined"
		m["attempt"] = 1
	}
	return newEvent(t, "capture-payment", "billfn.payment."+verb, f.id, at, m)
}

func refund(t testing.TB, at time.Time, verb, refundID, paymentID, accountID string, amount int64, cur, gateway string) events.Event {
	return newEvent(t, "capture-payment", "billfn.refund."+verb, paymentID, at, map[string]any{
		"refund_id": refundID, "payment_id": paymentID, "account_id": accountID, "invoice_id": nil,
		"amount": amount, "currency": cur, "gateway": gateway, "status": verb, "reason": "requested_by_customer"})
}

func dispute(t testing.TB, at time.Time, gateway, objectID, paymentID string, amount int64, cur string) events.Event {
	return newEvent(t, "handle-webhook", "billfn.payment.gateway_updated", paymentID, at, map[string]any{
		"gateway": gateway, "gateway_event_id": "evt_" + id()[:8], "gateway_event_type": "charge.dispute.created",
		"object_type": "dispute", "gateway_object_id": objectID, "gateway_payment_id": "pi_x", "payment_id": paymentID,
		"status": "disputed", "amount": amount, "amount_capturable": 0, "amount_received": amount, "amount_refunded": 0,
		"currency": cur, "failure_code": nil, "failure_message": nil, "refund_id": nil, "occurred_at": at})
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// unapplied is generate-invoice's billfn.invoice.payment_unapplied: money of
// a payment its invoice did not need, credited to the account.
func unapplied(t testing.TB, source string, at time.Time, paymentID, invoiceID, accountID string, amount int64, cur, reason string) events.Event {
	return newEvent(t, source, "billfn.invoice.payment_unapplied", paymentID, at, map[string]any{
		"payment_id": paymentID, "invoice_id": invoiceID, "account_id": accountID, "user_id": userA, "amount": amount,
		"currency": cur, "reason": reason, "invoice_status": "paid", "invoice_total": 5000, "invoice_amount_paid": 5000,
		"invoice_currency": "USD"})
}
