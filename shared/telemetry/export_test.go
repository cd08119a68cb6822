package telemetry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/billfn/billfn/shared/telemetry"
	"github.com/billfn/billfn/shared/testenv"
)

// exportTwoSpans exports a parent and a child (attributes, an event, an
// error status) as service through endpoint, flushes, and returns the
// trace's id and both span ids.
func exportTwoSpans(t *testing.T, service, endpoint string) (traceID, parentID, childID string) {
	t.Helper()
	ctx := context.Background()
	shutdown, err := telemetry.SetupEndpoint(ctx, service, endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := telemetry.Tracer().Start(ctx, "parent-op", trace.WithSpanKind(trace.SpanKindServer))
	_, child := telemetry.Tracer().Start(ctx, "child-op", trace.WithAttributes(attribute.String("billfn.test", "value-42"), attribute.Int64("billfn.n", 7)))
	child.AddEvent("billfn-event")
	child.SetStatus(codes.Error, "billfn-failure")
	child.End()
	parent.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown (the flush of the spans): %v", err)
	}
	return parent.SpanContext().TraceID().String(), parent.SpanContext().SpanID().String(), child.SpanContext().SpanID().String()
}

// readTrace waits for Jaeger to hold the trace's two spans (it indexes
// them asynchronously) and returns them with the raw JSON of the trace.
func readTrace(t *testing.T, j *testenv.Jaeger, traceID string) ([]testenv.JaegerSpan, string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		spans, err := j.Trace(traceID)
		if err != nil {
			t.Fatal(err)
		}
		if len(spans) >= 2 {
			res, err := http.Get(j.Query + "/api/traces/" + traceID)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			return spans, string(raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Jaeger holds %d spans of trace %s, want 2", len(spans), traceID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The exporter's spans reach a real Jaeger whole: names, parent, service,
// attributes, events and status.
func TestSpansReachJaeger(t *testing.T) {
	j := testenv.StartJaeger(t)
	traceID, parentID, childID := exportTwoSpans(t, "telemetry-export-test", j.OTLP)
	spans, raw := readTrace(t, j, traceID)
	got := map[string]testenv.JaegerSpan{}
	for _, s := range spans {
		got[s.SpanID] = s
		if s.Service != "telemetry-export-test" {
			t.Errorf("span %s has service %q", s.OperationName, s.Service)
		}
	}
	if got[parentID].OperationName != "parent-op" || got[childID].OperationName != "child-op" {
		t.Fatalf("spans = %+v", spans)
	}
	if got[childID].Parent() != parentID {
		t.Errorf("child's parent = %q, want %q", got[childID].Parent(), parentID)
	}
	for _, want := range []string{`"billfn.test"`, `"value-42"`, `"billfn.n"`, `"billfn-event"`, `"billfn-failure"`, `"server"`} {
		if !strings.Contains(raw, want) {
			t.Errorf("the trace Jaeger returns lacks %s:\n%.2000s", want, raw)
		}
	}
}

// A collector that answers 503 is retried (OTLP's retryable statuses);
// OTEL_EXPORTER_OTLP_HEADERS are sent URL-decoded, and gzip compression
// is understood by the real collector.
func TestExportRetriesAndSendsHeadersGzipped(t *testing.T) {
	j := testenv.StartJaeger(t)
	target, err := url.Parse(j.OTLP)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var seen []http.Header
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		first := len(seen) == 1
		mu.Unlock()
		if first {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-billfn-test=a%20b, x-other=c")
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	traceID, _, _ := exportTwoSpans(t, "telemetry-retry-test", front.URL)
	readTrace(t, j, traceID)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 {
		t.Fatalf("%d export requests, want a retry after the 503", len(seen))
	}
	for _, h := range seen {
		if h.Get("X-Billfn-Test") != "a b" || h.Get("X-Other") != "c" || h.Get("Content-Encoding") != "gzip" || h.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("export request headers = %v", h)
		}
	}
}

// A malformed environment fails Setup instead of dropping spans silently.
func TestBadExporterEnvironmentFailsSetup(t *testing.T) {
	for name, env := range map[string][2]string{
		"headers":     {"OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"},
		"compression": {"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"},
		"certificate": {"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(env[0], env[1])
			_, err := telemetry.SetupEndpoint(context.Background(), "bad-env", "http://127.0.0.1:1")
			if err == nil || errors.Is(err, context.Canceled) {
				t.Fatalf("%s=%s: Setup err = %v, want an error", env[0], env[1], err)
			}
		})
	}
}
