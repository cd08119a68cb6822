// Package telemetry is billfn's distributed tracing: OpenTelemetry with
// W3C Trace Context (traceparent, tracestate) between processes, spans
// exported over OTLP/HTTP (protobuf) by otlptrace with a client of our own
// (otlphttp.go: why).
//
// Setup reads the standard OpenTelemetry environment:
//
//	OTEL_EXPORTER_OTLP_ENDPOINT         the collector, e.g. http://127.0.0.1:4318
//	OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  the same for traces only (full URL, …/v1/traces)
//	OTEL_EXPORTER_OTLP_HEADERS          e.g. authorization=Bearer%20… for a hosted collector
//	OTEL_EXPORTER_OTLP_COMPRESSION      gzip
//	OTEL_EXPORTER_OTLP_CERTIFICATE      the collector's CA (and _CLIENT_CERTIFICATE, _CLIENT_KEY)
//	OTEL_TRACES_EXPORTER                "none" turns export off
//	OTEL_SDK_DISABLED                   "true" turns the SDK off
//	OTEL_TRACES_SAMPLER(_ARG)           e.g. parentbased_traceidratio and 0.1
//	OTEL_SERVICE_NAME                   overrides the function's name
//	OTEL_RESOURCE_ATTRIBUTES            extra resource attributes
//
// With no endpoint configured no SDK is installed: nothing is recorded nor
// exported, and a trace context that arrives is still passed on (logs keep
// its trace_id, events carry it), at the cost of parsing one header.
// Export failures (the collector is down) are dropped quietly: the
// batch processor's queue is bounded and the exporter gives up after a
// few seconds, so a missing collector never slows a request.
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Instrumentation is the tracer name of billfn's own spans.
const Instrumentation = "github.com/billfn/billfn"

// Propagator is W3C Trace Context: traceparent and tracestate.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

var enabled atomic.Bool

// Enabled reports whether spans are recorded at all (an SDK is installed).
// Instrumentation that would allocate for nothing checks it first.
func Enabled() bool { return enabled.Load() }

// tracer is billfn's tracer of the installed provider, looked up once:
// otel.Tracer asks the SDK's provider, which takes a lock and a map lookup
// on every call, on every request.
var tracer atomic.Pointer[trace.Tracer]

// Tracer is billfn's tracer from the installed provider.
func Tracer() trace.Tracer {
	if t := tracer.Load(); t != nil {
		return *t
	}
	return otel.Tracer(Instrumentation)
}

// Unsampled reports whether ctx continues a trace whose sampling decision
// was "no" (a valid span context without the sampled flag). billfn's
// spans follow their parent's decision (the parent-based samplers, the
// default), so instrumentation starts no span there: the context already
// carries the trace's ids for logs and propagation, and a span that would
// record nothing costs a sampler call, an allocation and its attributes.
func Unsampled(ctx context.Context) bool {
	sc := trace.SpanContextFromContext(ctx)
	return sc.IsValid() && !sc.IsSampled()
}

// install makes tp the provider of otel and of Tracer.
func install(tp trace.TracerProvider) {
	otel.SetTracerProvider(tp)
	t := tp.Tracer(Instrumentation)
	tracer.Store(&t)
}

// Configured reports whether the environment asks for export: an OTLP
// endpoint is set and neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER=none
// says otherwise.
func Configured() bool {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	if e := strings.ToLower(os.Getenv("OTEL_TRACES_EXPORTER")); e == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

var setupOnce sync.Mutex

// Setup installs the W3C propagator and, when Configured, a tracer
// provider exporting service's spans over OTLP/HTTP (sampler from
// OTEL_TRACES_SAMPLER, default parentbased_always_on). The returned
// function flushes and stops it; call it before the process exits.
func Setup(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	return SetupEndpoint(ctx, service, "")
}

// SetupEndpoint is Setup exporting to endpoint (an OTLP/HTTP base URL such
// as http://127.0.0.1:4318) instead of the environment's; "" reads the
// environment, "none" installs no SDK.
func SetupEndpoint(ctx context.Context, service, endpoint string) (shutdown func(context.Context) error, err error) {
	setupOnce.Lock()
	defer setupOnce.Unlock()
	otel.SetTextMapPropagator(Propagator)
	if endpoint == "none" || endpoint == "" && !Configured() {
		return func(context.Context) error { return nil }, nil
	}
	client, err := newOTLPHTTP(endpoint)
	if err != nil {
		return nil, err
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		resource.WithProcessPID(), resource.WithHost())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, err
	}
	// No WithSampler: the SDK takes OTEL_TRACES_SAMPLER(_ARG) itself.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	install(tp)
	otel.SetErrorHandler(quietErrors{})
	enabled.Store(true)
	return func(ctx context.Context) error {
		enabled.Store(false)
		return tp.Shutdown(ctx)
	}, nil
}

