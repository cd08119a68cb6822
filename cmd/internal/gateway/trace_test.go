package gateway

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/billfn/billfn/shared/telemetry"
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
	off := mallocsPerRun(500, call)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))), sdktrace.WithSpanProcessor(rec))
	restore := telemetry.Install(tp)
	defer restore()
	on := mallocsPerRun(500, call)
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

// mallocsPerRun is testing.AllocsPerRun without its rounding down.
func mallocsPerRun(runs int, f func()) float64 {
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs)
}
