package outbox_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

// heldProxy forwards TCP connections to target once released: until then
// a client connecting through it waits (accepted tells it connected).
type heldProxy struct {
	ln       net.Listener
	accepted chan struct{}
	release  chan struct{}
	once     sync.Once
}

func newHeldProxy(t *testing.T, target string) *heldProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &heldProxy{ln: ln, accepted: make(chan struct{}, 16), release: make(chan struct{})}
	t.Cleanup(func() { p.open(); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.accepted <- struct{}{}
			go func() {
				<-p.release
				u, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go func() { _, _ = io.Copy(u, c); u.Close() }()
				_, _ = io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	return p
}

func (p *heldProxy) open() { p.once.Do(func() { close(p.release) }) }

// Two replicas of a function relay its outbox (every function scales out,
// and each replica's publisher passes after its commits and on every
// tick). The events of one key must reach Kafka in the order they were
// written: a payment's capture posting before its invoice settlement
// (docs/events.md, "Payments in the ledger"), which process-transaction
// would otherwise reject for want of funds, once and for all. Here
// replica A's pass has taken the first event of a key (its rows locked,
// its producer still connecting to Kafka) when replica B's pass starts:
// B must not relay the key's second event ahead of the first.
func TestTwoRelaysKeepAKeysEventsInOrder(t *testing.T) {
	pool := testenv.FreshPool(t)
	_, brokers := testenv.Kafka(t)
	source := "fn-" + uuid.NewString()[:8]
	key := uuid.NewString()
	var ids []string
	err := postgres.Tx(context.Background(), pool, func(tx pgx.Tx) error {
		var msgs []outbox.Message
		for i := 0; i < 2; i++ { // one transaction, as a capture and its settlement
			ev, err := events.New(context.Background(), source, "billfn.transaction.requested", key, map[string]int{"seq": i})
			if err != nil {
				return err
			}
			msgs = append(msgs, outbox.Message{Topic: events.TopicTransaction, Key: key, Event: ev})
			ids = append(ids, ev.ID())
		}
		return outbox.Add(context.Background(), tx, source, msgs...)
	})
	if err != nil {
		t.Fatal(err)
	}

	proxy := newHeldProxy(t, brokers[0])
	a := outbox.NewPublisher(pool, source, []string{proxy.ln.Addr().String()})
	b := outbox.NewPublisher(pool, source, brokers)
	a.BatchSize, b.BatchSize = 1, 1
	defer a.Close(context.Background())
	defer b.Close(context.Background())

	aDone := make(chan error, 1)
	go func() { _, err := a.Sweep(context.Background()); aDone <- err }()
	select { // A has read its batch, the first event, and connects to Kafka
	case <-proxy.accepted:
	case err := <-aDone:
		t.Fatalf("replica A's sweep ended before connecting to Kafka: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("replica A never connected to Kafka")
	}

	bDone := make(chan error, 1)
	go func() { _, err := b.Sweep(context.Background()); bDone <- err }()
	// B either relays (and returns) or waits for A's pass: a backend of
	// this test's database waiting on a lock. Either way, A goes on then.
	deadline := time.Now().Add(10 * time.Second)
	waiting := false
	for !waiting && time.Now().Before(deadline) {
		select {
		case err := <-bDone:
			if err != nil {
				t.Fatalf("replica B's sweep: %v", err)
			}
			bDone <- nil
			waiting = true
			continue
		default:
		}
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		waiting = n > 0
		if !waiting {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !waiting {
		t.Fatal("replica B neither relayed nor waited")
	}
	proxy.open()
	for _, ch := range []chan error{aDone, bDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("sweep: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a sweep never ended")
		}
	}
	if n := backlog(t, pool, source); n != 0 {
		t.Fatalf("backlog = %d after both sweeps", n)
	}
	recs := consume(t, brokers, events.TopicTransaction, len(ids))
	var got []string
	for _, r := range recs {
		var ev struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) == key {
			got = append(got, ev.ID)
		}
	}
	if len(got) != 2 || got[0] != ids[0] || got[1] != ids[1] {
		t.Fatalf("the key's events reached Kafka as %v, want %v (in the order written)", got, ids)
	}
}
