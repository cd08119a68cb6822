package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
)

// originSigner is the stack's origin key name (origin-key-<function>, or
// origin-key-integrator) as a signer, read from bin/run/secrets.
func (e *e2e) originSigner(t *testing.T, name string) *events.OriginSigner {
	t.Helper()
	s, err := events.ParseOriginSigner([]byte(e.secret(name)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

// asIntegrator makes ev the local integrator's: its source, its proof
// (what go run ./cmd/sign-event does).
func (e *e2e) asIntegrator(t *testing.T, ev events.Event) events.Event {
	t.Helper()
	ev = ev.Clone()
	ev.SetSource(integratorSource)
	e.originSigner(t, integratorOriginKey).Sign(&ev)
	return ev
}

// produceAs writes ev to topic as the broker principal (its Kafka
// password from bin/run/secrets when the broker requires one): a valid
// producer, allowed to write that topic.
func (e *e2e) produceAs(t *testing.T, principal, topic, key string, ev events.Event) {
	t.Helper()
	body, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(e.kafka), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite()}
	if pw, err := os.ReadFile(filepath.Join(e.runDir, "secrets", "kafka-password-"+principal)); err == nil {
		opts = append(opts, kgo.SASL(scram.Auth{User: principal, Pass: strings.TrimSpace(string(pw))}.AsSha512Mechanism()))
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: topic, Key: []byte(key), Value: body,
		Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte(events.ContentTypeStructured)}}}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("%s producing %s to %s: %v", principal, ev.Type(), topic, err)
	}
}

