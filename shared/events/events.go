// Package events builds and receives billfn's CloudEvents 1.0.
//
// Events are built with cloudevents/sdk-go v2: id (UUIDv7, time-ordered),
// source /functions/<name>, type billfn.<aggregate>.<verb>, subject (the
// aggregate id), time, application/json data and a W3C traceparent
// extension. On Kafka they travel in structured mode (package outbox).
//
// A Receiver accepts deliveries over HTTP in every form the platforms use:
// binary mode (ce-* headers), structured mode (application/cloudevents+json),
// batch mode (application/cloudevents-batch+json), and the OpenFaaS
// kafka-connector / kafka-trigger form (the structured event as the body,
// with X-Topic). Every delivery must be authenticated (see auth.go); each
// event is deduplicated by (source, id) in the same transaction as its
// effect; errors are either retryable (5xx, the trigger retries) or
// permanent (the event is parked in dead_letters and acknowledged).
package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/telemetry"
)

// Event is a CloudEvent.
type Event = event.Event

// Media types of the CloudEvents JSON format.
const (
	ContentTypeStructured = "application/cloudevents+json"
	ContentTypeBatch      = "application/cloudevents-batch+json"
)

// The Kafka topics of the architecture, with their partition counts.
const (
	TopicUser        = "user-events"
	TopicBilling     = "billing-events"
	TopicTransaction = "transaction-events"
	TopicPayment     = "payment-events"
)

// Topics maps every topic to its partition count.
var Topics = map[string]int32{
	TopicUser:        6,
	TopicBilling:     12,
	TopicTransaction: 12,
	TopicPayment:     6,
}

// The CloudEvents distributed-tracing extension: the W3C trace context of
// the work that produced the event, so the consumer's work continues the
// producer's trace across Kafka. Not covered by the origin proof
// (OriginBytes): a relay may rewrite it without breaking the signature.
const (
	TraceParentExt = "traceparent"
	TraceStateExt  = "tracestate"
)

// Source is the CloudEvent source of a function.
func Source(function string) string { return sourcePrefix + function }

const sourcePrefix = "/functions/"

// SourceOf is ev.Source() without building the string again when the
// event's source is a path of plain characters (billfn's /functions/<name>):
// the path itself, which is what Source() would write. Source() builds
// its string anew at every call, and a receiver reads every event's
// source several times (its origin proof, its contract, its
// processed_events key). TestSourceOfIsSource holds it to Source().
func SourceOf(ev Event) string {
	ec, ok := ev.Context.(*event.EventContextV1)
	if !ok {
		return ev.Source()
	}
	if !plainSource(&ec.Source.URL) {
		return ev.Source()
	}
	return ec.Source.URL.Path
}

// From reports whether ev comes from function's source (SourceOf(ev) ==
// Source(function)) without building either string: the question every
// check of an event's owner asks (TestFromIsSourceEquality).
func From(ev Event, function string) bool {
	src := SourceOf(ev)
	return len(src) == len(sourcePrefix)+len(function) && strings.HasPrefix(src, sourcePrefix) && src[len(sourcePrefix):] == function
}

// plainSource reports whether u is a bare path of plain characters, which
// the URL writes as it is: its Path is then its string.
func plainSource(u *url.URL) bool {
	return u.Scheme == "" && u.Opaque == "" && u.Host == "" && u.User == nil && u.RawPath == "" &&
		u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" && u.RawFragment == "" && plainPath(u.Path)
}

// plainPath reports whether p holds only the characters a URL path
// writes as they are (RFC 3986's unreserved ones and '/').
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '/', c == '-', c == '_', c == '.', c == '~':
		default:
			return false
		}
	}
	return true
}

// Type is a billfn event type: billfn.<aggregate>.<verb>.
func Type(aggregate, verb string) string { return "billfn." + aggregate + "." + verb }

type traceKey struct{}

// WithTraceParent returns ctx carrying a W3C traceparent, so events built
// while handling a request or an event continue its trace (and spans
// started under ctx are its children).
func WithTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	if c := telemetry.FromParent(ctx, tp, ""); c != ctx {
		return c
	}
	return context.WithValue(ctx, traceKey{}, tp)
}

// TraceParent returns the traceparent of ctx — its current span's, else
// one set by WithTraceParent — or "".
func TraceParent(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return telemetry.FormatParent(sc)
	}
	tp, _ := ctx.Value(traceKey{}).(string)
	return tp
}

