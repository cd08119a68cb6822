package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/billfn/billfn/cmd/internal/gateway"
	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const testDLQ = "billfn-dlq"

// fn is a function under test: its handler and its annotations.
type fn struct {
	name        string
	handler     http.Handler
	annotations map[string]string
}

// stack runs the functions with the real function runtime behind a real
// gateway, and a trigger in front of them reading the gateway's function
// list, as the local stack and a cluster do.
type stack struct {
	brokers []string
	trigger *Trigger
	group   string
}

func startStack(t *testing.T, brokers []string, fns []fn, mod func(*Config)) *stack {
	t.Helper()
	var gfns []gateway.Function
	for _, f := range fns {
		mux := http.NewServeMux()
		mux.Handle("/", f.handler)
		srv := httptest.NewServer(server.New(server.Config{}, server.App{Name: f.name, Handler: mux}).Handler())
		t.Cleanup(srv.Close)
		ann := f.annotations
		gfns = append(gfns, gateway.Function{Status: gateway.FunctionStatus{Name: f.name, Annotations: &ann}, Addr: srv.Listener.Addr().String()})
	}
	// The gateway's /system API needs basic auth, as the local stack's
	// and OpenFaaS's do; the trigger reads it with the same credentials.
	g := gateway.New(gateway.Config{Functions: gfns, SystemUser: "admin", SystemPassword: "trigger-test-password"})
	gw := httptest.NewServer(g)
	t.Cleanup(func() { gw.Close(); g.Close(context.Background()) })

	prefix := fmt.Sprintf("test-%d-", time.Now().UnixNano())
	cfg := Config{
		Brokers: brokers, GatewayURL: gw.URL, SigningKeys: testenv.EventKey,
		GatewayUser: "admin", GatewayPassword: "trigger-test-password",
		GroupPrefix: prefix, InitialOffset: "earliest", DLQTopic: testDLQ,
		MaxAttempts: 5, BackoffBase: config.Duration(10 * time.Millisecond), BackoffMax: config.Duration(200 * time.Millisecond),
		DeliveryTimeout: config.Duration(5 * time.Second), RefreshInterval: config.Duration(time.Minute), Schedules: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("the trigger did not stop")
		}
	})
	return &stack{brokers: brokers, trigger: tr, group: prefix}
}

// lag sums the trigger's billfn_trigger_consumer_lag gauge of a function.
func (s *stack) lag(t *testing.T, function string) float64 {
	t.Helper()
	mfs, err := s.trigger.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "billfn_trigger_consumer_lag" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "function" && l.GetValue() == function {
					sum += m.GetGauge().GetValue()
				}
			}
		}
	}
	return sum
}

func kafka(t *testing.T) []string {
	_, brokers := testenv.Kafka(t, kfake.SeedTopics(1, testDLQ))
	return brokers
}

func produce(t *testing.T, brokers []string, msgs ...*sarama.ProducerMessage) []*sarama.ProducerMessage {
	t.Helper()
	p, err := sarama.NewSyncProducer(brokers, outbox.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func structured(t *testing.T, topic, key string, data any) (*sarama.ProducerMessage, events.Event) {
	t.Helper()
	ev := events.Must(events.New(context.Background(), "tester", "billfn.test.happened", key, data))
	// The producer's origin proof, as every producer adds it; the trigger
	// neither needs nor checks it, the function's receiver does.
	testenv.SignOrigin(&ev)
	body, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	// No delivery signature, no special header: what kcat or any producer
	// writes.
	return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(body)}, ev
}

// committed returns the group's committed offset of topic/0 (-1 when none).
func committed(t *testing.T, brokers []string, group, topic string, partition int32) int64 {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	res, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {partition}})
	if err != nil {
		t.Fatal(err)
	}
	b := res.GetBlock(topic, partition)
	if b == nil {
		return -1
	}
	return b.Offset
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verified wraps function's handler so it only sees deliveries signed
// for it.
func verified(t *testing.T, function string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := events.VerifyDelivery([][]byte{[]byte(testenv.EventKey)}, r.Header.Get(events.SignatureHeader), function, body, time.Now(), time.Minute); err != nil {
			t.Errorf("delivery not signed: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		next(w, r)
	})
}

