package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/billfn/billfn/functions/capture-payment/gateway"
	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// rig is capture-payment served in-process against the real services.
type rig struct {
	t       testing.TB
	s       *service
	d       *platform.Deps
	kit     *testenv.Kit
	h       http.Handler
	clock   *testenv.Clock
	admin   string
	keySeq  atomic.Int64
	account string      // a USD account owned by admin
	ledger  *testLedger // answers the refunds' holds as process-transaction would
	// byCurrency are admin's accounts in other currencies (pay makes them).
	byCurrency map[string]string
}

// testConfig is the configuration the tests start from.
func testConfig() Config {
	return Config{
		Routes:               "*=sandbox",
		GatewayTimeout:       config.Duration(2 * time.Second),
		StripeRetries:        0,
		SandboxWebhookURL:    "http://127.0.0.1:1/unused",
		SandboxWebhookSecret: "sandbox-test-secret",
		SandboxWebhooks:      gateway.WebhooksOff,
		SandboxSettleDelay:   config.Duration(time.Hour),
		ReconcileAfter:       config.Duration(30 * time.Second),
		AuthorizationTTL:     config.Duration(7 * 24 * time.Hour),
	}
}

func newRig(t testing.TB, mutate ...func(*Config)) *rig {
	t.Helper()
	d, kit := testenv.Platform(t, name)
	return newRigOn(t, d, kit, mutate...)
}

// newRigOn is newRig on the dependencies d (testenv.Platform's, or the
// same opened elsewhere).
func newRigOn(t testing.TB, d *platform.Deps, kit *testenv.Kit, mutate ...func(*Config)) *rig {
	t.Helper()
	cfg := testConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	ledger := newTestLedger(t)
	if cfg.Accounts.LedgerURL == "" {
		cfg.Accounts.LedgerURL, cfg.Accounts.ServiceToken = ledger.srv.URL, "ledger-test-token"
	}
	c := testenv.NewClock(time.Now())
	s, err := newService(context.Background(), d, cfg, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(s.api.Handler())).Handler()
	g := &rig{t: t, s: s, d: d, kit: kit, h: h, clock: c, admin: uuid.NewString(), byCurrency: map[string]string{}, ledger: ledger}
	g.account = g.newAccount(g.admin, "USD")
	g.byCurrency["USD"] = g.account
	return g
}

// newAccount makes an active account of owner in currency known to the
// read model (as its billfn.account.created would) and returns its id.
func (g *rig) newAccount(owner, currency string) string {
	g.t.Helper()
	id := uuid.NewString()
	g.setAccount(accounts.Facts{ID: id, UserID: owner, Currency: currency, Status: accounts.Active, Version: 1})
	return id
}

// setAccount stores account facts in the read model.
func (g *rig) setAccount(f accounts.Facts) {
	g.t.Helper()
	if _, err := g.s.accounts.Put(context.Background(), f); err != nil {
		g.t.Fatalf("account %s: %v", f.ID, err)
	}
}

// accountIn is admin's account in currency (the rig's account for USD).
func (g *rig) accountIn(currency string) string {
	g.t.Helper()
	c := strings.ToUpper(currency)
	if id, ok := g.byCurrency[c]; ok {
		return id
	}
	id := g.newAccount(g.admin, c)
	g.byCurrency[c] = id
	return id
}

// saveMethodOn saves token as a card of account (admin's), its default
// payment method when asDefault.
func (g *rig) saveMethodOn(t *testing.T, account, token string, asDefault bool) payments.Method {
	t.Helper()
	return decode[payments.Method](t, g.do(req{method: "POST", path: "/accounts/" + account + "/payment-methods",
		body: map[string]any{"user_id": g.admin, "token": token, "brand": "visa", "last4": "4242", "exp_month": 12,
			"exp_year": 2030, "default": asDefault}}), http.StatusCreated)
}

// refusedPayment asks POST /payments to charge amount of currency to a
// card on admin's account in that currency (extra adds to the body) and
// checks that it is refused with a 422 problem of code before any
// write: no payment exists under the request's key.
func (g *rig) refusedPayment(t *testing.T, currency string, amount int64, code string, extra map[string]any) {
	t.Helper()
	key := "k-" + uuid.NewString()
	body := map[string]any{"account_id": g.accountIn(currency), "amount": amount, "currency": currency, "payment_method": "pm_card_visa", "confirm": true}
	maps.Copy(body, extra)
	if got := problemCode(t, g.do(req{method: "POST", path: "/payments", key: key, body: body}), 422); got != code {
		t.Fatalf("%s %d: %s, want %s", currency, amount, got, code)
	}
	if rec := g.do(req{method: "GET", path: "/payments/" + payments.DerivedID(payments.PaymentNS, name+":"+g.admin, key)}); rec.Code != http.StatusNotFound {
		t.Fatalf("%s %d: the refused payment was written: %d %s", currency, amount, rec.Code, rec.Body)
	}
}

