package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/telemetry"
	"github.com/billfn/billfn/shared/testenv/allocs"
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

// A request whose caller decided not to sample (nine in ten inside the
// stack at 10 %) costs the runtime only the context that carries the
// caller's ids on, 2 allocations (the remote span context and its
// context), over the same request with tracing off and no traceparent:
// no span, and no second copy of the request for the exec deadline.
func TestAnUnsampledCallersRequestCostsItsContextOnly(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(w http.ResponseWriter, r *http.Request) {})
	h := New(Config{ExecTimeout: config.Duration(10 * time.Second)}, App{Name: "fn", Handler: mux}).Handler()
	plain := httptest.NewRequest("GET", "/x", nil)
	unsampled := httptest.NewRequest("GET", "/x", nil)
	unsampled.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	serve := func(r *http.Request) func() {
		return func() { h.ServeHTTP(discardWriter{}, r) }
	}
	off := allocs.PerRun(1000, serve(plain))

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))), sdktrace.WithSpanProcessor(rec))
	restore := telemetry.Install(tp)
	defer restore()
	on := allocs.PerRun(1000, serve(unsampled))
	if on-off > 2.5 { // 2, and room for the runtime's own now and then
		t.Errorf("an unsampled caller's request allocates %.1f times, %.1f more than with tracing off and no traceparent; want 2 more", on, on-off)
	}
	if n := len(rec.Started()); n != 0 {
		t.Errorf("%d spans started for unsampled requests", n)
	}
}

// discardWriter is a ResponseWriter that allocates nothing.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
