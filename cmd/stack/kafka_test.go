package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/billfn/billfn/cmd/internal/kafkaacl"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/kafkaauth"
	"github.com/billfn/billfn/shared/outbox"
)

// kafkaStack is a stack that runs only its broker, as make run starts it:
// the table of kafka-acls.yaml, passwords as writeSecrets generates them.
func kafkaStack(t *testing.T) *stack {
	t.Helper()
	stackFile, err := filepath.Abs(filepath.Join("..", "..", "stack.yml"))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePorts(t, 1))
	s := &stack{cfg: config{RunDir: t.TempDir(), KafkaAddr: addr, StackFile: stackFile}, log: &logger{out: &bytes.Buffer{}, width: 5},
		secrets: map[string]string{}}
	names, err := kafkaPasswordNames(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		s.secrets[n] = generated(n)
	}
	return s
}

func (s *stack) startKafkaForTest(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // a restart may wait for the port
		if ln, err = net.Listen("tcp", s.cfg.KafkaAddr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := s.startKafka(ln); err != nil {
		t.Fatal(err)
	}
}

// as is the client configuration of principal (its password from the
// stack's secrets); "" is an anonymous client.
func (s *stack) as(principal string) kafkaauth.Config {
	if principal == "" {
		return kafkaauth.Config{}
	}
	return kafkaauth.Config{Mechanism: kafkaacl.Mechanism, Username: principal, Password: s.secrets[kafkaacl.PasswordSecret(principal)]}
}

// produce sends one record as a function's outbox does (outbox.ProducerConfig:
// idempotent, acks=all) and returns the error.
func (s *stack) produce(t *testing.T, auth kafkaauth.Config, topic string) error {
	t.Helper()
	cfg := outbox.ProducerConfig()
	cfg.Net.DialTimeout, cfg.Net.ReadTimeout = time.Second, 2*time.Second
	// A refusal is final: no retries, so the test is quick.
	cfg.Producer.Retry.Max, cfg.Metadata.Retry.Max = 1, 0
	if err := auth.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	p, err := sarama.NewSyncProducer([]string{s.cfg.KafkaAddr}, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	_, _, err = p.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k"),
		Value: sarama.StringEncoder(`{"specversion":"1.0","type":"billfn.transaction.requested"}`)})
	return err
}

// consume joins group on topic as auth and reads one record from it (the
// test writes one first, as the superuser): what the kafka-trigger does.
func (s *stack) consume(t *testing.T, auth kafkaauth.Config, group, topic string) error {
	t.Helper()
	if err := s.produce(t, s.as(kafkaSuperuser), topic); err != nil {
		t.Fatal(err)
	}
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Return.Errors = true
	cfg.Net.DialTimeout, cfg.Net.ReadTimeout = time.Second, 2*time.Second
	cfg.Metadata.Retry.Max = 1
	if err := auth.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	cg, err := sarama.NewConsumerGroup([]string{s.cfg.KafkaAddr}, group, cfg)
	if err != nil {
		return err
	}
	defer cg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := &claimed{cancel: cancel}
	var failed error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for err := range cg.Errors() {
			if failed == nil {
				failed = err
			}
			cancel()
		}
	}()
	err = cg.Consume(ctx, []string{topic}, h)
	cg.Close()
	<-done
	if h.got.Load() {
		return nil
	}
	for _, e := range []error{err, failed, ctx.Err()} {
		if e != nil {
			return e
		}
	}
	return errors.New("no record")
}

type claimed struct {
	cancel context.CancelFunc
	got    atomic.Bool
}

func (c *claimed) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *claimed) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (c *claimed) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	select {
	case _, ok := <-claim.Messages():
		if ok {
			c.got.Store(true)
			c.cancel()
		}
	case <-sess.Context().Done():
	}
	return nil
}

// authzRefused reports whether err is the broker's refusal to authorize,
// not a connection problem.
func authzRefused(err error) bool {
	return errors.Is(err, sarama.ErrTopicAuthorizationFailed) || errors.Is(err, sarama.ErrClusterAuthorizationFailed) ||
		errors.Is(err, sarama.ErrGroupAuthorizationFailed) ||
		strings.Contains(err.Error(), sarama.ErrTopicAuthorizationFailed.Error()) ||
		strings.Contains(err.Error(), sarama.ErrClusterAuthorizationFailed.Error()) ||
		strings.Contains(err.Error(), sarama.ErrGroupAuthorizationFailed.Error())
}

