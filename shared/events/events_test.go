package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const secret = "test-secret-test-secret-test-secret-0123"

var key = []byte("event-signing-key-for-tests")

type payment struct {
	Amount int64 `json:"amount"`
}

type rig struct {
	t        *testing.T
	rc       *events.Receiver
	srv      *httptest.Server
	table    string
	consumer string
	ticks    int
}

// newRig serves a receiver whose handler adds each event's amount to a
// per-test table; "poison" data is a permanent failure, "flaky" a retryable one.
func newRig(t *testing.T, batch bool) *rig {
	t.Helper()
	pool := testenv.Pool(t)
	g := &rig{t: t, table: "fx_" + strings.ReplaceAll(uuid.NewString()[:8], "-", ""), consumer: "fn-" + uuid.NewString()[:8]}
	if _, err := pool.Exec(context.Background(), `CREATE TABLE `+g.table+` (event_id text, amount bigint)`); err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier(auth.Config{Alg: "HS256", Secret: secret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()})
	apply := func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		var p payment
		if err := events.Decode(ev, &p); err != nil {
			return err
		}
		switch p.Amount {
		case -1:
			return events.Permanent(errors.New("poison"))
		case -2:
			return errors.New("flaky dependency")
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+g.table+` VALUES ($1, $2)`, ev.ID(), p.Amount)
		return err
	}
	g.rc = &events.Receiver{Consumer: g.consumer, Pool: pool, Keys: [][]byte{[]byte("old-key"), key}, Verifier: v,
		Tick: func(context.Context) error { g.ticks++; return nil }, TickEvery: time.Hour,
		// The origin proofs have their own tests (origin_test.go, originRig).
		SkipOriginCheck: true}
	g.rc.On("billfn.payment.captured", apply)
	if batch {
		g.rc.Batch = func(ctx context.Context, tx pgx.Tx, evs []events.Event) error {
			for _, ev := range evs {
				if err := apply(ctx, tx, ev); err != nil {
					return err
				}
			}
			return nil
		}
	}
	mux := http.NewServeMux()
	mux.Handle("POST /{$}", g.rc)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *rig) sum() (n int, total int64) {
	g.t.Helper()
	pool := testenv.Pool(g.t)
	if err := pool.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(amount), 0) FROM `+g.table).Scan(&n, &total); err != nil {
		g.t.Fatal(err)
	}
	return n, total
}

func newEvent(t *testing.T, amount int64) events.Event {
	t.Helper()
	ev, err := events.New(context.Background(), "capture-payment", "billfn.payment.captured", uuid.NewString(), payment{amount})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (g *rig) send(hdr http.Header, body []byte) (int, events.Result) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.srv.URL+"/", bytes.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var res events.Result
	_ = json.Unmarshal(b, &res)
	return resp.StatusCode, res
}

// signed signs a delivery of body to g's receiver, as the kafka-trigger
// does.
func (g *rig) signed(body []byte, h http.Header) http.Header {
	h.Set(events.SignatureHeader, events.SignDelivery(key, time.Now(), g.consumer, body))
	return h
}

func structured(t *testing.T, ev events.Event) []byte {
	b, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// One event arrives in each of the four forms a platform may use; it takes
// effect once and the other three deliveries are acknowledged as duplicates.
func TestOneEventInEveryDeliveryFormTakesEffectOnce(t *testing.T) {
	g := newRig(t, false)
	ev := newEvent(t, 500)
	s := structured(t, ev)

	// 1. structured mode
	code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
	if code != 200 || res.Processed != 1 {
		t.Fatalf("structured: %d %+v", code, res)
	}
	// 2. binary mode
	bin := ev.Data()
	h := http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {ev.ID()},
		"Ce-Source": {ev.Source()}, "Ce-Type": {ev.Type()}}
	code, res = g.send(g.signed(bin, h), bin)
	if code != 200 || res.Duplicates != 1 {
		t.Fatalf("binary: %d %+v", code, res)
	}
	// 3. batch mode
	batch, _ := json.Marshal([]events.Event{ev})
	code, res = g.send(g.signed(batch, http.Header{"Content-Type": {events.ContentTypeBatch}}), batch)
	if code != 200 || res.Duplicates != 1 {
		t.Fatalf("batch: %d %+v", code, res)
	}
	// 4. kafka-connector form: the structured event as a plain body with X-Topic
	code, res = g.send(g.signed(s, http.Header{"Content-Type": {"text/plain"}, "X-Topic": {"payment-events"}}), s)
	if code != 200 || res.Duplicates != 1 {
		t.Fatalf("connector form: %d %+v", code, res)
	}
	if n, total := g.sum(); n != 1 || total != 500 {
		t.Fatalf("effects = %d (sum %d), want exactly one of 500", n, total)
	}
}

func TestDeliveriesMustBeAuthenticated(t *testing.T) {
	g := newRig(t, false)
	ev := newEvent(t, 1)
	s := structured(t, ev)
	ct := func() http.Header { return http.Header{"Content-Type": {events.ContentTypeStructured}} }
	signer := auth.NewHS256Signer(secret, "billfn", "billfn")
	customer, _ := signer.Sign(uuid.NewString(), auth.RoleCustomer, time.Hour)
	service, _ := signer.Sign(uuid.NewString(), auth.RoleService, time.Hour)

	cases := []struct {
		name string
		hdr  http.Header
		want int
	}{
		{"unsigned", ct(), 401},
		{"wrong key", func() http.Header {
			h := ct()
			h.Set(events.SignatureHeader, events.SignDelivery([]byte("attacker"), time.Now(), g.consumer, s))
			return h
		}(), 401},
		{"stale timestamp", func() http.Header {
			h := ct()
			h.Set(events.SignatureHeader, events.SignDelivery(key, time.Now().Add(-10*time.Minute), g.consumer, s))
			return h
		}(), 401},
		{"signature of another body", func() http.Header {
			h := ct()
			h.Set(events.SignatureHeader, events.SignDelivery(key, time.Now(), g.consumer, []byte(`{}`)))
			return h
		}(), 401},
		{"signed for another function", func() http.Header {
			h := ct()
			h.Set(events.SignatureHeader, events.SignDelivery(key, time.Now(), g.consumer+"-other", s))
			return h
		}(), 401},
		{"signed without a recipient (before 2026-12-07)", func() http.Header {
			h := ct()
			h.Set(events.SignatureHeader, events.Sign(key, time.Now(), s))
			return h
		}(), 401},
		{"malformed header", func() http.Header { h := ct(); h.Set(events.SignatureHeader, "t=abc,v1=zz"); return h }(), 401},
		{"customer token", func() http.Header { h := ct(); h.Set("Authorization", "Bearer "+customer); return h }(), 401},
		{"service token", func() http.Header { h := ct(); h.Set("Authorization", "Bearer "+service); return h }(), 200},
	}
	for _, c := range cases {
		if code, _ := g.send(c.hdr, s); code != c.want {
			t.Errorf("%s: status %d, want %d", c.name, code, c.want)
		}
	}
	if n, _ := g.sum(); n != 1 {
		t.Fatalf("effects = %d, want 1 (only the service-token delivery)", n)
	}
}

func TestSignatureWithARotatedKeyIsAccepted(t *testing.T) {
	g := newRig(t, false)
	s := structured(t, newEvent(t, 3))
	// Both keys are active: the header carries signatures by each.
	sig := events.SignDelivery([]byte("retired-key"), time.Now(), g.consumer, s) + "," +
		strings.Split(events.SignDelivery([]byte("old-key"), time.Now(), g.consumer, s), ",")[1]
	code, _ := g.send(http.Header{"Content-Type": {events.ContentTypeStructured}, events.SignatureHeader: {sig}}, s)
	if code != 200 {
		t.Fatalf("status %d, want 200", code)
	}
}

func TestPoisonEventIsParkedAndAcknowledged(t *testing.T) {
	g := newRig(t, false)
	ev := newEvent(t, -1)
	s := structured(t, ev)
	for i := 0; i < 2; i++ {
		code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
		if code != 200 {
			t.Fatalf("delivery %d: %d", i, code)
		}
		if i == 0 && res.Parked != 1 || i == 1 && res.Duplicates != 1 {
			t.Fatalf("delivery %d: %+v", i, res)
		}
	}
	var n int
	var errText string
	testenv.Pool(t).QueryRow(context.Background(), `SELECT count(*), max(error) FROM dead_letters WHERE consumer = $1 AND event_id = $2`,
		g.consumer, ev.ID()).Scan(&n, &errText)
	if n != 1 || !strings.Contains(errText, "poison") {
		t.Fatalf("dead letters = %d (%q), want 1 with the cause", n, errText)
	}
}

// A cause whose text is not valid UTF-8, holds a NUL, or is cut in the
// middle of a character still parks the event (Postgres rejects such text,
// and an event that cannot be parked would be retried forever).
func TestParkStoresAnyCauseText(t *testing.T) {
	g := newRig(t, false)
	for _, cause := range []string{"bad byte \xff in the data", "nul \x00 byte", "x" + strings.Repeat("é", 1500)} {
		ev := newEvent(t, 1)
		if err := g.rc.Park(context.Background(), ev, errors.New(cause)); err != nil {
			t.Fatalf("Park(%.20q): %v", cause, err)
		}
		var stored string
		if err := testenv.Pool(t).QueryRow(context.Background(), `SELECT error FROM dead_letters WHERE consumer = $1 AND event_id = $2`,
			g.consumer, ev.ID()).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if !utf8.ValidString(stored) || len(stored) > 2000 || stored[:3] != cause[:3] {
			t.Fatalf("stored %.40q (%d bytes) for %.40q", stored, len(stored), cause)
		}
	}
}

func TestUndecodableDataIsParked(t *testing.T) {
	g := newRig(t, false)
	ev := newEvent(t, 1)
	_ = ev.SetData("application/json", map[string]string{"amount": "not a number"})
	s := structured(t, ev)
	code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
	if code != 200 || res.Parked != 1 {
		t.Fatalf("got %d %+v", code, res)
	}
}

func TestRetryableFailureAnswers503AndLeavesNoTrace(t *testing.T) {
	g := newRig(t, false)
	ev := newEvent(t, -2)
	s := structured(t, ev)
	code, _ := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
	if code != 503 {
		t.Fatalf("status %d, want 503 so the trigger retries", code)
	}
	var n int
	testenv.Pool(t).QueryRow(context.Background(), `SELECT count(*) FROM processed_events WHERE consumer = $1`, g.consumer).Scan(&n)
	if n != 0 {
		t.Fatal("a failed event was marked processed: its retry would be dropped")
	}
}

func TestMalformedDeliveriesAre400(t *testing.T) {
	g := newRig(t, false)
	for _, body := range []string{`not json`, `{"specversion":"1.0"}`, `[]`} {
		ct := events.ContentTypeStructured
		if body == `[]` {
			ct = events.ContentTypeBatch
		}
		b := []byte(body)
		if code, _ := g.send(g.signed(b, http.Header{"Content-Type": {ct}}), b); code != 400 {
			t.Errorf("%s: status %d, want 400", body, code)
		}
	}
}

func TestUnhandledTypesAreIgnored(t *testing.T) {
	g := newRig(t, false)
	ev := newEvent(t, 1)
	ev.SetType("billfn.something.else")
	s := structured(t, ev)
	code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
	if code != 200 || res.Ignored != 1 {
		t.Fatalf("got %d %+v", code, res)
	}
}

// OnlyIf: the events its test says change nothing are acknowledged as
// ignored, alone or in a batch, and leave no trace (no effect, no
// processed_events row), at every redelivery; the others of the same
// deliveries apply once.
func TestEventsThatChangeNothingLeaveNoTrace(t *testing.T) {
	g := newRig(t, true)
	g.rc.OnlyIf("billfn.payment.captured", func(ev events.Event) bool {
		var p payment
		return events.Decode(ev, &p) != nil || p.Amount != 0
	})
	zero1, zero2, paying := newEvent(t, 0), newEvent(t, 0), newEvent(t, 7)
	for round := 0; round < 2; round++ {
		b, _ := json.Marshal([]events.Event{zero1, paying, zero2})
		code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
		if code != 200 || res.Ignored != 2 || res.Processed+res.Duplicates != 1 || (round == 0) != (res.Processed == 1) {
			t.Fatalf("round %d, batch: %d %+v", round, code, res)
		}
		s := structured(t, zero1)
		if code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s); code != 200 || res.Ignored != 1 {
			t.Fatalf("round %d, alone: %d %+v", round, code, res)
		}
	}
	if n, total := g.sum(); n != 1 || total != 7 {
		t.Fatalf("effects = %d (sum %d), want the one paying event", n, total)
	}
	var rows int
	if err := testenv.Pool(t).QueryRow(context.Background(), `SELECT count(*) FROM processed_events WHERE consumer = $1 AND id = ANY($2)`,
		g.consumer, []string{zero1.ID(), zero2.ID(), paying.ID()}).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Fatalf("%d processed_events rows, want 1 (the paying event's)", rows)
	}
}

func TestBatchIsAppliedInOneGoAndAPoisonEventIsIsolated(t *testing.T) {
	g := newRig(t, true)
	good := []events.Event{newEvent(t, 10), newEvent(t, 20), newEvent(t, 30)}
	b, _ := json.Marshal(append(good, good[0])) // a duplicate inside the batch too
	code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
	if code != 200 || res.Processed != 3 || res.Duplicates != 1 {
		t.Fatalf("batch: %d %+v", code, res)
	}
	mixed := []events.Event{newEvent(t, 1), newEvent(t, -1), newEvent(t, 2), good[1]}
	b, _ = json.Marshal(mixed)
	code, res = g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b)
	if code != 200 || res.Processed != 2 || res.Parked != 1 || res.Duplicates != 1 {
		t.Fatalf("mixed batch: %d %+v", code, res)
	}
	if n, total := g.sum(); n != 5 || total != 63 {
		t.Fatalf("effects = %d (sum %d), want 5 summing to 63", n, total)
	}
}

// The received-events metric counts a batch's duplicates as duplicates,
// as it does for single deliveries, not as processed.
func TestBatchMetricsCountDuplicatesAsDuplicates(t *testing.T) {
	g := newRig(t, true)
	a, b, c := newEvent(t, 1), newEvent(t, 2), newEvent(t, 3)
	for _, batch := range [][]events.Event{{a, b, a}, {a, c}} {
		body, _ := json.Marshal(batch)
		if code, _ := g.send(g.signed(body, http.Header{"Content-Type": {events.ContentTypeBatch}}), body); code != 200 {
			t.Fatalf("batch: %d", code)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(events.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "billfn_events_received_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["consumer"] == g.consumer {
				got[labels["result"]] += m.GetCounter().GetValue()
			}
		}
	}
	if got["processed"] != 3 || got["duplicate"] != 2 {
		t.Fatalf("received events by result = %v, want 3 processed and 2 duplicates", got)
	}
}

// Issue 15, item 6: a schedule tick is a delivery like any other. A tick
// header or type alone (cron-connector, Ce-Type) without a signature or a
// service token is refused with 401 and runs nothing.
func TestUnsignedTicksAreRefused(t *testing.T) {
	g := newRig(t, false)
	g.rc.TickEvery = time.Nanosecond
	ping, _ := events.New(context.Background(), "ping", "dev.knative.sources.ping", "", map[string]string{})
	tick, _ := events.New(context.Background(), "kafka-trigger", "billfn.schedule.tick", "", map[string]string{})
	customer, _ := auth.NewHS256Signer(secret, "billfn", "billfn").Sign(uuid.NewString(), auth.RoleCustomer, time.Hour)
	cases := []struct {
		name string
		hdr  http.Header
		body []byte
	}{
		{"cron-connector headers", http.Header{"X-Connector": {"cron-connector"}, "X-Topic": {"cron-function"}}, nil},
		{"X-Topic cron-function", http.Header{"X-Topic": {"cron-function"}}, nil},
		{"Ce-Type billfn.schedule.tick alone", http.Header{"Ce-Type": {"billfn.schedule.tick"}}, nil},
		{"Ce-Type of a PingSource alone", http.Header{"Ce-Type": {"dev.knative.sources.ping"}}, []byte(`{}`)},
		{"binary PingSource", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/ping"},
			"Ce-Type": {"dev.knative.sources.ping"}, "Content-Type": {"application/json"}}, []byte(`{}`)},
		{"structured PingSource", http.Header{"Content-Type": {events.ContentTypeStructured}}, structured(t, ping)},
		{"structured local tick", http.Header{"Content-Type": {events.ContentTypeStructured}}, structured(t, tick)},
		{"wrong key", http.Header{"X-Connector": {"cron-connector"},
			events.SignatureHeader: {events.SignDelivery([]byte("attacker-key-attacker-key-attacker-key"), time.Now(), g.consumer, nil)}}, nil},
		{"customer token", http.Header{"X-Connector": {"cron-connector"}, "Authorization": {"Bearer " + customer}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _ := g.send(tc.hdr, tc.body)
			if code != 401 || g.ticks != 0 {
				t.Fatalf("unsigned tick: %d, ticks=%d; want 401 and no tick", code, g.ticks)
			}
		})
	}
}

// A signed tick (the kafka-trigger's) or one carrying a service token runs;
// another within TickEvery does nothing and still answers 200 (a 429 would
// make a trigger retry), so a flood of valid ticks cannot drive the tick's
// work (capture-payment's calls to the payment gateway) faster.
func TestSignedTicksRunAtMostOncePerInterval(t *testing.T) {
	g := newRig(t, false)
	cron := func() http.Header {
		return http.Header{"X-Connector": {"cron-connector"}, "X-Topic": {"cron-function"}}
	}
	code, res := g.send(g.signed(nil, cron()), nil)
	if code != 200 || !res.Tick || res.Skipped || g.ticks != 1 {
		t.Fatalf("signed cron tick: %d %+v ticks=%d", code, res, g.ticks)
	}
	for i := 0; i < 20; i++ {
		code, res = g.send(g.signed(nil, cron()), nil)
		if code != 200 || !res.Tick || !res.Skipped || g.ticks != 1 {
			t.Fatalf("signed tick %d within the interval: %d %+v ticks=%d, want 200, skipped, no run", i, code, res, g.ticks)
		}
	}
	g.rc.TickEvery = time.Nanosecond
	ping, _ := events.New(context.Background(), "ping", "dev.knative.sources.ping", "", map[string]string{})
	s := structured(t, ping)
	code, res = g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
	if code != 200 || !res.Tick || g.ticks != 2 {
		t.Fatalf("signed structured PingSource tick: %d %+v ticks=%d", code, res, g.ticks)
	}
	service, _ := auth.NewHS256Signer(secret, "billfn", "billfn").Sign(uuid.NewString(), auth.RoleService, time.Hour)
	h := cron()
	h.Set("Authorization", "Bearer "+service)
	code, res = g.send(h, nil)
	if code != 200 || !res.Tick || g.ticks != 3 {
		t.Fatalf("tick with a service token: %d %+v ticks=%d", code, res, g.ticks)
	}
	// A signed business event mentioning "tick" is not a tick.
	ev := newEvent(t, 5)
	ev.SetExtension("note", "tick")
	b := structured(t, ev)
	if code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeStructured}}), b); code != 200 || res.Tick || g.ticks != 3 {
		t.Fatalf("signed business event mentioning tick: %d %+v ticks=%d", code, res, g.ticks)
	}
}

// EVENTS_TRUST_UNSIGNED (the cluster-local Knative endpoint PingSource
// delivers to) still takes unsigned ticks, rate limited the same way.
func TestTrustUnsignedTakesUnsignedTicks(t *testing.T) {
	g := newRig(t, false)
	g.rc.TrustUnsigned = true
	hdr := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/ping"},
		"Ce-Type": {"dev.knative.sources.ping"}, "Content-Type": {"application/json"}}
	if code, res := g.send(hdr, []byte(`{}`)); code != 200 || !res.Tick || g.ticks != 1 {
		t.Fatalf("unsigned PingSource tick on a trusted endpoint: %d %+v ticks=%d", code, res, g.ticks)
	}
	if code, res := g.send(hdr, []byte(`{}`)); code != 200 || !res.Skipped || g.ticks != 1 {
		t.Fatalf("second tick within the interval: %d %+v ticks=%d", code, res, g.ticks)
	}
	// A signature that is present is still checked.
	bad := http.Header{"X-Connector": {"cron-connector"},
		events.SignatureHeader: {events.SignDelivery([]byte("attacker-key-attacker-key-attacker-key"), time.Now(), g.consumer, nil)}}
	if code, _ := g.send(bad, nil); code != 401 {
		t.Fatalf("tick with a bad signature on a trusted endpoint: %d, want 401", code)
	}
}

func TestNewBuildsAValidBillfnEvent(t *testing.T) {
	ctx := events.WithTraceParent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ev, err := events.New(ctx, "process-transaction", events.Type("transaction", "posted"), "acct-1", map[string]int{"amount": 5})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Source() != "/functions/process-transaction" || ev.Type() != "billfn.transaction.posted" || ev.Subject() != "acct-1" ||
		ev.DataContentType() != "application/json" || ev.Time().IsZero() || len(ev.ID()) != 36 {
		t.Fatalf("unexpected event: %s", ev)
	}
	if tp := ev.Extensions()[events.TraceParentExt]; tp != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("traceparent = %v", tp)
	}
	back, err := events.Unmarshal(structured(t, ev))
	if err != nil || back.ID() != ev.ID() || string(back.Data()) != `{"amount":5}` {
		t.Fatalf("round trip: %v %s", err, back.Data())
	}
}

// A self-handled type runs without a receiver transaction; its handler
// owns exactly-once (here: a unique event id column), and a permanent error
// still parks the event.
func TestSelfHandledEventsRunOutsideTheReceiverTransaction(t *testing.T) {
	g := newRig(t, false)
	pool := testenv.Pool(t)
	var batches int
	g.rc.OnSelf("billfn.payment.refunded", func(ctx context.Context, ev events.Event) error {
		var p payment
		if err := events.Decode(ev, &p); err != nil {
			return err
		}
		if p.Amount < 0 {
			return events.Permanent(errors.New("negative refund"))
		}
		_, err := pool.Exec(ctx, `INSERT INTO `+g.table+` SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM `+g.table+` WHERE event_id = $1)`, ev.ID(), p.Amount)
		return err
	})
	g.rc.SelfBatch = func(ctx context.Context, evs []events.Event) error {
		batches++
		for _, ev := range evs {
			var p payment
			_ = events.Decode(ev, &p)
			if p.Amount < 0 {
				return events.Permanent(errors.New("negative refund in batch"))
			}
			if _, err := pool.Exec(ctx, `INSERT INTO `+g.table+` VALUES ($1, $2)`, ev.ID(), p.Amount); err != nil {
				return err
			}
		}
		return nil
	}
	mk := func(amount int64) events.Event {
		ev := newEvent(t, amount)
		ev.SetType("billfn.payment.refunded")
		return ev
	}
	one := mk(7)
	s := structured(t, one)
	for i := 0; i < 2; i++ {
		if code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s); code != 200 || res.Processed != 1 {
			t.Fatalf("delivery %d: %d %+v", i, code, res)
		}
	}
	b, _ := json.Marshal([]events.Event{mk(1), mk(2)})
	if code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b); code != 200 || res.Processed != 2 || batches != 1 {
		t.Fatalf("batch: %d %+v batches=%d", code, res, batches)
	}
	b, _ = json.Marshal([]events.Event{mk(3), mk(-1)})
	if code, res := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b); code != 200 || res.Processed != 1 || res.Parked != 1 {
		t.Fatalf("poison batch: %d %+v", code, res)
	}
	if n, total := g.sum(); n != 4 || total != 13 {
		t.Fatalf("effects = %d (sum %d), want 4 summing to 13 (the redelivery applied once)", n, total)
	}
	var inProcessed int
	pool.QueryRow(context.Background(), `SELECT count(*) FROM processed_events WHERE consumer = $1 AND id = $2`, g.consumer, one.ID()).Scan(&inProcessed)
	if inProcessed != 0 {
		t.Fatal("a self-handled event was recorded by the receiver")
	}
}

// Encode's payload is the structured event New would build: the SDK reads it
// back with the same attributes and data.
func TestEncodeMatchesNew(t *testing.T) {
	ctx := events.WithTraceParent(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	data := map[string]any{"amount": 5, "note": "a \"quoted\" <tag> & ünïcode"}
	id, payload, err := events.Encode(ctx, "process-transaction", "billfn.transaction.posted", "acct-1", data)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Unmarshal(payload)
	if err != nil {
		t.Fatalf("the SDK cannot read Encode's payload: %v", err)
	}
	want, _ := events.New(ctx, "process-transaction", "billfn.transaction.posted", "acct-1", data)
	if ev.ID() != id || ev.Source() != want.Source() || ev.Type() != want.Type() || ev.Subject() != want.Subject() ||
		ev.DataContentType() != want.DataContentType() || ev.SpecVersion() != want.SpecVersion() ||
		string(ev.Data()) != string(want.Data()) || ev.Extensions()[events.TraceParentExt] != want.Extensions()[events.TraceParentExt] {
		t.Fatalf("Encode gave %s\nNew gives %s", ev, want)
	}
	if d := time.Since(ev.Time()); d < 0 || d > time.Minute {
		t.Fatalf("time %v", ev.Time())
	}
}

// Event data holding U+0000 can never be stored (Postgres text refuses it):
// Decode parks it as permanent instead of letting the handler fail at the
// database and the trigger retry it.
func TestDecodeParksDataHoldingNUL(t *testing.T) {
	ev := events.Must(events.New(context.Background(), "t", "billfn.test", "s", map[string]any{"description": "a\x00b"}))
	var v map[string]any
	if err := events.Decode(ev, &v); !events.IsPermanent(err) {
		t.Errorf("got %v", err)
	}
	ok := events.Must(events.New(context.Background(), "t", "billfn.test", "s", map[string]any{"description": `a\u0000b`}))
	if err := events.Decode(ok, &v); err != nil || v["description"] != `a\u0000b` {
		t.Errorf("an escaped backslash: %v %v", err, v)
	}
}
