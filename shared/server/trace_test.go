package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/billfn/billfn/shared/telemetry"
)

const callerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// A request continues its caller's trace: the span is named by the route
// pattern, its parent is the caller's span, and a log line written inside
// the request carries trace_id and span_id.
func TestRequestsContinueTheCallersTraceAndLogItsIDs(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	restore := telemetry.Install(tp)
	defer restore()
	var logs bytes.Buffer
	logger := slog.New(NewLogHandler(&logs, "fn", "info"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "inside")
	})
	h := New(Config{}, App{Name: "fn", Handler: mux}).Handler()
	req := httptest.NewRequest("GET", "/things/42", nil)
	req.Header.Set("Traceparent", callerParent)
	h.ServeHTTP(httptest.NewRecorder(), req)

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "GET /things/{id}" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q kind %v", s.Name(), s.SpanKind())
	}
	if s.Parent().SpanID().String() != "00f067aa0ba902b7" || s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("span %s parent %s: not the caller's trace", s.SpanContext().TraceID(), s.Parent().SpanID())
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &line); err != nil {
		t.Fatal(err)
	}
	if line["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" || line["span_id"] != s.SpanContext().SpanID().String() {
		t.Errorf("log line %v: want the request's trace_id and span_id", line)
	}
}

// With tracing off nothing is recorded, and a caller's trace context still
// reaches the log lines (and so the events the request emits).
func TestWithoutTracingTheCallersTraceIDStillReachesTheLogs(t *testing.T) {
	if telemetry.Enabled() {
		t.Fatal("tracing is on in a test that needs it off")
	}
	var logs bytes.Buffer
	logger := slog.New(NewLogHandler(&logs, "fn", "info"))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {
		if trace.SpanFromContext(r.Context()).IsRecording() {
			t.Error("a span is recorded with tracing off")
		}
		logger.InfoContext(r.Context(), "inside")
	})
	h := New(Config{}, App{Name: "fn", Handler: mux}).Handler()
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("Traceparent", callerParent)
	h.ServeHTTP(httptest.NewRecorder(), req)
	if !strings.Contains(logs.String(), `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) {
		t.Errorf("log: %s", logs.String())
	}
}

// BenchmarkRequestTracingOff: the cost of the tracing hooks on a request
// when no exporter is configured (compare allocs with and without a
// traceparent header).
func BenchmarkRequestTracingOff(b *testing.B) {
	h := emptyRuntime()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(context.Background(), "GET", "/x", nil)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