// The local broker refuses whoever does not log in, and whoever logs in
// with a wrong password; the same client with its password gets through.
func TestKafkaRefusesAnonymousAndWrongPassword(t *testing.T) {
	s := kafkaStack(t)
	s.startKafkaForTest(t)
	defer s.kafka.Close()

	if err := s.produce(t, s.as(""), events.TopicTransaction); err == nil {
		t.Error("an unauthenticated producer wrote a transfer request to transaction-events")
	}
	wrong := s.as(kafkaacl.Integrator)
	wrong.Password = "not-" + wrong.Password
	if err := s.produce(t, wrong, events.TopicTransaction); err == nil {
		t.Error("the integrator with a wrong password wrote to transaction-events")
	}
	unknown := kafkaauth.Config{Mechanism: kafkaacl.Mechanism, Username: "mallory", Password: "whatever-it-is"}
	if err := s.produce(t, unknown, events.TopicTransaction); err == nil {
		t.Error("an unknown user wrote to transaction-events")
	}
	if err := s.produce(t, s.as(kafkaacl.Integrator), events.TopicTransaction); err != nil {
		t.Errorf("control: the integrator with its password: %v", err)
	}
}

// Every principal can do exactly what the table says, over the wire,
// with the clients billfn uses: each function writes its own topics and
// is refused every other; the integrator requests transfers and nothing
// else; only the kafka-trigger reads, in its own groups, and it writes
// only the dead-letter topic.
func TestKafkaPrincipalsCanDoExactlyTheirPart(t *testing.T) {
	s := kafkaStack(t)
	s.startKafkaForTest(t)
	defer s.kafka.Close()
	tab, err := aclTable(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	topics := append(slices.Sorted(func(yield func(string) bool) {
		for topic := range events.Topics {
			if !yield(topic) {
				return
			}
		}
	}), DLQTopic)
	for _, p := range tab.Principals {
		for _, topic := range topics {
			err := s.produce(t, s.as(p.Name), topic)
			switch {
			case slices.Contains(p.Write, topic) && err != nil:
				t.Errorf("%s cannot write %s, which the table gives it: %v", p.Name, topic, err)
			case !slices.Contains(p.Write, topic) && err == nil:
				t.Errorf("%s wrote to %s, which the table does not give it", p.Name, topic)
			case !slices.Contains(p.Write, topic) && !authzRefused(err):
				t.Errorf("%s writing %s: refused, but not by authorization: %v", p.Name, topic, err)
			}
		}
	}
	// Reading: the kafka-trigger in its groups; nobody else, nowhere else.
	trig := s.as(kafkaacl.Trigger)
	for _, topic := range []string{events.TopicTransaction, events.TopicPayment} {
		if err := s.consume(t, trig, "kafka-trigger-process-transaction", topic); err != nil {
			t.Errorf("the kafka-trigger cannot consume %s in its group: %v", topic, err)
		}
	}
	if err := s.consume(t, trig, "knative-capture-payment", events.TopicPayment); err != nil {
		t.Errorf("the kafka-trigger cannot consume in a KafkaSource's group: %v", err)
	}
	if err := s.consume(t, trig, "someone-elses-group", events.TopicPayment); err == nil {
		t.Error("the kafka-trigger consumed in a group outside its prefixes")
	}
	if err := s.consume(t, trig, "kafka-trigger-x", DLQTopic); err == nil {
		t.Error("the kafka-trigger read the dead-letter topic it may only write")
	}
	for _, who := range []string{kafkaacl.Integrator, "process-transaction", "capture-payment"} {
		if err := s.consume(t, s.as(who), "kafka-trigger-"+who, events.TopicTransaction); err == nil {
			t.Errorf("%s read transaction-events: only the kafka-trigger reads", who)
		}
	}
}

// The integrator can request a transfer and nothing else: not a payment,
// an invoice, an account fact, a dead letter.
func TestIntegratorMayOnlyRequestTransfers(t *testing.T) {
	s := kafkaStack(t)
	s.startKafkaForTest(t)
	defer s.kafka.Close()
	in := s.as(kafkaacl.Integrator)
	if err := s.produce(t, in, events.TopicTransaction); err != nil {
		t.Fatalf("the integrator cannot request a transfer: %v", err)
	}
	for _, topic := range []string{events.TopicPayment, events.TopicBilling, events.TopicUser, DLQTopic} {
		if err := s.produce(t, in, topic); err == nil || !authzRefused(err) {
			t.Errorf("the integrator producing to %s: %v, want an authorization refusal", topic, err)
		}
	}
}

// A restart on the same data directory (SIGUSR2, make run again) enforces
// the table as it is now: kfake keeps users and ACLs in its data, the
// stack forgets them and applies the table again, so the rules still hold
// and a password rotated in bin/run/secrets is the one that works.
func TestKafkaRestartAppliesTheTableAgain(t *testing.T) {
	s := kafkaStack(t)
	s.startKafkaForTest(t)
	if err := s.produce(t, s.as(kafkaacl.Integrator), events.TopicTransaction); err != nil {
		t.Fatal(err)
	}
	s.kafka.Close()
	if _, err := os.Stat(filepath.Join(s.cfg.RunDir, "kafka", "acls.json")); err != nil {
		t.Fatalf("kfake kept no ACLs in its data (%v): this test would prove nothing", err)
	}
	old := s.as(kafkaacl.Integrator)
	s.secrets[kafkaacl.PasswordSecret(kafkaacl.Integrator)] = generated("rotated")
	s.startKafkaForTest(t)
	defer s.kafka.Close()
	if err := s.produce(t, s.as(kafkaacl.Integrator), events.TopicTransaction); err != nil {
		t.Errorf("after a restart the integrator with its new password: %v", err)
	}
	if err := s.produce(t, old, events.TopicTransaction); err == nil {
		t.Error("after a rotation the old password still works")
	}
	if err := s.produce(t, s.as(kafkaacl.Integrator), events.TopicPayment); err == nil {
		t.Error("after a restart the integrator wrote to payment-events")
	}
	if err := s.produce(t, s.as(""), events.TopicTransaction); err == nil {
		t.Error("after a restart an anonymous producer got in")
	}
	if err := s.produce(t, s.as("capture-payment"), events.TopicPayment); err != nil {
		t.Errorf("after a restart capture-payment cannot publish its payments: %v", err)
	}
}

// make run hands the integrator a librdkafka properties file with its
// settings and nobody else's password; each function and the kafka-trigger
// find only their own Kafka password in their SECRETS_DIR.
func TestIntegratorPropertiesAndOwnPasswords(t *testing.T) {
	s := kafkaStack(t)
	path, err := s.writeIntegratorProperties()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	props := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			props[k] = v
		}
	}
	want := map[string]string{
		"bootstrap.servers": s.cfg.KafkaAddr, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
		"sasl.username": "integrator", "sasl.password": s.secrets[kafkaacl.PasswordSecret(kafkaacl.Integrator)],
	}
	for k, v := range want {
		if props[k] != v || v == "" {
			t.Errorf("%s = %q, want %q", k, props[k], v)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v (%v), want 0600: it holds a password", path, fi.Mode(), err)
	}
}

// kafkaAs is the client configuration of principal on a running stack
// (its password from the stack's secrets).
func (e *e2e) kafkaAs(principal string) kafkaauth.Config {
	return kafkaauth.Config{Mechanism: kafkaacl.Mechanism, Username: principal, Password: e.secret(kafkaacl.PasswordSecret(principal))}
}

// kafkaLogin logs a franz-go client into a running stack's broker as
// principal; the tests read topics as the stack's superuser.
func (e *e2e) kafkaLogin(principal string) kgo.Opt {
	return kgo.SASL(scram.Auth{User: principal, Pass: e.secret(kafkaacl.PasswordSecret(principal))}.AsSha512Mechanism())
}

// integratorProperties is the librdkafka properties file make run writes
// for the integrator (kcat -F).
func (e *e2e) integratorProperties() string { return filepath.Join(e.runDir, integratorProperties) }
