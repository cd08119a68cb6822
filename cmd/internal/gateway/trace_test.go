package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/telemetry"
	"github.com/billfn/billfn/shared/testenv/allocs"
)

// A call whose caller decided not to sample (the kafka-trigger's
// deliveries of unsampled events, nine in ten at 10 %) passes through the
// gateway as with tracing off: its traceparent goes on as it came, and
// the gateway starts no span and builds no context for it. Counted over
// the whole call (client, gateway and function in this process), against
// the same call with tracing off.
func TestAnUnsampledCallCostsTheGatewayNothing(t *testing.T) {
	const unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	var got string
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Traceparent") }))
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	client := &http.Client{Transport: &http.Transport{}}
	call := func() {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", gw.URL+"/function/f/x", nil)
		req.Header["Traceparent"] = []string{unsampled}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	off := allocs.PerRun(500, call)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))), sdktrace.WithSpanProcessor(rec))
	restore := telemetry.Install(tp)
	defer restore()
	on := allocs.PerRun(500, call)
	if on-off > 1 { // 0, and room for the network's and the runtime's own
		t.Errorf("an unsampled call allocates %.1f times with tracing on, %.1f with it off; want the same", on, off)
	}
	if n := len(rec.Started()); n != 0 {
		t.Errorf("%d spans started for unsampled calls", n)
	}
	if got != unsampled {
		t.Errorf("the function got traceparent %q, want the caller's %q", got, unsampled)
	}
}

// BenchmarkCallTracing: a new call (no traceparent: the load generator's,
// a merchant's) through the gateway to the function runtime around an
// empty route, with tracing off, with an SDK that samples no new trace
// (every call pays what the nine unsampled calls in ten pay at 10 %), 10 %
// and every trace, spans batched to an exporter that drops them. Compare
// allocs/op and B/op (ns/op is the host's as much as the code's).
func BenchmarkCallTracing(b *testing.B) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /x", func(http.ResponseWriter, *http.Request) {})
	fsrv := httptest.NewServer(server.New(server.Config{ExecTimeout: config.Duration(10 * time.Second)}, server.App{Name: "bench", Handler: mux}).Handler())
	defer fsrv.Close()
	gsrv := httptest.NewServer(New(Config{Functions: []Function{fn("f", fsrv.Listener.Addr().String())}}))
	defer gsrv.Close()
	client := &http.Client{Transport: &http.Transport{}}
	call := func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequestWithContext(context.Background(), "POST", gsrv.URL+"/function/f/x", nil)
			res, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	b.Run("off", call)
	for _, c := range []struct {
		name    string
		sampler sdktrace.Sampler
	}{{"unsampled", sdktrace.NeverSample()}, {"sampled10", sdktrace.TraceIDRatioBased(0.1)}, {"always", sdktrace.AlwaysSample()}} {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(c.sampler)), sdktrace.WithBatcher(dropSpans{}))
		restore := telemetry.Install(tp)
		b.Run(c.name, call)
		restore()
		_ = tp.Shutdown(context.Background())
	}
}

// dropSpans is a span exporter that drops what it is given.
type dropSpans struct{}

func (dropSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (dropSpans) Shutdown(context.Context) error                             { return nil }
