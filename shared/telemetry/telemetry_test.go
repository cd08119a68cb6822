package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestParentsParseAndFormatAsW3CTraceContext(t *testing.T) {
	sc, ok := ParseParent(parent, "vendor=x")
	if !ok || FormatParent(sc) != parent || sc.TraceState().String() != "vendor=x" || !sc.IsRemote() {
		t.Fatalf("ParseParent(%q) = %v %v", parent, sc, ok)
	}
	for _, bad := range []string{"", "00-xyz", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"} {
		if _, ok := ParseParent(bad, ""); ok {
			t.Errorf("ParseParent(%q) accepted", bad)
		}
	}
	ctx := FromParent(context.Background(), parent, "")
	if tp, _ := Parent(ctx); tp != parent {
		t.Errorf("Parent = %q", tp)
	}
}

// ParentSampled reads the flags alone and agrees with the parse on every
// well-formed traceparent.
func TestParentSampledReadsTheFlagsAsTheParseDoes(t *testing.T) {
	const id = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
	for _, tp := range []string{id + "01", id + "00", id + "03", id + "02",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"} {
		sc, ok := ParseParent(tp, "")
		if !ok {
			t.Fatalf("ParseParent(%q) rejected", tp)
		}
		if ParentSampled(tp) != sc.IsSampled() || ParentSampled([]byte(tp)) != sc.IsSampled() {
			t.Errorf("ParentSampled(%q) = %v, the parse says %v", tp, ParentSampled(tp), sc.IsSampled())
		}
	}
	for _, bad := range []string{"", id, id + "0", id + "0x", id + "01x", "00-xyz-01"} {
		if ParentSampled(bad) {
			t.Errorf("ParentSampled(%q) = true", bad)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = ParentSampled(parent) }); n != 0 {
		t.Errorf("ParentSampled allocates %v times", n)
	}
}