// attacksForgedOrigins (issue 15, a fact only from its owner): a valid
// broker principal writes, on a topic it may write, a fact claiming
// another source — unsigned, or signed with its own function's key or
// the integrator's, alone or in a tree. Every consumer parks it with the
// reason and nothing changes; the integrator's key requests a transfer and
// nothing else.
func attacksForgedOrigins(t *testing.T, s *attackScene) {
	e, b, v, before := s.e, s.b, s.v, s.before
	t.Run("a principal forging another source's fact gets it parked with nothing changed", func(t *testing.T) {
		captured := func() events.Event {
			return mustEvent(t, "billfn.payment.captured", v.openInvoice, map[string]any{
				"payment_id": uuid.NewString(), "invoice_id": v.openInvoice, "account_id": b.account, "amount": 12000,
				"amount_captured": 12000, "currency": "USD", "status": "succeeded", "gateway": "sandbox"})
		}
		claim := func(ev events.Event) events.Event {
			ev.SetSource(events.Source("capture-payment"))
			return ev
		}
		unsigned := claim(captured())
		byWebhook := claim(captured())
		e.originSigner(t, platform.OriginKeySecret("handle-webhook")).Sign(&byWebhook)
		byIntegrator := claim(captured())
		e.originSigner(t, integratorOriginKey).Sign(&byIntegrator)
		// handle-webhook's principal may write payment-events.
		forged := map[string]events.Event{"unsigned": unsigned, "signed by handle-webhook": byWebhook, "signed by the integrator": byIntegrator}
		for _, ev := range forged {
			e.produceAs(t, "handle-webhook", events.TopicPayment, b.account, ev)
		}
		// The integrator may write transaction-events: a posted transfer
		// claiming process-transaction, signed with its key, is no fact.
		posted := mustEvent(t, "billfn.transaction.posted", b.account, map[string]any{
			"id": uuid.NewString(), "from_account_id": s.a.account, "to_account_id": b.account, "amount": 555_555, "currency": "USD",
			"status": "posted"})
		posted.SetSource(events.Source("process-transaction"))
		e.originSigner(t, integratorOriginKey).Sign(&posted)
		e.quiesce(30 * time.Second) // what the classes before set off is in the report
		reportBefore, _ := figure(e.summary("USD", ""), "transfers.posted")
		e.produceAs(t, "integrator", events.TopicTransaction, b.account, posted)
		forged["transfer posted, signed by the integrator"] = posted
		// The same claim in a tree of two (originpath), as a function signs
		// the events it writes together: the tree's key is still the
		// integrator's, not process-transaction's.
		payloads, msgs := make([][]byte, 2), make([][]byte, 2)
		for i := range payloads {
			ev := mustEvent(t, "billfn.transaction.posted", b.account, map[string]any{
				"id": uuid.NewString(), "from_account_id": s.a.account, "to_account_id": b.account, "amount": 444_444 + i,
				"currency": "USD", "status": "posted"})
			ev.SetSource(events.Source("process-transaction"))
			var ok bool
			if payloads[i], msgs[i], ok = events.MarshalLater(ev); !ok {
				t.Fatalf("MarshalLater refused %s", ev)
			}
		}
		e.originSigner(t, integratorOriginKey).SignAll(payloads, msgs)
		for i, p := range payloads {
			ev, err := events.Unmarshal(p)
			if err != nil || ev.Extensions()[events.OriginPathExt] == nil {
				t.Fatalf("a tree's event %s: %v", p, err)
			}
			e.produceAs(t, "integrator", events.TopicTransaction, b.account, ev)
			forged[fmt.Sprintf("transfer posted, signed by the integrator in a tree (%d of 2)", i+1)] = ev
		}

		for name, ev := range forged {
			e.eventually("the forgery "+name+" to be parked", 60*time.Second, func() bool {
				return e.scalar(`SELECT count(*) FROM dead_letters WHERE event_id = $1 AND error LIKE '%origin proof%'`, ev.ID()) > 0
			})
			if n := e.scalar(`SELECT count(*) FROM processed_events WHERE id = $1`, ev.ID()); n != 0 {
				t.Errorf("%s: recorded as processed by %d consumers", name, n)
			}
		}
		// Several consumers read transaction-events (handle-webhook too, for
		// the merchants' endpoints): the loop above ends at the first one
		// that parked it, so wait for aggregate-report's own.
		e.eventually("aggregate-report to park the forged posted transfer", 60*time.Second, func() bool {
			return e.scalar(`SELECT count(*) FROM dead_letters WHERE consumer = 'aggregate-report' AND event_id = $1`, posted.ID()) > 0
		})
		if n := e.scalar(`SELECT count(*) FROM dead_letters WHERE consumer = 'aggregate-report' AND event_id = $1`, posted.ID()); n != 1 {
			t.Errorf("aggregate-report parked the forged posted transfer %d times, want once", n)
		}
		e.quiesce(30 * time.Second)
		if after := v.state(e); after != before {
			t.Errorf("B's resources changed:\nbefore %+v\nafter  %+v", before, after)
		}
		if n, _ := figure(e.summary("USD", ""), "transfers.posted"); n != reportBefore {
			t.Errorf("the report counts %d posted transfers, %d before the forgery", n, reportBefore)
		}
	})
	t.Run("the integrator's key requests a transfer", func(t *testing.T) {
		start := e.balance(s.a.account)
		req := e.asIntegrator(t, mustEvent(t, "billfn.transaction.requested", s.a.account, map[string]any{
			"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": s.a.account, "amount": 7, "currency": "USD"}))
		e.produceAs(t, "integrator", events.TopicTransaction, s.a.account, req)
		e.eventually("the integrator's transfer to post", 60*time.Second, func() bool { return e.balance(s.a.account) == start+7 })
		// The same request under process-transaction's source, with the
		// integrator's key: no proof of that source.
		stolen := e.asIntegrator(t, mustEvent(t, "billfn.transaction.requested", s.a.account, map[string]any{
			"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": s.a.account, "amount": 1_000, "currency": "USD"}))
		stolen.SetSource(events.Source("process-transaction"))
		e.produceAs(t, "integrator", events.TopicTransaction, s.a.account, stolen)
		e.eventually("the request under another source to be parked", 60*time.Second, func() bool {
			return e.scalar(`SELECT count(*) FROM dead_letters WHERE event_id = $1`, stolen.ID()) > 0
		})
		e.quiesce(20 * time.Second)
		if got := e.balance(s.a.account); got != start+7 {
			t.Errorf("A's balance %d, want %d", got, start+7)
		}
		e.req("POST", "/function/process-transaction/transfers", map[string]any{ // back to where A was
			"from_account_id": s.a.account, "to_account_number": "SYS-EXTERNAL-USD", "amount": 7, "currency": "USD"}, "Idempotency-Key", uuid.NewString())
	})
}
