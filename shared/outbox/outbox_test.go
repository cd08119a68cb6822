package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func write(t *testing.T, pool *pgxpool.Pool, source string, n int) []string {
	t.Helper()
	var ids []string
	err := postgres.Tx(context.Background(), pool, func(tx pgx.Tx) error {
		var msgs []outbox.Message
		for i := 0; i < n; i++ {
			acct := fmt.Sprintf("acct-%d", i%3)
			ev, err := events.New(context.Background(), source, "billfn.transaction.posted", acct, map[string]int{"seq": i})
			if err != nil {
				return err
			}
			msgs = append(msgs, outbox.Message{Topic: events.TopicTransaction, Key: acct, Event: ev})
			ids = append(ids, ev.ID())
		}
		return outbox.Add(context.Background(), tx, source, msgs...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// consume reads records from topic until want ids arrived or the deadline.
func consume(t *testing.T, brokers []string, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(recs) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs
}

func checkRecords(t *testing.T, recs []*kgo.Record, ids []string) {
	t.Helper()
	got := map[string]int{}
	for _, r := range recs {
		var ct string
		for _, h := range r.Headers {
			if h.Key == "content-type" {
				ct = string(h.Value)
			}
		}
		if ct != events.ContentTypeStructured {
			t.Fatalf("record content-type header = %q", ct)
		}
		var ev event.Event
		if err := ev.UnmarshalJSON(r.Value); err != nil {
			t.Fatalf("record is not a structured CloudEvent: %v", err)
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("invalid CloudEvent: %v", err)
		}
		if string(r.Key) != ev.Subject() {
			t.Fatalf("key %q, want the aggregate id %q", r.Key, ev.Subject())
		}
		got[ev.ID()]++
	}
	for _, id := range ids {
		if got[id] != 1 {
			t.Fatalf("event %s arrived %d times, want exactly once (%d records for %d events)", id, got[id], len(recs), len(ids))
		}
	}
}

func backlog(t *testing.T, pool *pgxpool.Pool, source string) int {
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE source = $1`, source).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// drained waits until source's outbox rows are all published, and fails
// with what (the kick it waited on) when some are left after 10 s.
func drained(t *testing.T, pool *pgxpool.Pool, source, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for backlog(t, pool, source) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := backlog(t, pool, source); n != 0 {
		t.Fatalf("backlog = %d %s", n, what)
	}
}

func TestKickPublishesCommittedEventsAsStructuredCloudEvents(t *testing.T) {
	pool := testenv.Pool(t)
	_, brokers := testenv.Kafka(t)
	source := "fn-" + uuid.NewString()[:8]
	pub := outbox.NewPublisher(pool, source, brokers)
	pub.Start(context.Background())
	defer pub.Close(context.Background())

	ids := write(t, pool, source, 25)
	pub.Kick()
	drained(t, pool, source, "after kick")
	checkRecords(t, consume(t, brokers, events.TopicTransaction, len(ids)), ids)
}

// Kafka goes away: writes still commit, the sweep fails and keeps the
// events; Kafka comes back: one sweep delivers every event exactly once.
func TestKafkaOutageDelaysButLosesNothing(t *testing.T) {
	pool := testenv.Pool(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	cluster, err := testenv.NewKafka(kfake.Ports(port), kfake.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	brokers := cluster.ListenAddrs()
	source := "fn-" + uuid.NewString()[:8]
	pub := outbox.NewPublisher(pool, source, brokers)

	before := write(t, pool, source, 5)
	if n, err := pub.Sweep(context.Background()); err != nil || n != 5 {
		t.Fatalf("sweep with Kafka up = %d, %v", n, err)
	}

	cluster.Close()
	during := write(t, pool, source, 7) // the business writes still commit
	if _, err := pub.Sweep(context.Background()); err == nil {
		t.Fatal("sweep succeeded with Kafka down")
	}
	if n := backlog(t, pool, source); n != 7 {
		t.Fatalf("backlog during outage = %d, want 7", n)
	}
	var attempts int
	var lastErr *string
	pool.QueryRow(context.Background(), `SELECT max(attempts), max(last_error) FROM outbox WHERE source = $1`, source).Scan(&attempts, &lastErr)
	if attempts < 1 || lastErr == nil {
		t.Fatalf("failed attempt not recorded: attempts=%d last_error=%v", attempts, lastErr)
	}

	cluster, err = testenv.NewKafka(kfake.Ports(port), kfake.DataDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var sent int
	deadline := time.Now().Add(15 * time.Second)
	for backlog(t, pool, source) > 0 && time.Now().Before(deadline) {
		n, _ := pub.Sweep(context.Background())
		sent += n
		time.Sleep(100 * time.Millisecond)
	}
	if n := backlog(t, pool, source); n != 0 {
		t.Fatalf("backlog after Kafka returned = %d", n)
	}
	pub.Close(context.Background())
	all := append(before, during...)
	sort.Strings(all)
	checkRecords(t, consume(t, brokers, events.TopicTransaction, len(all)), all)
}

func TestConcurrentSweepsNeverSendARowTwice(t *testing.T) {
	pool := testenv.Pool(t)
	_, brokers := testenv.Kafka(t)
	source := "fn-" + uuid.NewString()[:8]
	ids := write(t, pool, source, 300)
	// Two "processes": separate publishers sweeping at the same time.
	a := outbox.NewPublisher(pool, source, brokers)
	b := outbox.NewPublisher(pool, source, brokers)
	a.BatchSize, b.BatchSize = 50, 50
	errs := make(chan error, 2)
	go func() { _, err := a.Sweep(context.Background()); errs <- err }()
	go func() { _, err := b.Sweep(context.Background()); errs <- err }()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	a.Close(context.Background())
	b.Close(context.Background())
	checkRecords(t, consume(t, brokers, events.TopicTransaction, len(ids)), ids)
}

// Issue 15: every event relayed carries the function's origin proof, rows
// written before it had a key too; an event of another source in its
// outbox is relayed without a proof (consumers park it) and holds up
// nothing behind it.
func TestRelayedEventsCarryTheFunctionsOriginProof(t *testing.T) {
	pool := testenv.Pool(t)
	_, brokers := testenv.Kafka(t)
	source := "fn-" + uuid.NewString()[:8]
	ids := write(t, pool, source, 5) // written unsigned, as before the keys
	if err := postgres.Tx(context.Background(), pool, func(tx pgx.Tx) error {
		ev, err := events.New(context.Background(), "capture-payment", "billfn.payment.captured", "acct-x", map[string]int{"n": 1})
		if err != nil {
			return err
		}
		ids = append(ids, ev.ID())
		return outbox.Add(context.Background(), tx, source, outbox.Message{Topic: events.TopicTransaction, Key: "acct-x", Event: ev})
	}); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, write(t, pool, source, 5)...)
	pub := outbox.NewPublisher(pool, source, brokers)
	pub.Signer = testenv.OriginSigner(events.Source(source))
	if n, err := pub.Sweep(context.Background()); err != nil || n != len(ids) {
		t.Fatalf("sweep: %d %v, want %d", n, err, len(ids))
	}
	pub.Close(context.Background())
	recs := consume(t, brokers, events.TopicTransaction, len(ids))
	checkRecords(t, recs, ids)
	keys := testenv.OriginKeys()
	keys.Add(events.Source(source), pub.Signer.Public())
	signed, foreign := 0, 0
	for _, r := range recs {
		ev, err := events.Unmarshal(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		err = keys.Verify(ev)
		switch ev.Source() {
		case events.Source(source):
			if err != nil {
				t.Errorf("the function's own event %s: %v", ev.ID(), err)
			}
			signed++
		default:
			if !errors.Is(err, events.ErrNoOrigin) {
				t.Errorf("another source's event in its outbox: %v, want it relayed without a proof", err)
			}
			foreign++
		}
	}
	if signed != 10 || foreign != 1 {
		t.Fatalf("%d signed, %d foreign; want 10 and 1", signed, foreign)
	}
}
