package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// consumers are the functions that consume a captured payment's events.
var consumers = []string{"process-transaction", "generate-invoice", "aggregate-report", "handle-webhook"}

// TestTraceOfAPaymentCrossesKafka (issue 19): one POST /payments with
// confirm=true, sent with a traceparent of the test's own, makes one trace
// in a real Jaeger holding spans of the gateway, capture-payment, the
// kafka-trigger and at least three consumer functions; a delivery span of
// the kafka-trigger is the child of a capture-payment span (the event's
// traceparent, across Kafka) and a consumer's span the child of that
// delivery; a consumer's log line carries the producer's trace_id.
func TestTraceOfAPaymentCrossesKafka(t *testing.T) {
	j := testenv.StartJaeger(t)
	e := startStack(t, stackOptions{env: []string{"BILLFN_OTLP_ENDPOINT=" + j.OTLP, "LOG_LEVEL=debug"}})
	c := e.newCustomer("USD")
	r := e.req(http.MethodPost, "/function/generate-invoice/invoices", map[string]any{
		"account_id": c.account, "currency": "USD", "collection_method": "send_invoice", "net_terms_days": 30,
		"customer":      map[string]any{"name": "Grace Hopper", "email": "grace@example.com"},
		"line_items":    []any{map[string]any{"description": "Compiler time", "quantity": "1", "unit_amount": 2_900}},
		"auto_finalize": true,
	}, "Idempotency-Key", uuid.NewString())
	if r.status != http.StatusCreated {
		t.Fatalf("invoice: %s", r)
	}
	tp, traceID, _ := newParent()
	p := e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{
		"account_id": c.account, "invoice_id": str(r.body, "id"), "amount": 2_900, "currency": "USD",
		"payment_method": "pm_card_visa", "confirm": true},
		"Authorization", "Bearer "+c.token, "Idempotency-Key", uuid.NewString(),
		"Traceparent", tp)
	if p.status != http.StatusCreated {
		t.Fatalf("payment: %s", p)
	}

	waitTrace(t, j, traceID, traceComplete)

	// The consumer's log line (LOG_LEVEL=debug: every request is logged)
	// names the producer's trace.
	e.eventually("a consumer's log line with the payment's trace_id", 30*time.Second, func() bool {
		for _, line := range strings.Split(e.out.String(), "\n") {
			if !strings.Contains(line, `"trace_id":"`+traceID+`"`) {
				continue
			}
			for _, fn := range consumers {
				if strings.Contains(line, `"function":"`+fn+`"`) {
					return true
				}
			}
		}
		return false
	})
}

// spansByID indexes a trace's spans by their span id.
func spansByID(spans []testenv.JaegerSpan) map[string]testenv.JaegerSpan {
	byID := make(map[string]testenv.JaegerSpan, len(spans))
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	return byID
}