func TestTriggerDeliversAnUnsignedRecordSignedToTheFunctionsReceiver(t *testing.T) {
	d, kit := testenv.Platform(t, "billing") // the receiver's name is the function's
	// The receiver trusts the test producer's origin key, as an operator
	// adds an integrator's.
	kit.Origins.Add(events.Source("tester"), testenv.OriginSigner(events.Source("tester")).Public())
	admin, err := sarama.NewClusterAdmin(kit.Brokers, outbox.ProducerConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic(testDLQ, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	admin.Close()

	var (
		mu      sync.Mutex
		got     []events.Event
		headers http.Header
	)
	d.Events.On("billfn.test.happened", func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("POST /{$}", d.Events)
	fnHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = r.Header.Clone()
		mu.Unlock()
		mux.ServeHTTP(w, r)
	})
	s := startStack(t, kit.Brokers, []fn{{name: "billing", handler: fnHandler,
		annotations: map[string]string{"topic": events.TopicBilling}}}, nil)

	msg, ev := structured(t, events.TopicBilling, "acct-1", map[string]int{"amount": 1050})
	produce(t, kit.Brokers, msg)

	waitFor(t, "the delivery", 15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	mu.Lock()
	if got[0].ID() != ev.ID() {
		t.Errorf("delivered %s, produced %s", got[0].ID(), ev.ID())
	}
	want := map[string]string{
		"X-Topic": events.TopicBilling, "X-Kafka-Key": "acct-1", "X-Kafka-Partition": strconv.Itoa(int(msg.Partition)),
		"X-Kafka-Offset": strconv.FormatInt(msg.Offset, 10), "Content-Type": events.ContentTypeStructured,
	}
	for k, v := range want {
		if headers.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, headers.Get(k), v)
		}
	}
	if headers.Get(events.SignatureHeader) == "" {
		t.Error("no signature")
	}
	mu.Unlock()
	waitFor(t, "the offset commit", 10*time.Second, func() bool {
		return committed(t, kit.Brokers, s.group+"billing", events.TopicBilling, msg.Partition) == msg.Offset+1
	})
}

func TestTriggerDeliversBinaryModeRecordsAsBinaryModeRequests(t *testing.T) {
	brokers := kafka(t)
	var got atomic.Value
	startStack(t, brokers, []fn{{name: "f", annotations: map[string]string{"topic": events.TopicPayment},
		handler: verified(t, "f", func(w http.ResponseWriter, r *http.Request) {
			evs, err := events.Parse(r, mustRead(r))
			if err != nil {
				problem.Write(w, r, err)
				return
			}
			got.Store(evs[0])
		})}}, nil)
	produce(t, brokers, &sarama.ProducerMessage{
		Topic: events.TopicPayment, Key: sarama.StringEncoder("p1"), Value: sarama.StringEncoder(`{"amount":5}`),
		Headers: []sarama.RecordHeader{
			{Key: []byte("ce_specversion"), Value: []byte("1.0")}, {Key: []byte("ce_id"), Value: []byte("bin-1")},
			{Key: []byte("ce_source"), Value: []byte("/kcat")}, {Key: []byte("ce_type"), Value: []byte("billfn.test.binary")},
			{Key: []byte("content-type"), Value: []byte("application/json")},
		},
	})
	waitFor(t, "the delivery", 15*time.Second, func() bool { return got.Load() != nil })
	ev := got.Load().(events.Event)
	if ev.ID() != "bin-1" || ev.Type() != "billfn.test.binary" || string(ev.Data()) != `{"amount":5}` {
		t.Errorf("got %v", ev)
	}
}

func mustRead(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	return b
}

func TestTriggerKeepsTheOrderOfAPartition(t *testing.T) {
	brokers := kafka(t)
	var (
		mu  sync.Mutex
		seq []int
	)
	startStack(t, brokers, []fn{{name: "f", annotations: map[string]string{"topic": events.TopicTransaction},
		handler: verified(t, "f", func(w http.ResponseWriter, r *http.Request) {
			ev, err := events.Unmarshal(mustRead(r))
			if err != nil {
				t.Error(err)
				return
			}
			var d struct{ N int }
			_ = json.Unmarshal(ev.Data(), &d)
			if d.N%7 == 3 && r.Header.Get("X-Retry-Seen") == "" {
				// Some fail once: a retry must not let later records overtake.
				mu.Lock()
				failedOnce := slices.Contains(seq, -d.N)
				if !failedOnce {
					seq = append(seq, -d.N)
				}
				mu.Unlock()
				if !failedOnce {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
			}
			mu.Lock()
			seq = append(seq, d.N)
			mu.Unlock()
		})}}, nil)
	var msgs []*sarama.ProducerMessage
	for i := 0; i < 40; i++ {
		m, _ := structured(t, events.TopicTransaction, "same-account", map[string]int{"n": i})
		msgs = append(msgs, m)
	}
	produce(t, brokers, msgs...)
	waitFor(t, "40 deliveries", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, v := range seq {
			if v >= 0 {
				n++
			}
		}
		return n == 40
	})
	mu.Lock()
	defer mu.Unlock()
	var ok []int
	for _, v := range seq {
		if v >= 0 {
			ok = append(ok, v)
		}
	}
	for i, v := range ok {
		if v != i {
			t.Fatalf("delivered out of order: %v", ok)
		}
	}
}

