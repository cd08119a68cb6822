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
	installSampled10(b, sdktrace.WithBatcher(exp))
	h := emptyRuntime()
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
	installSampled10(b)
	h := emptyRuntime()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequestWithContext(context.Background(), "GET", "/x", nil)
		req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

// emptyRuntime is the runtime's handler around one route that does
// nothing: what a request costs the runtime itself.
func emptyRuntime() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {})
	return New(Config{}, App{Name: "fn", Handler: mux}).Handler()
}

// installSampled10 installs, for the benchmark, an SDK that samples 10 %
// of new traces and follows its caller's decision.
func installSampled10(b *testing.B, opts ...sdktrace.TracerProviderOption) {
	tp := sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1)))}, opts...)...)
	restore := telemetry.Install(tp)
	b.Cleanup(func() {
		restore()
		_ = tp.Shutdown(context.Background())
	})
}