// quietErrors logs the first export failure and then one every ten
// minutes: a collector that is not running (make observe not started) is
// normal on a laptop and must not flood the logs.
type quietErrors struct{}

var lastErrorLog atomic.Int64

func (quietErrors) Handle(err error) {
	now := time.Now().UnixNano()
	last := lastErrorLog.Load()
	if last != 0 && now-last < int64(10*time.Minute) {
		return
	}
	if lastErrorLog.CompareAndSwap(last, now) {
		slog.Info("trace export failing; spans are dropped until the collector answers", "err", err.Error())
	}
}

// ServerSpan are the options of a span that serves a request (the
// gateway's, a function's), built once rather than on every request.
var ServerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// Extract returns ctx carrying the remote span context of h's traceparent
// (and tracestate), or ctx itself when h has none or a malformed one (no
// allocation then). It reads the header map directly, as Propagator would
// through a HeaderCarrier, without canonicalising "traceparent" into a new
// string on every call.
func Extract(ctx context.Context, h http.Header) context.Context {
	tp := h["Traceparent"]
	if len(tp) == 0 {
		return ctx
	}
	var ts string
	if v := h["Tracestate"]; len(v) > 0 {
		ts = v[0]
	}
	return FromParent(ctx, tp[0], ts)
}

// UnsampledCaller reports whether h carries a well-formed traceparent of a
// trace that is not sampled: Unsampled(Extract(ctx, h)) without the
// context, for a hop that passes the header on as it came (the gateway).
func UnsampledCaller(h http.Header) bool {
	tp := h["Traceparent"]
	if len(tp) == 0 {
		return false
	}
	sc, ok := ParseParent(tp[0], "")
	return ok && !sc.IsSampled()
}

// Inject writes the span context of ctx into h as traceparent/tracestate,
// what Propagator writes, straight into the map.
func Inject(ctx context.Context, h http.Header) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	if sc.TraceState().Len() > 0 {
		h["Tracestate"] = []string{sc.TraceState().String()}
	}
	h["Traceparent"] = []string{FormatParent(sc)}
}