func TestTriggerCommitsOnlyAfterTheFunctionAccepts(t *testing.T) {
	brokers := kafka(t)
	var attempts atomic.Int32
	release := make(chan struct{})
	s := startStack(t, brokers, []fn{{name: "f", annotations: map[string]string{"topic": events.TopicUser},
		handler: verified(t, "f", func(w http.ResponseWriter, r *http.Request) {
			attempts.Add(1)
			select {
			case <-release:
			default:
				problem.Write(w, r, problem.New(problem.Unavailable, "database down"))
			}
		})}}, func(c *Config) { c.MaxAttempts = 1000 })
	msg, _ := structured(t, events.TopicUser, "u1", map[string]string{})
	produce(t, brokers, msg)
	waitFor(t, "three failed attempts", 10*time.Second, func() bool { return attempts.Load() >= 3 })
	time.Sleep(1500 * time.Millisecond) // longer than the auto-commit interval
	if off := committed(t, brokers, s.group+"f", events.TopicUser, msg.Partition); off != -1 {
		t.Fatalf("offset %d committed while the function refused the record", off)
	}
	close(release)
	waitFor(t, "the commit after success", 10*time.Second, func() bool {
		return committed(t, brokers, s.group+"f", events.TopicUser, msg.Partition) == msg.Offset+1
	})
}

// dlqRecords reads everything on the dead-letter topic.
func dlqRecords(t *testing.T, brokers []string, want int) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer(brokers, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(testDLQ, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	timeout := time.After(15 * time.Second)
	for len(out) < want {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case <-timeout:
			t.Fatalf("%d records on %s, want %d", len(out), testDLQ, want)
		}
	}
	return out
}

func dlqHeader(m *sarama.ConsumerMessage, k string) string {
	v, _ := header(m, k)
	return v
}

func TestTriggerDeadLettersARecordTheFunctionRejectsAtOnce(t *testing.T) {
	brokers := kafka(t)
	var attempts atomic.Int32
	var good atomic.Bool
	s := startStack(t, brokers, []fn{{name: "f", annotations: map[string]string{"topic": events.TopicBilling},
		handler: verified(t, "f", func(w http.ResponseWriter, r *http.Request) {
			ev, _ := events.Unmarshal(mustRead(r))
			if ev.Subject() == "bad" {
				attempts.Add(1)
				problem.Write(w, r, problem.Invalid(problem.Field("amount", "must be positive")))
				return
			}
			good.Store(true)
		})}}, nil)
	bad, _ := structured(t, events.TopicBilling, "bad", nil)
	bad.Partition = 0
	produce(t, brokers, bad)
	next, _ := structured(t, events.TopicBilling, "good", nil)
	produce(t, brokers, next)

	recs := dlqRecords(t, brokers, 1)
	m := recs[0]
	if string(m.Key) != "bad" || dlqHeader(m, dlqStatus) != "422" || dlqHeader(m, dlqAttempts) != "1" ||
		dlqHeader(m, dlqFunction) != "f" || dlqHeader(m, dlqTopic) != events.TopicBilling ||
		!strings.Contains(dlqHeader(m, dlqError), "amount: must be positive") {
		t.Errorf("dead letter %s headers %v", m.Key, m.Headers)
	}
	if attempts.Load() != 1 {
		t.Errorf("a 422 was attempted %d times", attempts.Load())
	}
	waitFor(t, "the next record", 10*time.Second, good.Load)
	waitFor(t, "the commit past the dead letter", 10*time.Second, func() bool {
		return committed(t, brokers, s.group+"f", events.TopicBilling, bad.Partition) > bad.Offset
	})
}

