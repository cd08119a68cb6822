package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/billfn/billfn/shared/telemetry"
)

// BenchmarkRequestTracingSampled10: a request through the runtime with an
// SDK installed that samples 10 % of new traces (make bench's tracing-10;
// spans go to an in-memory exporter instead of Jaeger). Compare with
// BenchmarkRequestTracingOff.
func BenchmarkRequestTracingSampled10(b *testing.B) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))),
		sdktrace.WithBatcher(exp))
	restore := telemetry.Install(tp)
	defer restore()
	defer tp.Shutdown(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {})
	h := New(Config{}, App{Name: "fn", Handler: mux}).Handler()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(context.Background(), "GET", "/x", nil)
		h.ServeHTTP(httptest.NewRecorder(), req)
		exp.Reset()
	}
}

// BenchmarkRequestTracingUnsampledCaller: the same SDK, and a request whose
// caller (the gateway, the kafka-trigger) decided not to sample: the case
// of 90 % of requests inside the stack at 10 %.
func BenchmarkRequestTracingUnsampledCaller(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))))
	restore := telemetry.Install(tp)
	defer restore()
	defer tp.Shutdown(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {})
	h := New(Config{}, App{Name: "fn", Handler: mux}).Handler()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(context.Background(), "GET", "/x", nil)
		req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}