// FromParent returns ctx carrying the remote span context of a traceparent
// (and tracestate) string, as an event's extensions hold them; ctx when tp
// is empty or malformed.
func FromParent(ctx context.Context, tp, ts string) context.Context {
	sc, ok := ParseParent(tp, ts)
	if !ok {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// ParentSampled reports whether traceparent tp carries the sampled flag,
// reading its flags field only: no parse, no allocation. Instrumentation
// that handles many events at once (a batch) parses only the parents of
// the sampled ones. A malformed tp may answer true; ParseParent then
// rejects it.
func ParentSampled[T string | []byte](tp T) bool {
	// version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 bytes,
	// more only in a later version, after another "-".
	if len(tp) < 55 || tp[52] != '-' || len(tp) > 55 && tp[55] != '-' {
		return false
	}
	switch c := tp[54]; {
	case '0' <= c && c <= '9':
		return (c-'0')&1 == 1
	case 'a' <= c && c <= 'f':
		return (c-'a'+10)&1 == 1
	}
	return false
}

// ParseParent parses a traceparent (and tracestate) as Propagator's
// Extract does, without the carrier, context and span it builds around the
// result: no allocation for a traceparent without tracestate, the case of
// every event and hop inside the stack. A malformed tracestate is dropped,
// the traceparent kept (the W3C rule).
func ParseParent(tp, ts string) (trace.SpanContext, bool) {
	var scc trace.SpanContextConfig
	var ver, flags [1]byte
	h := tp
	if !hexPart(ver[:], &h) || ver[0] == 0xff || !hexPart(scc.TraceID[:], &h) || !hexPart(scc.SpanID[:], &h) || !hexPart(flags[:], &h) {
		return trace.SpanContext{}, false
	}
	// Version 00 has nothing after the flags and no flag but sampled and
	// random; a later version may add both.
	if ver[0] == 0 && (h != "" || flags[0] > 3) {
		return trace.SpanContext{}, false
	}
	scc.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	if ts != "" {
		scc.TraceState, _ = trace.ParseTraceState(ts)
	}
	scc.Remote = true
	sc := trace.NewSpanContext(scc)
	if !sc.IsValid() {
		return trace.SpanContext{}, false
	}
	return sc, true
}

// hexPart decodes the next "-"-separated field of *h into dst: exactly
// 2*len(dst) lower-case hex digits (W3C forbids upper case). *h moves
// past the field and its separator.
func hexPart(dst []byte, h *string) bool {
	part, rest, _ := strings.Cut(*h, "-")
	*h = rest
	if len(part) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := unhex(part[2*i])
		lo, ok2 := unhex(part[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Parent formats the span context of ctx as traceparent and tracestate;
// "" when ctx holds none.
func Parent(ctx context.Context) (tp, ts string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	return FormatParent(sc), sc.TraceState().String()
}

// FormatParent is the traceparent of sc.
func FormatParent(sc trace.SpanContext) string {
	tid, sid := sc.TraceID(), sc.SpanID()
	var b [55]byte
	const hex = "0123456789abcdef"
	b[0], b[1], b[2] = '0', '0', '-'
	for i, v := range tid {
		b[3+2*i], b[4+2*i] = hex[v>>4], hex[v&0xf]
	}
	b[35] = '-'
	for i, v := range sid {
		b[36+2*i], b[37+2*i] = hex[v>>4], hex[v&0xf]
	}
	b[52] = '-'
	f := sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom) // the flags W3C defines
	b[53], b[54] = hex[f>>4], hex[f&0xf]
	return string(b[:])
}

// Fail marks span as failed with err (nil: nothing).
func Fail(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// Transport wraps base (nil: http.DefaultTransport) so every request is a
// client span, child of the request context's span, and carries its
// traceparent. A request whose context is not being recorded only gets
// the header (when it has a trace context).
func Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return transport{base}
}

type transport struct{ base http.RoundTripper }

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	if !trace.SpanFromContext(ctx).IsRecording() {
		if trace.SpanContextFromContext(ctx).IsValid() && r.Header.Get("Traceparent") == "" {
			// A RoundTripper must not change the caller's request: the
			// header goes into a copy of its map, in a shallow copy of
			// the request (r.Clone also copies the URL and every header
			// value, which nothing here changes).
			h := make(http.Header, len(r.Header)+1)
			maps.Copy(h, r.Header)
			r = r.WithContext(ctx)
			r.Header = h
			Inject(ctx, h)
		}
		return t.base.RoundTrip(r)
	}
	ctx, span := Tracer().Start(ctx, r.Method+" "+r.URL.Host, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", r.Method),
			attribute.String("server.address", r.URL.Host), attribute.String("url.path", r.URL.Path)))
	defer span.End()
	r = r.Clone(ctx)
	Inject(ctx, r.Header)
	res, err := t.base.RoundTrip(r)
	if err != nil {
		Fail(span, err)
		return res, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", res.StatusCode))
	if res.StatusCode >= 500 {
		span.SetStatus(codes.Error, res.Status)
	}
	return res, nil
}

// Install makes tp the tracer provider and turns the instrumentation on,
// as Setup does with its exporter (tests install an SDK provider with an
// in-memory recorder). The returned function turns it off again.
func Install(tp trace.TracerProvider) (restore func()) {
	setupOnce.Lock()
	defer setupOnce.Unlock()
	otel.SetTextMapPropagator(Propagator)
	install(tp)
	enabled.Store(true)
	return func() { enabled.Store(false) }
}
