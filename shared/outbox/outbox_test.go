package outbox_test

import (
	"bytes"
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
	return writeTo(t, pool, source, events.TopicTransaction, n)
}

// writeTo commits n events of source bound for topic to the outbox.
func writeTo(t *testing.T, pool *pgxpool.Pool, source, topic string, n int) []string {
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
			msgs = append(msgs, outbox.Message{Topic: topic, Key: acct, Event: ev})
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
func consume(t *testing.T, brokers []string, topic string, want int, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
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

// publishSigned relays source's outbox, the events ids, in one sweep by a
// publisher signing with signer, and returns the records Kafka got, checked
// to be those events.
func publishSigned(t *testing.T, pool *pgxpool.Pool, source string, brokers []string, signer *events.OriginSigner, ids []string) []*kgo.Record {
	t.Helper()
	pub := outbox.NewPublisher(pool, source, brokers)
	pub.Signer = signer
	if n, err := pub.Sweep(context.Background()); err != nil || n != len(ids) {
		t.Fatalf("sweep: %d %v, want %d", n, err, len(ids))
	}
	pub.Close(context.Background())
	recs := consume(t, brokers, events.TopicTransaction, len(ids))
	checkRecords(t, recs, ids)
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
	signer := testenv.OriginSigner(events.Source(source))
	recs := publishSigned(t, pool, source, brokers, signer, ids)
	keys := testenv.OriginKeys()
	keys.Add(events.Source(source), signer.Public())
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

// writeSigned writes n events of source through a Writer with signer.
func writeSigned(t *testing.T, pool *pgxpool.Pool, source string, signer *events.OriginSigner, n int) []string {
	t.Helper()
	var ids []string
	w := outbox.Writer{Source: source, Signer: signer}
	err := postgres.Tx(context.Background(), pool, func(tx pgx.Tx) error {
		var msgs []outbox.Message
		for i := 0; i < n; i++ {
			ev, err := events.New(context.Background(), source, "billfn.transaction.posted", "acct-s", map[string]int{"seq": i})
			if err != nil {
				return err
			}
			msgs = append(msgs, outbox.Message{Topic: events.TopicTransaction, Key: "acct-s", Event: ev})
			ids = append(ids, ev.ID())
		}
		return w.Add(context.Background(), tx, msgs...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// Issue 20: a Writer with the function's origin key signs each event as it
// writes it and names the key in the row; the publisher with that key
// relays the row byte for byte (no decode, no second signature), and the
// event verifies. Rows written unsigned beside them are signed at publish
// as before.
func TestAWriterSignsAsItWritesAndThePublisherRelaysTheRowAsItIs(t *testing.T) {
	pool := testenv.Pool(t)
	_, brokers := testenv.Kafka(t)
	source := "fn-" + uuid.NewString()[:8]
	signer := testenv.OriginSigner(events.Source(source))
	ids := writeSigned(t, pool, source, signer, 4)
	ids = append(ids, write(t, pool, source, 3)...) // unsigned (outbox.Add)

	stored := map[string][]byte{}
	rows, err := pool.Query(context.Background(), `SELECT event_id, payload, origin_kid FROM outbox WHERE source = $1`, source)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close() // a failure below must not leave the pool waiting for its connection
	signedRows := 0
	for rows.Next() {
		var id string
		var payload []byte
		var kid *string
		if err := rows.Scan(&id, &payload, &kid); err != nil {
			t.Fatal(err)
		}
		if kid != nil {
			if *kid != signer.KeyID() {
				t.Fatalf("origin_kid %q, want the writer's key %q", *kid, signer.KeyID())
			}
			stored[id] = payload
			signedRows++
		}
	}
	if rows.Err() != nil || signedRows != 4 {
		t.Fatalf("%d rows signed as written (%v), want the Writer's 4", signedRows, rows.Err())
	}

	recs := publishSigned(t, pool, source, brokers, signer, ids)
	keys := testenv.OriginKeys()
	keys.Add(events.Source(source), signer.Public())
	for _, r := range recs {
		ev, err := events.Unmarshal(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if err := keys.Verify(ev); err != nil {
			t.Fatalf("event %s: %v", ev.ID(), err)
		}
		if want, ok := stored[ev.ID()]; ok && !bytes.Equal(r.Value, want) {
			t.Fatalf("a row signed as written was not relayed as it is:\nstored %s\nsent   %s", want, r.Value)
		}
	}
}

// Issue 20: rows signed as written with a key the publisher no longer has
// (the function's key before a rotation, written by a replica not yet
// restarted or before the restart) are signed again at publish with the
// publisher's key: they verify for consumers that still trust the old key
// and for those that trust only the new one — a retired (or revoked) key's
// proof never reaches Kafka from an outbox.
func TestRowsSignedWithARetiredKeyAreSignedAgainWithThePublishersKey(t *testing.T) {
	pool := testenv.Pool(t)
	_, brokers := testenv.Kafka(t)
	source := "fn-" + uuid.NewString()[:8]
	oldKey := testenv.OriginSigner("old key of " + source)
	newKey := testenv.OriginSigner(events.Source(source))
	ids := writeSigned(t, pool, source, oldKey, 3)

	recs := publishSigned(t, pool, source, brokers, newKey, ids)

	onlyNew, _ := events.ParseOriginKeys(newKey.PublicLine(events.Source(source)), "new")
	both, _ := events.ParseOriginKeys(newKey.PublicLine(events.Source(source))+"\n"+oldKey.PublicLine(events.Source(source)), "both")
	onlyOld, _ := events.ParseOriginKeys(oldKey.PublicLine(events.Source(source)), "old")
	for _, r := range recs {
		ev, err := events.Unmarshal(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if kid := ev.Extensions()[events.OriginKidExt]; kid != newKey.KeyID() {
			t.Fatalf("relayed with key %v, want the publisher's %s", kid, newKey.KeyID())
		}
		if err := onlyNew.Verify(ev); err != nil {
			t.Fatalf("with the old key retired: %v", err)
		}
		if err := both.Verify(ev); err != nil {
			t.Fatalf("during the rotation: %v", err)
		}
		if err := onlyOld.Verify(ev); !errors.Is(err, events.ErrBadOrigin) {
			t.Fatalf("a consumer without the new key: %v, want it refused", err)
		}
	}
}
