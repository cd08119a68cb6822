package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

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
