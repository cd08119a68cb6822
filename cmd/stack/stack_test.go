package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
)

// A broker restart (Ctrl-C, make run again) must lose no record: kfake
// keeps its log in the run directory.
func TestStackKafkaKeepsRecordsAcrossRestarts(t *testing.T) {
	s := kafkaStack(t)
	addr := s.cfg.KafkaAddr
	start := func() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.startKafka(ln); err != nil {
			t.Fatal(err)
		}
	}
	start()
	pcfg := outbox.ProducerConfig()
	if err := s.as("generate-invoice").Apply(pcfg); err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer([]string{addr}, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: events.TopicBilling, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("kept")})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	s.kafka.Close()

	start() // the same data directory, the topics already there
	defer s.kafka.Close()
	ccfg := sarama.NewConfig()
	if err := s.as(kafkaSuperuser).Apply(ccfg); err != nil {
		t.Fatal(err)
	}
	c, err := sarama.NewConsumer([]string{addr}, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(events.TopicBilling)
	if err != nil || len(parts) != int(events.Topics[events.TopicBilling]) {
		t.Fatalf("billing-events has %d partitions after a restart (%v), want %d", len(parts), err, events.Topics[events.TopicBilling])
	}
	if dlq, err := c.Partitions(DLQTopic); err != nil || len(dlq) != 1 {
		t.Fatalf("%s: %v %v", DLQTopic, dlq, err)
	}
	pc, err := c.ConsumePartition(events.TopicBilling, part, off)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if string(m.Value) != "kept" {
			t.Errorf("got %q", m.Value)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the record did not survive the broker restart")
	}
}

// A service that does not answer is one line naming it and how to start it.
func TestStackNamesAMissingServiceInOneLine(t *testing.T) {
	base := freePorts(t, 10)
	closed := base + 9 // nothing listens there
	env := map[string]string{
		"BILLFN_GATEWAY_ADDR":  "127.0.0.1:" + strconv.Itoa(base),
		"BILLFN_KAFKA_ADDR":    "127.0.0.1:" + strconv.Itoa(base+1),
		"BILLFN_TRIGGER_ADDR":  "127.0.0.1:" + strconv.Itoa(base+2),
		"BILLFN_FUNCTION_PORT": strconv.Itoa(base + 3),
		"BILLFN_RUN_DIR":       t.TempDir(),
		"BILLFN_STACK_FILE":    filepath.Join("..", "..", "stack.yml"),
		"REDIS_URL":            "redis://127.0.0.1:" + strconv.Itoa(closed) + "/0",
	}
	cfg, err := loadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = run(ctx, cfg, &bytes.Buffer{})
	ue, ok := err.(userError)
	if !ok || !strings.Contains(ue.msg, "Redis is not reachable at 127.0.0.1:"+strconv.Itoa(closed)) ||
		!strings.Contains(ue.msg, "redis-server") || strings.Contains(ue.msg, "\n") {
		t.Errorf("got %T %v", err, err)
	}
	// Nothing was left listening.
	for _, p := range []int{base, base + 1} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d still taken after the failed start: %v", p, err)
			continue
		}
		ln.Close()
	}
}