// uncollected has capture-payment collect an invoice of due in currency
// that it must not charge (admin's account in currency, a default card):
// it checks that no gateway was asked, that the invoice's payment waits
// for a payment method with last_payment_error code, that one
// billfn.payment.failed tells generate-invoice why, and that a dunning
// retry charges nothing either. It returns the payment.
func (g *rig) uncollected(t *testing.T, currency string, due int64, code string) payments.Payment {
	t.Helper()
	account := g.accountIn(currency)
	g.saveMethodOn(t, account, "pm_card_visa", true)
	invoice := uuid.NewString()
	data := invoiceOpen(account, currency, invoice, due)
	if rec := g.deliver(event(t, "generate-invoice", events.TypeInvoiceFinalized, invoice, data)); rec.Code != 200 {
		t.Fatalf("delivery: %d %s", rec.Code, rec.Body)
	}
	p := g.get(payments.InvoicePaymentID(invoice))
	if _, attempts := g.charges(t, invoice); attempts != 0 {
		t.Fatalf("the gateway was asked to charge %s %d: %+v", currency, due, p)
	}
	if p.Status != payments.RequiresPaymentMethod || p.LastPaymentError == nil || p.LastPaymentError.Code != code {
		t.Fatalf("payment: %+v", p)
	}
	if failed := g.drain(events.TopicPayment, func(r record) bool {
		return r.Key == p.ID && r.Event.Type() == events.TypePaymentFailed
	}); len(failed) != 1 {
		t.Fatalf("%d billfn.payment.failed for the refused collection, want 1", len(failed))
	}
	data["attempt"] = 2
	if rec := g.deliver(event(t, "generate-invoice", events.TypeInvoicePaymentRetryRequested, invoice, data)); rec.Code != 200 {
		t.Fatalf("retry: %d %s", rec.Code, rec.Body)
	}
	if _, attempts := g.charges(t, invoice); attempts != 0 {
		t.Fatalf("the dunning retry asked the gateway to charge %s %d: %+v", currency, due, g.get(p.ID))
	}
	return p
}

// req is one HTTP call to the function.
type req struct {
	method, path string
	body         any
	sub          string
	role         auth.Role
	key          string // Idempotency-Key; "-" for none
	raw          []byte
}

func (g *rig) do(r req) *httptest.ResponseRecorder {
	g.t.Helper()
	var body io.Reader
	switch {
	case r.raw != nil:
		body = bytes.NewReader(r.raw)
	case r.body != nil:
		b, err := json.Marshal(r.body)
		if err != nil {
			g.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	hr := httptest.NewRequest(r.method, r.path, body)
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.role == "" {
		r.role = auth.RoleAdmin
	}
	if r.sub == "" {
		r.sub = g.admin
	}
	g.kit.Authorize(g.t, hr, r.sub, r.role)
	if r.method != http.MethodGet && r.key != "-" {
		if r.key == "" {
			r.key = "k-" + uuid.NewString()
		}
		hr.Header.Set("Idempotency-Key", r.key)
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, hr)
	return rec
}

// decode reads a JSON response into v, failing on an unexpected status.
func decode[T any](t testing.TB, rec *httptest.ResponseRecorder, status int) T {
	t.Helper()
	var v T
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	return v
}

// problemCode asserts a problem answer and returns its code.
func problemCode(t testing.TB, rec *httptest.ResponseRecorder, status int) string {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q: %s", ct, rec.Body)
	}
	var d struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &d)
	return d.Code
}

// pay creates a payment as an admin for the rig's account.
func (g *rig) pay(amount int64, currency, method, capture string, confirm bool, extra ...func(map[string]any)) payments.Payment {
	g.t.Helper()
	body := map[string]any{"account_id": g.accountIn(currency), "amount": amount, "currency": currency,
		"payment_method": method, "capture_method": capture, "confirm": confirm}
	for _, e := range extra {
		e(body)
	}
	return decode[payments.Payment](g.t, g.do(req{method: "POST", path: "/payments", body: body}), http.StatusCreated)
}

