package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/telemetry"
	"github.com/billfn/billfn/shared/testenv"
)

// With tracing on, a delivery is a span whose parent is the event's
// traceparent (the producer's span, across Kafka), and the request carries
// it on: the function hears from the gateway's span of the delivery, a
// child of the delivery span.
func TestTriggerDeliveryIsASpanOfTheEventsTraceAndPassesItOn(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	restore := telemetry.Install(tp)
	defer restore()
	brokers := kafka(t)
	var (
		mu  sync.Mutex
		got []string
	)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Traceparent"))
		mu.Unlock()
	})
	startStack(t, brokers, []fn{{name: "billing", handler: handler, annotations: map[string]string{"topic": events.TopicBilling}}}, nil)

	ctx, producer := telemetry.Tracer().Start(context.Background(), "producer")
	producer.End()
	ev := events.Must(events.New(ctx, "tester", "billfn.test.happened", "acct-1", map[string]int{"amount": 1}))
	testenv.SignOrigin(&ev)
	body, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, &sarama.ProducerMessage{Topic: events.TopicBilling, Key: sarama.StringEncoder("acct-1"), Value: sarama.ByteEncoder(body)})

	waitFor(t, "the delivery", 15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	var delivery sdktrace.ReadOnlySpan
	waitFor(t, "the delivery span", 10*time.Second, func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "deliver billing" {
				delivery = s
			}
		}
		return delivery != nil
	})
	psc := producer.SpanContext()
	if delivery.Parent().SpanID() != psc.SpanID() || delivery.SpanContext().TraceID() != psc.TraceID() {
		t.Errorf("delivery span: trace %s parent %s, want the producer's %s/%s", delivery.SpanContext().TraceID(),
			delivery.Parent().SpanID(), psc.TraceID(), psc.SpanID())
	}
	mu.Lock()
	defer mu.Unlock()
	sc, ok := telemetry.ParseParent(got[0], "")
	if !ok || sc.TraceID() != psc.TraceID() {
		t.Fatalf("the function got traceparent %q, not of the producer's trace %s", got[0], psc.TraceID())
	}
	var hop sdktrace.ReadOnlySpan
	waitFor(t, "the gateway's span", 10*time.Second, func() bool {
		for _, s := range rec.Ended() {
			if s.SpanContext().SpanID() == sc.SpanID() {
				hop = s
			}
		}
		return hop != nil
	})
	if !strings.HasPrefix(hop.Name(), "POST /function/billing") || hop.Parent().SpanID() != delivery.SpanContext().SpanID() {
		t.Errorf("the function's parent span %q has parent %s, want the delivery span %s", hop.Name(), hop.Parent().SpanID(), delivery.SpanContext().SpanID())
	}
}