func TestNoEndpointMeansNoSDK(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	if Configured() {
		t.Fatal("configured without an endpoint")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	if !Configured() {
		t.Fatal("an endpoint is not configured")
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	if Configured() {
		t.Fatal("OTEL_TRACES_EXPORTER=none is configured")
	}
	shutdown, err := SetupEndpoint(context.Background(), "fn", "none")
	if err != nil || Enabled() {
		t.Fatalf("SetupEndpoint(none): enabled %v, %v", Enabled(), err)
	}
	_ = shutdown(context.Background())
}

// The client transport makes a client span of a recorded request and
// sends its traceparent; an unrecorded one with a trace context only gets
// the header.
func TestTransportSendsTheTraceparent(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Traceparent") }))
	defer srv.Close()
	c := &http.Client{Transport: Transport(nil)}

	req, _ := http.NewRequestWithContext(FromParent(context.Background(), parent, ""), "GET", srv.URL, nil)
	if _, err := c.Do(req); err != nil {
		t.Fatal(err)
	}
	if got != parent {
		t.Errorf("untraced: traceparent %q, want the context's %q", got, parent)
	}

	rec := tracetest.NewSpanRecorder()
	restore := Install(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	defer restore()
	ctx, span := Tracer().Start(context.Background(), "caller")
	req, _ = http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	if _, err := c.Do(req); err != nil {
		t.Fatal(err)
	}
	span.End()
	var client sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			client = s
		}
	}
	if client == nil || client.Parent().SpanID() != span.SpanContext().SpanID() || got != FormatParent(client.SpanContext()) {
		t.Fatalf("client span %v; the server got %q", client, got)
	}
}

// ParseParent, Extract and Inject read and write what the W3C propagator
// does, on well-formed and malformed trace contexts alike.
func TestPropagationAgreesWithTheW3CPropagator(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-"
	tps := []string{"", "00-" + id + "00", "00-" + id + "01", "00-" + id + "02", "00-" + id + "03", "00-" + id + "04",
		"00-" + id + "ff", "00-" + id + "01-", "00-" + id + "01-x", "01-" + id + "01", "01-" + id + "09-later", "fe-" + id + "01-x-y",
		"ff-" + id + "01", "0-" + id + "01", "00-" + id + "1", "00-" + id + "001", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-" + id[:40] + "0000000000000000-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", "00_" + id + "01", "00-" + id, "xyz"}
	for _, tp := range tps {
		for _, ts := range []string{"", "vendor=x,other=y", "not a tracestate"} {
			h := http.Header{}
			if tp != "" {
				h.Set("Traceparent", tp)
			}
			if ts != "" {
				h.Set("Tracestate", ts)
			}
			want := trace.SpanContextFromContext(Propagator.Extract(context.Background(), propagation.HeaderCarrier(h)))
			got, ok := ParseParent(tp, ts)
			if ok != want.IsValid() || !got.Equal(want) || got.TraceState().String() != want.TraceState().String() {
				t.Errorf("ParseParent(%q, %q) = %v %v, the propagator reads %v", tp, ts, got, ok, want)
			}
			ctx := Extract(context.Background(), h)
			if sc := trace.SpanContextFromContext(ctx); !sc.Equal(want) {
				t.Errorf("Extract(%q, %q) = %v, the propagator reads %v", tp, ts, sc, want)
			}
			if UnsampledCaller(h) != Unsampled(ctx) {
				t.Errorf("UnsampledCaller(%q) = %v, Unsampled(Extract) %v", tp, UnsampledCaller(h), Unsampled(ctx))
			}
			mine, theirs := http.Header{}, http.Header{}
			Inject(ctx, mine)
			Propagator.Inject(ctx, propagation.HeaderCarrier(theirs))
			if !reflect.DeepEqual(mine, theirs) {
				t.Errorf("Inject of %q, %q writes %v, the propagator %v", tp, ts, mine, theirs)
			}
		}
	}
}

// A hop of an unsampled trace (nine requests and events in ten at 10 %
// sampling) costs its context and its header, nothing more: reading a
// traceparent allocates nothing, continuing it the context (2), sending it
// on the header (2).
func TestAnUnsampledHopAllocatesItsContextAndHeaderOnly(t *testing.T) {
	const unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	in := http.Header{"Traceparent": {unsampled}}
	ctx := Extract(context.Background(), in)
	for _, c := range []struct {
		name string
		max  float64
		f    func()
	}{
		{"ParseParent", 0, func() { _, _ = ParseParent(unsampled, "") }},
		{"UnsampledCaller", 0, func() { _ = UnsampledCaller(in) }},
		{"FromParent", 2, func() { _ = FromParent(context.Background(), unsampled, "") }},
		{"Extract", 2, func() { _ = Extract(context.Background(), in) }},
		{"Inject", 2, func() { Inject(ctx, http.Header{}) }},
	} {
		if n := testing.AllocsPerRun(100, c.f); n > c.max {
			t.Errorf("%s allocates %v times, want at most %v", c.name, n, c.max)
		}
	}
}

// BenchmarkUnsampledHop: what a hop of an unsampled trace costs in
// propagation: its traceparent read into a context and written on.
func BenchmarkUnsampledHop(b *testing.B) {
	in := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}}
	out := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		Inject(Extract(context.Background(), in), out)
	}
}

// An outgoing request of an unsampled trace (nine in ten at 10 %) costs
// the transport a shallow copy of the request (1 allocation) with a header
// map of its own (2), so that the caller's request is left as it was, and
// the traceparent (2): 5 allocations, where r.Clone, which also copied the
// URL and every header value, made it 7.
func TestAnUnsampledRequestCostsTheTransportACopyAndItsHeader(t *testing.T) {
	const unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	var sent *http.Request
	ok := &http.Response{StatusCode: 200}
	rt := Transport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = r
		return ok, nil
	}))
	req, _ := http.NewRequestWithContext(FromParent(context.Background(), unsampled, ""), "POST", "http://ledger.internal/accounts/a?x=1", nil)
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("Content-Type", "application/json")
	if _, err := rt.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if got := sent.Header.Get("Traceparent"); got != unsampled {
		t.Errorf("sent traceparent %q, want %q", got, unsampled)
	}
	if sent.Header.Get("Authorization") != "Bearer t" || sent.URL.String() != req.URL.String() || sent.Context() != req.Context() {
		t.Errorf("sent %v %v, want the caller's request and a traceparent", sent.URL, sent.Header)
	}
	if _, found := req.Header["Traceparent"]; found || len(req.Header) != 2 {
		t.Errorf("the caller's request was changed: %v", req.Header)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = rt.RoundTrip(req) }); n > 5 {
		t.Errorf("an unsampled request through the transport: %v allocations, want at most 5", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