// waitTrace polls Jaeger until complete says nothing is missing from the
// trace (spans arrive in batches, the consumers' after the deliveries').
func waitTrace(t *testing.T, j *testenv.Jaeger, traceID string, complete func([]testenv.JaegerSpan) string) {
	t.Helper()
	for deadline := time.Now().Add(90 * time.Second); ; {
		spans, err := j.Trace(traceID)
		if err != nil {
			t.Fatal(err)
		}
		why := complete(spans)
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			services, _ := j.Services()
			for _, s := range spans {
				t.Logf("span %s %s %q parent %s", s.Service, s.SpanID, s.OperationName, s.Parent())
			}
			t.Fatalf("trace %s after 90s: %s (Jaeger knows the services %v)", traceID, why, services)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// newParent is a fresh sampled traceparent and its trace and span ids.
func newParent() (tp, traceID, spanID string) {
	var tid [16]byte
	var sid [8]byte
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	traceID, spanID = hex.EncodeToString(tid[:]), hex.EncodeToString(sid[:])
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// TestTraceOfAKafkaProducedTransferRequest (issue 19): an integrator's
// billfn.transaction.requested, produced straight into Kafka with a
// traceparent of its own, is delivered and applied in that trace: a
// kafka-trigger delivery span child of the producer's span, and
// process-transaction's work below it.
func TestTraceOfAKafkaProducedTransferRequest(t *testing.T) {
	j := testenv.StartJaeger(t)
	e := startStack(t, stackOptions{env: []string{"BILLFN_OTLP_ENDPOINT=" + j.OTLP}})
	c := e.newCustomer("USD")
	tp, traceID, producer := newParent()
	ev := mustEvent(t, "billfn.transaction.requested", c.account, map[string]any{
		"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": c.account, "amount": 7, "currency": "USD"})
	ev.SetExtension(events.TraceParentExt, tp)
	ev = e.asIntegrator(t, ev) // signed after: traceparent is not part of the proof either way
	start := e.balance(c.account)
	e.produceAs(t, "integrator", events.TopicTransaction, c.account, ev)
	e.eventually("the integrator's transfer to post", 60*time.Second, func() bool { return e.balance(c.account) == start+7 })
	waitTrace(t, j, traceID, func(spans []testenv.JaegerSpan) string {
		byID := spansByID(spans)
		delivered := false
		for _, s := range spans {
			if s.Service == "kafka-trigger" && s.OperationName == "deliver process-transaction" && s.Parent() == producer {
				delivered = true
			}
		}
		if !delivered {
			return "no kafka-trigger delivery to process-transaction as the child of the producer's span"
		}
		for _, s := range spans {
			if s.Service != "process-transaction" {
				continue
			}
			p := byID[s.Parent()]
			if p.Service == "gateway" {
				p = byID[p.Parent()]
			}
			if p.Service == "kafka-trigger" && p.Parent() == producer || s.Parent() == producer {
				return ""
			}
		}
		return "no process-transaction span below the delivery"
	})
}

// TestTraceOfATransferCrossesKafka (issue 19): a transfer through the
// gateway, sent with a sampled traceparent, makes one trace in a real
// Jaeger that crosses Kafka: a kafka-trigger delivery of its
// billfn.transaction.posted event is the child of process-transaction's
// span, and a consumer's work on the event is in the same trace. (The
// group commit gave each transfer's event a new trace of its own, sampled
// whatever the caller decided.)
func TestTraceOfATransferCrossesKafka(t *testing.T) {
	j := testenv.StartJaeger(t)
	e := startStack(t, stackOptions{env: []string{"BILLFN_OTLP_ENDPOINT=" + j.OTLP}})
	from, to := e.newCustomer("USD"), e.newCustomer("USD")
	e.fund(from, 100, "USD")
	tp, traceID, _ := newParent()
	r := e.req(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
		"from_account_id": from.account, "to_account_id": to.account, "amount": 7, "currency": "USD"},
		"Idempotency-Key", uuid.NewString(), "Traceparent", tp)
	if r.status != http.StatusCreated {
		t.Fatalf("transfer: %s", r)
	}
	waitTrace(t, j, traceID, func(spans []testenv.JaegerSpan) string {
		byID := spansByID(spans)
		delivered := false
		for _, s := range spans {
			if s.Service == "kafka-trigger" && strings.HasPrefix(s.OperationName, "deliver ") && byID[s.Parent()].Service == "process-transaction" {
				delivered = true
			}
		}
		if !delivered {
			return "no kafka-trigger delivery as the child of a process-transaction span"
		}
		for _, s := range spans {
			if s.Service != "process-transaction" && slices.Contains(consumers, s.Service) && s.OperationName == "process billfn.transaction.posted" {
				return ""
			}
		}
		return "no consumer's span of the posted event"
	})
}

// traceComplete says what the trace still lacks ("" when nothing).
func traceComplete(spans []testenv.JaegerSpan) string {
	if len(spans) == 0 {
		return "no spans yet"
	}
	byID := map[string]testenv.JaegerSpan{}
	services := map[string]bool{}
	for _, s := range spans {
		byID[s.SpanID] = s
		services[s.Service] = true
	}
	for _, want := range []string{"gateway", "capture-payment", "kafka-trigger"} {
		if !services[want] {
			return fmt.Sprintf("no span of %s (services %v)", want, keys(services))
		}
	}
	// Across Kafka: capture-payment span → kafka-trigger delivery →
	// (the gateway's span of the delivery request) → the consumer's span.
	// A batched delivery (a function asking for batches) is a span of its
	// own linking every event's trace; in this trace it shows as a
	// delivery span child of the capture-payment span and the consumer's
	// "process <type>" span, also the child of the capture-payment span.
	delivered := map[string]bool{} // consumers with a delivery span under capture-payment
	for _, s := range spans {
		if s.Service == "kafka-trigger" && strings.HasPrefix(s.OperationName, "deliver ") && byID[s.Parent()].Service == "capture-payment" {
			delivered[strings.TrimPrefix(s.OperationName, "deliver ")] = true
		}
	}
	reached := map[string]bool{}
	for _, c := range spans {
		if !slices.Contains(consumers, c.Service) || !delivered[c.Service] {
			continue
		}
		p, ok := byID[c.Parent()]
		if ok && p.Service == "gateway" {
			p, ok = byID[p.Parent()]
		}
		viaTrigger := ok && p.Service == "kafka-trigger" && byID[p.Parent()].Service == "capture-payment"
		batched := ok && p.Service == "capture-payment" && strings.HasPrefix(c.OperationName, "process ")
		if viaTrigger || batched {
			reached[c.Service] = true
		}
	}
	if len(reached) < 3 {
		return fmt.Sprintf("consumers reached from capture-payment through a kafka-trigger delivery: %v, want at least 3 (services %v)",
			keys(reached), keys(services))
	}
	return ""
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
