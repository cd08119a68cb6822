package main

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
)

// countingListener counts the reads made on the connections it accepts:
// each is at least one system call.
type countingListener struct {
	net.Listener
	reads *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.reads}, nil
}

type countingConn struct {
	net.Conn
	reads *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

// The broker reads each request from its socket once, not once for its
// size and again for its body: a produce is one read (one system call) on
// the stack's side.
func TestKafkaReadsEachRequestOnce(t *testing.T) {
	s := kafkaStack(t)
	ln, err := net.Listen("tcp", s.cfg.KafkaAddr)
	if err != nil {
		t.Fatal(err)
	}
	reads := new(atomic.Int64)
	if err := s.startKafka(countingListener{ln, reads}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.kafka.Close() })

	cfg := outbox.ProducerConfig()
	if err := s.as(kafkaSuperuser).Apply(cfg); err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer([]string{s.cfg.KafkaAddr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func() {
		t.Helper()
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: events.TopicPayment, Key: sarama.StringEncoder("k"),
			Value: sarama.StringEncoder(`{"specversion":"1.0","type":"billfn.transaction.requested"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	send() // connect, authenticate, metadata, producer id
	time.Sleep(100 * time.Millisecond)
	const n = 100
	before := reads.Load()
	for range n {
		send()
	}
	got := reads.Load() - before
	t.Logf("%d produce requests: %d reads on the broker's connections", n, got)
	if got > n+n/10 {
		t.Errorf("%d reads for %d produce requests: more than one read per request", got, n)
	}
}