// TraceState returns the W3C tracestate of ctx's span, or "".
func TraceState(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceState().Len() == 0 {
		return ""
	}
	return sc.TraceState().String()
}

// ContextOf returns ctx continuing ev's trace: a remote parent from its
// traceparent and tracestate extensions; ctx when it carries none.
func ContextOf(ctx context.Context, ev Event) context.Context {
	tp, ts := TraceOf(ev)
	return telemetry.FromParent(ctx, tp, ts)
}

// TraceOf returns ev's traceparent and tracestate extensions ("" when absent).
// It reads them from a CloudEvents 1.0 context's own map: Extensions()
// copies the whole map on every call, and a receiver with tracing on reads
// every event's traceparent of a batch to find the sampled ones (at 10 %,
// nine in ten are not), so it copied a map per event for each consumer.
func TraceOf(ev Event) (tp, ts string) {
	exts := extensionsOf(ev)
	tp, _ = exts[TraceParentExt].(string)
	ts, _ = exts[TraceStateExt].(string)
	return tp, ts
}

// extensionsOf is ev.Extensions() without its copy when ev has a
// CloudEvents 1.0 context (every event the SDK decodes as 1.0): that
// context's own map, which the caller must only read. Extensions() copies
// the whole map on every call, and the receiver reads every event's
// extensions twice (Parse's check of their names, the origin proof).
func extensionsOf(ev Event) map[string]any {
	if ec, ok := ev.Context.(*event.EventContextV1); ok {
		return ec.Extensions
	}
	return ev.Extensions()
}

// NewTraceParent starts a new trace: version 00, random trace and span ids, sampled.
func NewTraceParent() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

// New builds an event of typ about subject from function, with data encoded
// as JSON.
func New(ctx context.Context, function, typ, subject string, data any) (Event, error) {
	e := event.New()
	id, err := uuid.NewV7()
	if err != nil {
		return e, err
	}
	e.SetID(id.String())
	e.SetSource(Source(function))
	e.SetType(typ)
	if subject != "" {
		e.SetSubject(subject)
	}
	e.SetTime(time.Now().UTC())
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		return e, err
	}
	tp := TraceParent(ctx)
	if tp == "" {
		tp = NewTraceParent()
	}
	e.SetExtension(TraceParentExt, tp)
	if ts := TraceState(ctx); ts != "" {
		e.SetExtension(TraceStateExt, ts)
	}
	if err := e.Validate(); err != nil {
		return e, err
	}
	return e, nil
}

// Must is New for events whose data cannot fail to encode.
func Must(ev Event, err error) Event {
	if err != nil {
		panic(err)
	}
	return ev
}

// Decode reads an event's JSON data into v. A decode failure is permanent:
// the same bytes will never decode.
func Decode(ev Event, v any) error {
	if httpx.HasNULEscape(ev.Data()) {
		return Permanent(fmt.Errorf("event %s (%s): data: strings may not hold U+0000", ev.ID(), ev.Type()))
	}
	if err := json.Unmarshal(ev.Data(), v); err != nil {
		return Permanent(fmt.Errorf("event %s (%s): data: %w", ev.ID(), ev.Type(), err))
	}
	return nil
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return "permanent: " + p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as permanent: the event is parked, not retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked Permanent, or is a client-side
// problem (a 4xx *problem.Error, e.g. invalid data in the event), by the
// shared codes alone. A function's own codes are known only to its
// problem.Statuses table: use IsPermanentIn with a context that carries it.
func IsPermanent(err error) bool { return IsPermanentIn(context.Background(), err) }

// IsPermanentIn reports whether err was marked Permanent, or is a
// client-side problem by the problem.Statuses table installed in ctx (the
// function's, put there by Statuses.Middleware in front of its routes): a
// 4xx other than 408, 409 and 429, which a retry may cure.
func IsPermanentIn(ctx context.Context, err error) bool {
	var p permanentError
	if errors.As(err, &p) {
		return true
	}
	st := 0
	if apperr.CodeOf(err) != "" {
		st = problem.StatusOf(ctx, err)
	} else if s := (interface{ Status() int })(nil); errors.As(err, &s) {
		st = s.Status()
	}
	return st >= 400 && st < 500 && st != 408 && st != 409 && st != 429
}