func (g *rig) get(id string) payments.Payment {
	g.t.Helper()
	return decode[payments.Payment](g.t, g.do(req{method: "GET", path: "/payments/" + id}), http.StatusOK)
}

// tick runs the schedule tick now.
func (g *rig) tick() {
	g.t.Helper()
	if err := g.s.api.Tick(context.Background()); err != nil {
		g.t.Fatalf("tick: %v", err)
	}
}

// record is one event read back from Kafka.
type record struct {
	Topic, Key string
	Event      events.Event
}

// consume reads topic from the start until want records matching keep
// arrived (or 10 s passed), publishing the outbox first.
func (g *rig) consume(topic string, want int, keep func(record) bool) []record {
	g.t.Helper()
	if _, err := g.d.Publisher.Sweep(context.Background()); err != nil {
		g.t.Fatalf("outbox sweep: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(g.kit.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		g.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []record
	for len(out) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			ev, err := events.Unmarshal(r.Value)
			if err != nil {
				g.t.Errorf("record is not a CloudEvent: %v", err)
				return
			}
			rec := record{Topic: r.Topic, Key: string(r.Key), Event: ev}
			if keep == nil || keep(rec) {
				out = append(out, rec)
			}
		})
	}
	return out
}

// drain reads every record on topic up to its current end (to count, and
// to prove an absence), publishing the outbox first.
func (g *rig) drain(topic string, keep func(record) bool) []record {
	g.t.Helper()
	if _, err := g.d.Publisher.Sweep(context.Background()); err != nil {
		g.t.Fatalf("outbox sweep: %v", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(g.kit.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		g.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ends := endOffsets(ctx, g.t, cl, topic)
	var out []record
	for len(ends) > 0 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 >= ends[r.Partition] {
				delete(ends, r.Partition)
			}
			ev, err := events.Unmarshal(r.Value)
			if err == nil && (keep == nil || keep(record{Topic: r.Topic, Key: string(r.Key), Event: ev})) {
				out = append(out, record{Topic: r.Topic, Key: string(r.Key), Event: ev})
			}
		})
	}
	if ctx.Err() != nil {
		g.t.Fatalf("drain %s: partitions %v not read to their end", topic, ends)
	}
	return out
}

// endOffsets returns the end offset of every non-empty partition of topic.
func endOffsets(ctx context.Context, t testing.TB, cl *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := int32(0); p < events.Topics[topic]; p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	ends := map[int32]int64{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("list offsets %s/%d: %v", topic, rp.Partition, err)
			}
			if rp.Offset > 0 {
				ends[rp.Partition] = rp.Offset
			}
		}
	}
	return ends
}

// forPayment keeps the records about payment id.
func forPayment(id string) func(record) bool {
	return func(r record) bool { return r.Key == id }
}

// deliver sends an event to the function's receiver, signed as the
// kafka-trigger signs it.
func (g *rig) deliver(ev events.Event) *httptest.ResponseRecorder {
	g.t.Helper()
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Delivery(g.t, ev))
	return rec
}

// stripe-mock, started once per test process on free loopback ports and
// killed with it.
var stripeMock struct {
	once sync.Once
	url  string
	err  error
}

// stripeMockURL returns the base URL of a running stripe-mock, building it
// with go install when absent. It fails the test loudly when it cannot
// start: the Stripe adapter is never left untested.
func stripeMockURL(t testing.TB) string {
	t.Helper()
	stripeMock.once.Do(func() { stripeMock.url, stripeMock.err = startStripeMock() })
	if stripeMock.err != nil {
		t.Fatalf("stripe-mock: %v", stripeMock.err)
	}
	return stripeMock.url
}

func startStripeMock() (string, error) {
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "stripe-mock")
	if _, err := os.Stat(bin); err != nil {
		out, err := exec.Command("go", "install", "github.com/stripe/stripe-mock@v0.203.0").CombinedOutput()
		if err != nil {
			return "", &startError{"go install github.com/stripe/stripe-mock@v0.203.0: " + err.Error() + "\n" + string(out)}
		}
	}
	cmd := exec.Command(bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", err
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if line := sc.Text(); !sent && strings.HasPrefix(line, "Listening for HTTP at address: ") {
				found <- strings.TrimPrefix(line, "Listening for HTTP at address: ")
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout) // stripe-mock logs every request
	}()
	select {
	case addr := <-found:
		return "http://" + addr, nil
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		return "", &startError{"stripe-mock did not report its address within 20 s"}
	}
}

type startError struct{ msg string }

func (e *startError) Error() string { return e.msg }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