// By default (MAX_ATTEMPTS 0) a record the function cannot take yet (it
// is down, its database is) is retried until it can, however long that
// takes, and the records behind it wait: dead-lettered after a bounded
// number of attempts (10, about 80 s, until 2026-12-06), a payment's
// capture let its settlement, the next record of its key, reach the
// ledger first, which rejected it for want of funds, for good.
func TestTriggerRetriesARetryableFailureUntilTheFunctionTakesIt(t *testing.T) {
	brokers := kafka(t)
	var (
		mu       sync.Mutex
		seq      []string
		attempts int
	)
	startStack(t, brokers, []fn{{name: "f", annotations: map[string]string{"topic": events.TopicPayment},
		handler: verified(t, "f", func(w http.ResponseWriter, r *http.Request) {
			ev, _ := events.Unmarshal(mustRead(r))
			var d struct{ Step string }
			_ = json.Unmarshal(ev.Data(), &d)
			mu.Lock()
			defer mu.Unlock()
			if d.Step == "capture" {
				if attempts++; attempts <= 15 {
					problem.Write(w, r, problem.New(problem.Unavailable, "database down"))
					return
				}
			}
			seq = append(seq, d.Step)
		})}}, func(c *Config) { c.MaxAttempts = 0; c.BackoffMax = config.Duration(20 * time.Millisecond) })
	capture, _ := structured(t, events.TopicPayment, "pay-1", map[string]string{"step": "capture"})
	settlement, _ := structured(t, events.TopicPayment, "pay-1", map[string]string{"step": "settlement"})
	produce(t, brokers, capture, settlement)
	waitFor(t, "both records", 20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(seq) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if seq[0] != "capture" || seq[1] != "settlement" || attempts != 16 {
		t.Fatalf("delivered %v after %d attempts of the capture; want capture (on its 16th attempt), then settlement", seq, attempts)
	}
}

func TestTriggerDeadLettersAfterMaxAttempts(t *testing.T) {
	brokers := kafka(t)
	var attempts atomic.Int32
	startStack(t, brokers, []fn{{name: "f", annotations: map[string]string{"topic": events.TopicPayment},
		handler: verified(t, "f", func(w http.ResponseWriter, r *http.Request) {
			attempts.Add(1)
			http.Error(w, "boom", http.StatusInternalServerError)
		})}}, func(c *Config) { c.MaxAttempts = 3 })
	msg, _ := structured(t, events.TopicPayment, "p", nil)
	produce(t, brokers, msg)
	m := dlqRecords(t, brokers, 1)[0]
	if dlqHeader(m, dlqAttempts) != "3" || dlqHeader(m, dlqStatus) != "500" || !strings.Contains(dlqHeader(m, dlqError), "boom") {
		t.Errorf("headers %v", m.Headers)
	}
	if string(m.Value) != string(msg.Value.(sarama.ByteEncoder)) {
		t.Error("the dead letter does not carry the original value")
	}
	if n := attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

func TestTriggerBatchesRecordsForAFunctionThatAsksForIt(t *testing.T) {
	brokers := kafka(t)
	var msgs []*sarama.ProducerMessage
	for i := 0; i < 25; i++ {
		m, _ := structured(t, events.TopicBilling, "acct", map[string]int{"n": i})
		msgs = append(msgs, m)
	}
	produce(t, brokers, msgs...) // all there before the trigger starts
	var (
		mu       sync.Mutex
		seq      []int
		requests int
		largest  int
	)
	startStack(t, brokers, []fn{{name: "report", annotations: map[string]string{"topic": events.TopicBilling, stackfile.AnnotationBatch: "10"},
		handler: verified(t, "report", func(w http.ResponseWriter, r *http.Request) {
			evs, err := events.Parse(r, mustRead(r))
			if err != nil {
				problem.Write(w, r, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			requests++
			largest = max(largest, len(evs))
			if len(evs) > 1 && r.Header.Get("Content-Type") != events.ContentTypeBatch {
				t.Errorf("a batch of %d with Content-Type %q", len(evs), r.Header.Get("Content-Type"))
			}
			for _, ev := range evs {
				var d struct{ N int }
				_ = json.Unmarshal(ev.Data(), &d)
				seq = append(seq, d.N)
			}
		})}}, nil)
	waitFor(t, "25 events", 15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(seq) == 25 })
	mu.Lock()
	defer mu.Unlock()
	for i, v := range seq {
		if v != i {
			t.Fatalf("out of order: %v", seq)
		}
	}
	if largest < 2 || largest > 10 || requests >= 25 {
		t.Errorf("%d requests, largest batch %d: want batches of up to 10", requests, largest)
	}
}

func TestTriggerWaitsToFillABatchWhenAskedTo(t *testing.T) {
	brokers := kafka(t)
	var (
		mu    sync.Mutex
		sizes []int
	)
	st := startStack(t, brokers, []fn{{name: "report",
		annotations: map[string]string{"topic": events.TopicBilling, stackfile.AnnotationBatch: "50", stackfile.AnnotationBatchWait: "3s"},
		handler: verified(t, "report", func(w http.ResponseWriter, r *http.Request) {
			evs, err := events.Parse(r, mustRead(r))
			if err != nil {
				problem.Write(w, r, err)
				return
			}
			mu.Lock()
			sizes = append(sizes, len(evs))
			mu.Unlock()
		})}}, nil)
	delivered := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sizes {
			n += s
		}
		return n
	}
	// One record first, so the consumer is live before the trickle starts.
	m, _ := structured(t, events.TopicBilling, "acct", map[string]int{"n": -1})
	produce(t, brokers, m)
	waitFor(t, "the first record", 15*time.Second, func() bool { return delivered() == 1 })

	// Twenty records trickling in, 20 ms apart: without a batch-wait
	// nearly every one would travel alone.
	for i := 0; i < 20; i++ {
		m, _ := structured(t, events.TopicBilling, "acct", map[string]int{"n": i})
		produce(t, brokers, m)
		time.Sleep(20 * time.Millisecond)
	}
	// Held for the batch, they are not delivered yet: the lag says so.
	if n := delivered(); n != 1 {
		t.Fatalf("%d records delivered while the batch was still filling", n)
	}
	if lag := st.lag(t, "report"); lag < 1 {
		t.Errorf("lag %v while records wait for their batch, want at least 1", lag)
	}
	waitFor(t, "21 records", 15*time.Second, func() bool { return delivered() == 21 })
	waitFor(t, "the lag to drop to 0", 5*time.Second, func() bool { return st.lag(t, "report") == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) > 3 {
		t.Errorf("the trickle came in %d requests %v: want it gathered into one or two batches", len(sizes)-1, sizes[1:])
	}
}

func TestTriggerTicksScheduledFunctionsLikeTheCronConnector(t *testing.T) {
	brokers := kafka(t)
	ticks := make(chan http.Header, 10)
	startStack(t, brokers, []fn{{name: "sweeper", annotations: map[string]string{"topic": "cron-function", "schedule": "0 0 1 1 *"},
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(mustRead(r)) != 0 || r.URL.Path != "/" || r.Method != http.MethodPost {
				t.Errorf("tick %s %s with a body", r.Method, r.URL.Path)
			}
			ticks <- r.Header.Clone()
		})}}, func(c *Config) { c.ScheduleEvery = config.Duration(time.Second) })
	select {
	case h := <-ticks:
		if h.Get("X-Connector") != "cron-connector" || h.Get("X-Topic") != "cron-function" {
			t.Errorf("tick headers %v", h)
		}
		// Issue 15, item 6: ticks are signed like deliveries (over the
		// empty body), or the functions refuse them with 401.
		if err := events.VerifyDelivery([][]byte{[]byte(testenv.EventKey)}, h.Get(events.SignatureHeader), "sweeper", nil, time.Now(), time.Minute); err != nil {
			t.Errorf("the tick is not signed with the delivery key: %v (headers %v)", err, h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no tick")
	}
}

func TestTriggerFollowsTheFunctionList(t *testing.T) {
	var list atomic.Value
	list.Store(`[]`)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "admin" || p != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, list.Load().(string))
	}))
	defer gw.Close()
	brokers := kafka(t)
	tr, err := New(Config{Brokers: brokers, GatewayURL: gw.URL, SigningKeys: testenv.EventKey, GatewayUser: "admin", GatewayPassword: "secret",
		GroupPrefix: "follow-", MaxAttempts: 1, BackoffBase: config.Duration(time.Millisecond), BackoffMax: config.Duration(time.Millisecond),
		DeliveryTimeout: config.Duration(time.Second), RefreshInterval: config.Duration(100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = tr.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	consumers := func() string {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		var out []string
		for n, c := range tr.consumers {
			out = append(out, n+"="+strings.Join(c.sub.Topics, "+"))
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	list.Store(`[{"name":"a","image":"x","annotations":{"topic":"billing-events,cron-function","schedule":"* * * * *"}},
		{"name":"b","image":"x","annotations":{"topic":"cron-function","schedule":"* * * * *"}}]`)
	waitFor(t, "consumer a", 5*time.Second, func() bool { return consumers() == "a=billing-events" })
	list.Store(`[{"name":"a","image":"x","annotations":{"topic":"payment-events"}},{"name":"c","image":"x","annotations":{"topic":"user-events"}}]`)
	waitFor(t, "consumers a and c", 5*time.Second, func() bool { return consumers() == "a=payment-events,c=user-events" })
}

func TestTriggerReadsSubscriptionsFromAStackFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stack.yml")
	if err := os.WriteFile(path, []byte(`version: 1.0
provider: {name: openfaas, gateway: http://127.0.0.1:8080}
functions:
  a: {lang: dockerfile, annotations: {topic: "billing-events,payment-events,cron-function", schedule: "* * * * *"}}
  b: {lang: dockerfile}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := New(Config{StackFile: path, SigningKeys: testenv.EventKey})
	if err != nil {
		t.Fatal(err)
	}
	subs, err := tr.discover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if a := subs["a"]; !slices.Equal(a.Topics, []string{"billing-events", "payment-events"}) || a.Schedule != "* * * * *" {
		t.Errorf("a: %+v", a)
	}
	if b, ok := subs["b"]; !ok || len(b.Topics) != 0 || b.Schedule != "" {
		t.Errorf("b: %+v", b)
	}
}

func TestTriggerConfigRejectsNonsense(t *testing.T) {
	bad := []Config{
		{GatewayURL: "http://x", SigningKeys: testenv.EventKey, MaxAttempts: 1, InitialOffset: "earliest", BackoffBase: 1, BackoffMax: 1},
		{Brokers: []string{"b"}, GatewayURL: "http://x", SigningKeys: testenv.EventKey, MaxAttempts: -1, InitialOffset: "earliest", BackoffBase: 1, BackoffMax: 1},
		{Brokers: []string{"b"}, GatewayURL: "http://x", SigningKeys: testenv.EventKey, MaxAttempts: 1, InitialOffset: "middle", BackoffBase: 1, BackoffMax: 1},
		{Brokers: []string{"b"}, GatewayURL: "http://x", SigningKeys: testenv.EventKey, MaxAttempts: 1, InitialOffset: "earliest", BackoffBase: 2, BackoffMax: 1},
	}
	for i, c := range bad {
		if c.validate() == nil {
			t.Errorf("config %d accepted", i)
		}
	}
	if _, err := New(Config{SigningKeys: " , "}); err == nil {
		t.Error("an empty key list was accepted")
	}
}

// Issue 15, item 4: the trigger refuses to start with a signing key shorter
// than 32 bytes, naming EVENT_SIGNING_KEYS.
func TestTriggerRefusesAWeakSigningKey(t *testing.T) {
	for name, keys := range map[string]string{
		"one key of 31 bytes":       strings.Repeat("k", 31),
		"a one-letter key":          "k",
		"a short old key":           testenv.EventKey + ",old-short-key",
		"a short new key before it": "new-short-key," + testenv.EventKey,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(Config{StackFile: "stack.yml", SigningKeys: keys})
			if err == nil || !strings.Contains(err.Error(), "EVENT_SIGNING_KEYS") {
				t.Fatalf("New = %v, want an error naming EVENT_SIGNING_KEYS", err)
			}
		})
	}
}

// A function that names the event types it wants gets only those: other
// records of its topics are skipped (and committed) without a request.
func TestTriggerDeliversOnlyTheTypesAFunctionAsksFor(t *testing.T) {
	brokers := kafka(t)
	var mu sync.Mutex
	var got []string
	h := verified(t, "picky", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ev, err := events.Unmarshal(b)
		if err != nil {
			t.Errorf("delivery: %v", err)
		}
		mu.Lock()
		got = append(got, ev.Type())
		mu.Unlock()
	})
	s := startStack(t, brokers, []fn{{name: "picky", handler: h, annotations: map[string]string{
		"topic": events.TopicTransaction, "billfn.dev/types": "billfn.transaction.requested, billfn.hold.*"}}}, nil)
	var msgs []*sarama.ProducerMessage
	for _, typ := range []string{"billfn.transaction.posted", "billfn.transaction.requested", "billfn.transaction.rejected",
		"billfn.hold.created", "billfn.transaction.posted", "billfn.holding.other"} {
		m, ev := structured(t, events.TopicTransaction, "acct-1", map[string]string{"t": typ})
		ev.SetType(typ)
		body, _ := events.Marshal(ev)
		m.Value = sarama.ByteEncoder(body)
		msgs = append(msgs, m)
	}
	produce(t, brokers, msgs...)
	var last int64
	for _, m := range msgs {
		if m.Partition == msgs[0].Partition {
			last = max(last, m.Offset)
		}
	}
	waitFor(t, "the two wanted records", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 2
	})
	waitFor(t, "the whole partition to be committed", 10*time.Second, func() bool {
		return committed(t, brokers, s.group+"picky", events.TopicTransaction, msgs[0].Partition) == last+1
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "billfn.transaction.requested,billfn.hold.created" {
		t.Fatalf("delivered %v, want only the requested and the hold", got)
	}
}

// TestABatchWaitCountsFromWhenTheRecordWasWritten: a batch's first record
// waits what is left of the function's batch-wait since Kafka took it
// (the broker may have held the fetch for part of it), never more than
// the batch-wait, and not at all once that has passed.
func TestABatchWaitCountsFromWhenTheRecordWasWritten(t *testing.T) {
	now := time.Date(2026, 12, 3, 15, 0, 0, 0, time.UTC)
	w := 100 * time.Millisecond
	for _, c := range []struct {
		name    string
		written time.Time
		want    time.Duration
	}{
		{"no timestamp", time.Time{}, w},
		{"written now", now, w},
		{"written 30 ms ago", now.Add(-30 * time.Millisecond), 70 * time.Millisecond},
		{"a backlog", now.Add(-time.Hour), 0},
		{"stamped by a clock ahead", now.Add(time.Minute), w},
	} {
		if got := holdFor(w, c.written, now); got != c.want {
			t.Errorf("%s: hold %s, want %s", c.name, got, c.want)
		}
	}
}

// TestFetchesWaitOnlyForFunctionsThatWait: a function without a batch-wait
// gets each record as soon as the broker has it; one with a wait lets the
// broker gather a fetch for at most that wait (and at most maxFetchWait),
// which holdFor then takes off the batch's own wait.
func TestFetchesWaitOnlyForFunctionsThatWait(t *testing.T) {
	for _, c := range []struct {
		wait     time.Duration
		minBytes int32
		maxWait  time.Duration
	}{
		{0, 1, 500 * time.Millisecond},
		{time.Millisecond, 1 << 20, time.Millisecond},
		{100 * time.Millisecond, 1 << 20, 100 * time.Millisecond},
		{time.Second, 1 << 20, 500 * time.Millisecond},
	} {
		minBytes, maxWait := fetchWait(c.wait)
		if minBytes != c.minBytes || maxWait != c.maxWait {
			t.Errorf("batch-wait %s: fetch min %d, wait %s; want %d, %s", c.wait, minBytes, maxWait, c.minBytes, c.maxWait)
		}
		cfg := (&consumer{t: &Trigger{}, sub: stackfile.Subscription{BatchSize: 2, BatchWait: c.wait}}).saramaConfig()
		if err := cfg.Validate(); err != nil || cfg.Consumer.Fetch.Min != c.minBytes || cfg.Consumer.MaxWaitTime != c.maxWait {
			t.Errorf("batch-wait %s: sarama config min %d, wait %s, %v", c.wait, cfg.Consumer.Fetch.Min, cfg.Consumer.MaxWaitTime, err)
		}
	}
}

// TestABatchTheFunctionRefusesIsDeliveredOneByOne: a batch holding one
// record the function's receiver refuses (a JSON object that is not a
// CloudEvent, a value that is not JSON: a receiver refuses the whole batch
// before applying any of it) costs the dead-letter topic that record
// alone; every other record of the batch is delivered, in order.
func TestABatchTheFunctionRefusesIsDeliveredOneByOne(t *testing.T) {
	brokers := kafka(t)
	var msgs []*sarama.ProducerMessage
	for i := range 10 {
		m, _ := structured(t, events.TopicBilling, "acct", map[string]int{"n": i})
		switch i {
		case 3:
			m.Value = sarama.ByteEncoder(`{"specversion":"1.0","type":"billfn.test.happened","data":{"n":3}}`) // no id, no source
		case 7:
			m.Value = sarama.ByteEncoder(`{"specversion":"1.0","type":"billfn.test.happened","data":{"n":7}`) // cut short
		}
		msgs = append(msgs, m)
	}
	produce(t, brokers, msgs...) // all there before the trigger starts: batches of them
	var (
		mu       sync.Mutex
		seq      []int
		batches  int
		refusals int
	)
	startStack(t, brokers, []fn{{name: "report", annotations: map[string]string{"topic": events.TopicBilling, stackfile.AnnotationBatch: "10"},
		handler: verified(t, "report", func(w http.ResponseWriter, r *http.Request) {
			evs, err := events.Parse(r, mustRead(r))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refusals++
				problem.Write(w, r, err)
				return
			}
			if len(evs) > 1 {
				batches++
			}
			for _, ev := range evs {
				var d struct{ N int }
				_ = json.Unmarshal(ev.Data(), &d)
				seq = append(seq, d.N)
			}
		})}}, nil)
	dead := dlqRecords(t, brokers, 2)
	waitFor(t, "8 events", 15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(seq) == 8 })
	for i, want := range []string{string(msgs[3].Value.(sarama.ByteEncoder)), string(msgs[7].Value.(sarama.ByteEncoder))} {
		if string(dead[i].Value) != want || dlqHeader(dead[i], dlqStatus) != "400" {
			t.Errorf("dead letter %d: %q (status %s), want %q", i, dead[i].Value, dlqHeader(dead[i], dlqStatus), want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seq) != "[0 1 2 4 5 6 8 9]" {
		t.Errorf("delivered %v, want every record but the two refused, in order", seq)
	}
	if batches == 0 {
		t.Error("no batch was delivered: the test does not test a refused batch")
	}
	t.Logf("%d refusals, %d batches", refusals, batches)
}

// A binary-mode record whose ce_ header cannot be an HTTP header (a name
// that is not a token, a value with a line break) can never be delivered:
// it is dead-lettered at once, not retried forever in front of the records
// behind it. Until 2026-12-07 any producer allowed on a topic (an outside
// integrator's principal too) could stall every function reading it with
// one such record: the transport refused to send it, and a refused send
// counted as a retryable failure.
func TestARecordWhoseHeadersCannotBeSentIsDeadLetteredNotRetriedForever(t *testing.T) {
	for name, h := range map[string]sarama.RecordHeader{
		"a name that is not a token": {Key: []byte("ce_bad name"), Value: []byte("x")},
		"a value with a line break":  {Key: []byte("ce_note"), Value: []byte("x\r\nX-Injected: 1")},
		"a content type with a NUL":  {Key: []byte("content-type"), Value: []byte("application/json\x00")},
	} {
		t.Run(name, func(t *testing.T) {
			brokers := kafka(t)
			var good atomic.Bool
			startStack(t, brokers, []fn{{name: "f", annotations: map[string]string{"topic": events.TopicPayment},
				handler: verified(t, "f", func(w http.ResponseWriter, r *http.Request) {
					if r.Header.Get("X-Injected") != "" {
						t.Error("a record header's value added a request header")
					}
					if ev, err := events.Unmarshal(mustRead(r)); err == nil && ev.Subject() == "good" {
						good.Store(true)
					}
				})}}, func(c *Config) { c.MaxAttempts = 0; c.BackoffMax = config.Duration(20 * time.Millisecond) })
			poison := &sarama.ProducerMessage{Topic: events.TopicPayment, Partition: 0, Key: sarama.StringEncoder("p1"),
				Value: sarama.StringEncoder(`{"amount":5}`),
				Headers: []sarama.RecordHeader{
					{Key: []byte("ce_specversion"), Value: []byte("1.0")}, {Key: []byte("ce_id"), Value: []byte("bin-1")},
					{Key: []byte("ce_source"), Value: []byte("/kcat")}, {Key: []byte("ce_type"), Value: []byte("billfn.test.binary")},
					h,
				}}
			next, _ := structured(t, events.TopicPayment, "good", nil)
			produce(t, brokers, poison, next)
			m := dlqRecords(t, brokers, 1)[0]
			if dlqHeader(m, dlqFunction) != "f" || dlqHeader(m, dlqAttempts) != "1" {
				t.Errorf("dead letter headers %v", m.Headers)
			}
			waitFor(t, "the record behind it", 10*time.Second, good.Load)
		})
	}
}

// A function that takes batches gets one request for the records of every
// partition of a topic this trigger owns that arrived within its
// batch-wait, not one per partition (each request costs the function a
// transaction and the gateway and trigger a hop), with each partition's
// records in their order, and X-Kafka-Offsets saying where they came from.
func TestABatchGathersTheRecordsOfEveryPartitionOfItsTopic(t *testing.T) {
	// Records that arrive within the batch-wait, and a backlog older than
	// it: the batch takes then what is already there, which must be every
	// partition's, not a record of each.
	// (The backlog's first batches may leave out the partitions whose
	// claims the session has not started yet: a few requests, not one
	// for each partition or less.)
	t.Run("within the wait", func(t *testing.T) { testABatchGathersEveryPartition(t, "1s", 0, 2) })
	t.Run("a backlog", func(t *testing.T) { testABatchGathersEveryPartition(t, "100ms", 300*time.Millisecond, 4) })
}

func testABatchGathersEveryPartition(t *testing.T, wait string, age time.Duration, most int) {
	brokers := kafka(t)
	const keys, each = 24, 3
	var msgs []*sarama.ProducerMessage
	for i := range each {
		for k := range keys {
			m, _ := structured(t, events.TopicBilling, fmt.Sprintf("acct_%d", k), map[string]int{"k": k, "n": i})
			msgs = append(msgs, m)
		}
	}
	produce(t, brokers, msgs...) // all there before the trigger starts
	time.Sleep(age)
	partitions := map[int32]bool{}
	for _, m := range msgs {
		partitions[m.Partition] = true
	}
	if len(partitions) < 4 {
		t.Fatalf("the records went to %d partitions: the test shows nothing", len(partitions))
	}
	var (
		mu      sync.Mutex
		next    = map[int]int{} // key → the n due next
		got     int
		offsets []string
	)
	startStack(t, brokers, []fn{{name: "report",
		annotations: map[string]string{"topic": events.TopicBilling, stackfile.AnnotationBatch: "100", stackfile.AnnotationBatchWait: wait},
		handler: verified(t, "report", func(w http.ResponseWriter, r *http.Request) {
			evs, err := events.Parse(r, mustRead(r))
			if err != nil {
				problem.Write(w, r, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if topic := r.Header.Get("X-Topic"); topic != events.TopicBilling {
				t.Errorf("X-Topic %q", topic)
			}
			o := r.Header.Get("X-Kafka-Offsets")
			if !strings.Contains(o, ":") { // one partition's: first-last, or one record's
				o = r.Header.Get("X-Kafka-Partition") + ":" + cmp.Or(o, r.Header.Get("X-Kafka-Offset")+"-"+r.Header.Get("X-Kafka-Offset"))
			}
			offsets = append(offsets, o)
			for _, ev := range evs {
				var d struct{ K, N int }
				_ = json.Unmarshal(ev.Data(), &d)
				if next[d.K] != d.N {
					t.Errorf("key %d: record %d arrived where %d was due", d.K, d.N, next[d.K])
				}
				next[d.K] = d.N + 1
				got++
			}
		})}}, nil)
	waitFor(t, "every record", 15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return got == keys*each })
	mu.Lock()
	defer mu.Unlock()
	if len(offsets) > most {
		t.Fatalf("%d records of %d partitions came in %d requests (X-Kafka-Offsets %q): want at most %d",
			keys*each, len(partitions), len(offsets), offsets, most)
	}
	// Every partition's range, partition:first-last, once in all.
	seen := map[int32]bool{}
	for _, o := range offsets {
		for _, r := range strings.Split(o, ",") {
			var p int32
			var first, last int64
			if _, err := fmt.Sscanf(r, "%d:%d-%d", &p, &first, &last); err != nil || first > last || seen[p] {
				t.Fatalf("X-Kafka-Offsets %q: range %q", o, r)
			}
			seen[p] = true
		}
	}
	if len(seen) != len(partitions) {
		t.Errorf("X-Kafka-Offsets %q name %d partitions, the records are in %d", offsets, len(seen), len(partitions))
	}
}
