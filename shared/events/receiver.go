package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/telemetry"
)

// Handler applies one event inside tx. Return Permanent(err) (or a 4xx
// problem) for an event that can never succeed; any other error is retried.
type Handler func(ctx context.Context, tx pgx.Tx, ev Event) error

// BatchHandler applies many fresh (already deduplicated) events inside one
// transaction. If it fails permanently the receiver falls back to one
// transaction per event, so a poison event is parked alone.
type BatchHandler func(ctx context.Context, tx pgx.Tx, evs []Event) error

// LogBatchHandler is a BatchHandler whose own writes deduplicate: it
// appends each event to a log keyed by the event's (source, id), in tx, and
// applies only the events it appended (aggregate-report's event log). It
// returns, for each of evs, whether the log held it already (or held it
// earlier in evs). The receiver records no processed_events row for the
// events it takes: that row would repeat the log's key.
type LogBatchHandler func(ctx context.Context, tx pgx.Tx, evs []Event) (dup []bool, err error)

// SelfHandler applies an event whose effect carries its own exactly-once
// guarantee — typically the event id is the idempotency key of the write —
// outside any receiver transaction. Use it when the effect is committed
// elsewhere (a group commit) and holding a connection while waiting would
// starve the pool. Errors are classified as for Handler.
type SelfHandler func(ctx context.Context, ev Event) error

// SelfBatchHandler is SelfHandler for a whole batch delivery.
type SelfBatchHandler func(ctx context.Context, evs []Event) error

// TickTypes are CloudEvent types treated as schedule ticks: billfn's own
// local schedule trigger and Knative's PingSource.
var TickTypes = map[string]bool{
	"billfn.schedule.tick":     true,
	"dev.knative.sources.ping": true,
}

// Receiver serves event deliveries for one function (mount it on "POST /{$}").
type Receiver struct {
	Consumer  string        // the function's name
	Pool      *pgxpool.Pool // dedupe, effects and dead letters
	Keys      [][]byte      // event-signing keys; several during rotation
	KeyRing   *KeyRing      // when set, the keys in force instead of Keys (reloaded from their file)
	Verifier  *auth.Verifier
	Tolerance time.Duration // signature timestamp tolerance (default 5 min)

	// TrustUnsigned accepts deliveries that carry neither a signature nor a
	// token. Set it only on an endpoint nobody outside the cluster can
	// reach: the cluster-local Knative Service that KafkaSource and
	// PingSource, which cannot sign, deliver to (EVENTS_TRUST_UNSIGNED).
	// A signature or token that is present is still checked.
	TrustUnsigned bool
	Now           func() time.Time // injectable clock

	// Origins are the public keys of the sources this consumer trusts
	// (origin.go): every event must carry its producer's origin proof,
	// verified with a key of the source it claims, else it is parked in
	// dead_letters and acknowledged, never applied. nil trusts no source:
	// every event is parked.
	Origins *OriginKeys
	// SkipOriginCheck turns the origin check off. Only for tests of other
	// parts of the receiver; platform.OpenWith never sets it.
	SkipOriginCheck bool

	// Tick runs on schedule ticks, which are authenticated like any other
	// delivery (signed by the kafka-trigger, a service token, or unsigned
	// only with TrustUnsigned). Tick must only do idempotent work. It runs
	// at most once per TickEvery (default 1s) per process: a tick within
	// TickEvery of the previous one does nothing and answers 200, so a
	// flood of valid ticks cannot drive the tick's work (capture-payment's
	// reconciliation calls to the payment gateway) any faster.
	Tick      func(ctx context.Context) error
	TickEvery time.Duration

	// ProcessedRetention is how long the consumer's processed_events rows,
	// the dedupe of the events it applies in a transaction, are kept; zero
	// keeps them forever. A schedule tick deletes the older ones, after
	// Tick, at most once per PruneEvery (pruneProcessed). It must outlast
	// every redelivery of an event (docs/events.md, "Deduplication").
	ProcessedRetention time.Duration

	// Batch, when set, handles deliveries of several events in one
	// transaction (the fast path for batch mode). It takes the types
	// registered with On; a receiver that registers none takes every
	// type but ticks with it (aggregate-report's rollups).
	Batch BatchHandler

	// LogBatch, when set instead of Batch, takes every type as Batch does
	// when no type is registered, and deduplicates the events itself (see
	// LogBatchHandler): no processed_events row is written for them, and a
	// parked one is not marked processed, so a redelivery of a poison event
	// runs it again and parks it again.
	LogBatch LogBatchHandler

	// SelfBatch, when set, handles batch deliveries of self-handled types.
	SelfBatch SelfBatchHandler

	// Wanted, when set, is asked which of a delivery's events can change
	// something here now, before any transaction: the others are
	// acknowledged as ignored, with no transaction and no processed_events
	// row. It is asked before the origin check, about the events that pass
	// the checks needing no proof (source, topic, a handler, OnlyIf), and
	// only the events it wants (and those parked or ignored for another
	// reason) have their origin proofs verified: an event it does not want
	// is ignored whatever its proof, a forgery too — it changes nothing
	// here, and the consumers it could affect verify it and park it. A
	// wanted forgery is parked as before, and then, since an answer may
	// depend on the delivery's other events, Wanted is asked again about
	// the proven events alone (wantedFirst): it must therefore only read,
	// and an event may make another unwanted only by being wanted itself
	// (handle-webhook's "the first event naming an unknown payment").
	// Unlike OnlyIf's test, its answer may depend on the consumer's
	// state (handle-webhook: the types its endpoints subscribe to, the
	// payments it knows), so an event ignored once may be wanted at a later
	// delivery: that is its first application, deduplicated as usual from
	// then on. It must say true for an event it cannot judge (the handler
	// then parks what it parks today); an error makes the delivery
	// retried. Self-handled types are not asked about.
	Wanted func(ctx context.Context, evs []Event) ([]bool, error)

	// verifying, when set (by tests only: export_test.go's
	// ObserveVerify), sees every slice of events whose origin proofs
	// the receiver verifies. nil in production.
	verifying func([]Event)

	handlers    map[string]Handler
	self        map[string]SelfHandler
	relevant    map[string]func(Event) bool
	metricsOnce sync.Once
	tickMu      sync.Mutex
	lastTick    time.Time
	lastPrune   time.Time
	pruned      []int64 // BRIN ranges pruneProcessed could not desummarize yet
}

// On registers the handler of an event type.
func (rc *Receiver) On(typ string, h Handler) {
	if rc.handlers == nil {
		rc.handlers = map[string]Handler{}
	}
	rc.handlers[typ] = h
}

// OnSelf registers a handler that guarantees exactly-once by itself (see
// SelfHandler); the receiver neither opens a transaction nor records the
// event in processed_events for it.
func (rc *Receiver) OnSelf(typ string, h SelfHandler) {
	if rc.self == nil {
		rc.self = map[string]SelfHandler{}
	}
	rc.self[typ] = h
}

// OnlyIf narrows a handled type to the events relevant says can change
// something here, decided from the event alone (its attributes and data),
// so every delivery of an event gets the same answer. The others are
// acknowledged as ignored once their source is checked (a fact only from
// its owner), their origin proof not verified, whatever it is: no
// transaction, no processed_events row, no handler, no dead letter. Use
// it for a type most of whose events are no-ops for this consumer
// (generate-invoice and the payments that pay no invoice): deduplicating
// an event that changes nothing protects nothing, and it cost a row and a
// commit. relevant must
// say true when it cannot tell (data the handler would refuse), so the
// handler parks what it parks today.
func (rc *Receiver) OnlyIf(typ string, relevant func(Event) bool) {
	if rc.relevant == nil {
		rc.relevant = map[string]func(Event) bool{}
	}
	rc.relevant[typ] = relevant
}

// irrelevant reports an event its type's OnlyIf test says changes nothing.
func (rc *Receiver) irrelevant(ev Event) bool {
	f, ok := rc.relevant[ev.Type()]
	return ok && !f(ev)
}

// Handles reports whether typ has a handler: one registered with On or
// OnSelf, or Batch when it is the receiver's only handler. A batch
// handler beside registered ones takes only their types, so a type the
// consumer does not handle is ignored, not recorded in a transaction.
func (rc *Receiver) Handles(typ string) bool {
	_, ok := rc.handlers[typ]
	_, self := rc.self[typ]
	return ok || self || ((rc.Batch != nil || rc.LogBatch != nil) && len(rc.handlers) == 0 && !TickTypes[typ])
}

var received = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_events_received_total",
	Help: "Events received over HTTP by consumer, type and result (processed, duplicate, ignored, parked, failed).",
}, []string{"consumer", "type", "result"})

var deliveriesRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_event_deliveries_rejected_total",
	Help: "Event deliveries refused before parsing, by reason.",
}, []string{"consumer", "reason"})

var ticksSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_ticks_skipped_total",
	Help: "Authenticated schedule ticks that did nothing because one ran less than the minimum interval before.",
}, []string{"consumer"})

// deliveryDuration is the R, E and D of RED per event type: every
// delivery's time to its answer, by consumer, the delivery's event type
// and result (ok, or failed: answered 503, so the trigger retries). Its
// _count is the rate of deliveries and of failures.
var deliveryDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name: "billfn_event_delivery_duration_seconds",
	Help: "Time to apply one event delivery, by consumer, CloudEvent type (\"other\" for a type the contract does not know, " +
		"\"mixed\" for a batch of several types) and result (ok, failed).",
	Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
}, []string{"consumer", "type", "result"})

// deadLetters counts events parked in dead_letters, by reason: the
// table's rows, as they are written.
var deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_event_dead_letters_total",
	Help: "Events parked in dead_letters by consumer and reason: origin_missing, origin_invalid (no valid origin proof), " +
		"foreign_source (a fact from a source that may not emit it), rejected (the handler refused it for good).",
}, []string{"consumer", "reason"})

// ReasonRejected: a handler refused the event for good (Permanent or a
// 4xx problem); it is parked.
const ReasonRejected = "rejected"

// deadLetterReasons are every reason an event is parked for, so each has a
// series (at zero) from a consumer's first delivery on.
var deadLetterReasons = []string{ReasonNoOrigin, ReasonBadOrigin, ReasonForeignSource, ReasonRejected}

// MixedType is the type label of a batch delivery holding several types.
const MixedType = "mixed"

// Collectors returns the package's metrics.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{received, deliveriesRejected, unexpected, ticksSkipped, deliveryDuration, deadLetters}
}

// initMetrics gives the consumer's bounded label sets their series at
// zero, so a dashboard shows "0 dead letters", not "no data", and an
// increase() sees the first one.
func (rc *Receiver) initMetrics() {
	for _, r := range deadLetterReasons {
		deadLetters.WithLabelValues(rc.Consumer, r)
	}
	for _, r := range []string{"unauthenticated", "malformed"} {
		deliveriesRejected.WithLabelValues(rc.Consumer, r)
	}
}

// deliveryType is the type label of a delivery: its events' type when
// they share one, else MixedType.
func (rc *Receiver) deliveryType(evs []Event) string {
	typ := evs[0].Type()
	for _, ev := range evs[1:] {
		if ev.Type() != typ {
			return MixedType
		}
	}
	return rc.typeLabel(typ)
}

// Result summarises one delivery; it is the response body.
type Result struct {
	Processed  int  `json:"processed"`
	Duplicates int  `json:"duplicates"`
	Ignored    int  `json:"ignored"`
	Parked     int  `json:"parked"`
	Tick       bool `json:"tick,omitempty"`
	// Skipped: the tick came within TickEvery of the previous one and
	// did nothing.
	Skipped bool `json:"skipped,omitempty"`
}

func (rc *Receiver) now() time.Time {
	if rc.Now != nil {
		return rc.Now()
	}
	return time.Now()
}

// ServeHTTP receives one delivery.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.metricsOnce.Do(rc.initMetrics)
	body, err := httpx.ReadBody(r)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	// Ticks are deliveries too: authenticated before anything else, so a
	// tick header or type alone runs nothing.
	if err := rc.authenticate(r, body); err != nil {
		deliveriesRejected.WithLabelValues(rc.Consumer, "unauthenticated").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="billfn"`)
		problem.Write(w, r, &problem.Error{Code: problem.Unauthorized,
			Detail: "event deliveries (schedule ticks too) must carry a valid " + SignatureHeader + " or a service-role bearer token", Err: err})
		return
	}
	if isTick(r, body) {
		rc.tick(w, r)
		return
	}
	evs, err := Parse(r, body)
	if err != nil {
		deliveriesRejected.WithLabelValues(rc.Consumer, "malformed").Inc()
		problem.Write(w, r, err)
		return
	}
	ctx, span, each := rc.traced(WithTopic(r.Context(), r.Header.Get("X-Topic")), evs)
	start := time.Now()
	res, err := rc.Deliver(ctx, evs)
	result := "ok"
	if err != nil {
		result = "failed"
	}
	deliveryDuration.WithLabelValues(rc.Consumer, rc.deliveryType(evs), result).Observe(time.Since(start).Seconds())
	if span != nil {
		telemetry.Fail(span, err)
		if span.IsRecording() {
			span.SetAttributes(attribute.Int("billfn.events.processed", res.Processed), attribute.Int("billfn.events.duplicates", res.Duplicates),
				attribute.Int("billfn.events.parked", res.Parked))
		}
		for _, s := range each {
			telemetry.Fail(s, err)
			s.End()
		}
		span.End()
	}
	if err != nil {
		problem.Write(w, r, &problem.Error{Code: problem.Unavailable,
			Detail: "the event could not be applied now; retry", RetryAfter: time.Second, Err: err})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, res)
}

// traced continues the producers' traces for a delivery. One event: its
// work is a child of the delivery request's span (the kafka-trigger's
// delivery, itself a child of the event's traceparent), or of the event's
// traceparent when the request carried none; a span of its own when
// tracing is on and the trace is sampled. A batch: one span that follows
// the delivery request's sampling decision (the kafka-trigger's batch
// span's own), linking every event's trace when it is recorded, and in
// each sampled event's trace a span of its own (each, child of the
// event's traceparent, linked to the batch span when that is recorded),
// so every sampled producer's trace shows the consumers of its events
// whether they were batched or not. Only the sampled events'
// traceparents are parsed, and a batch span that is not recorded gets no
// links nor attributes.
func (rc *Receiver) traced(ctx context.Context, evs []Event) (context.Context, trace.Span, []trace.Span) {
	parent := trace.SpanContextFromContext(ctx)
	if len(evs) == 1 && !parent.IsValid() {
		ctx = ContextOf(ctx, evs[0]) // logs and the events it emits keep the producer's trace
	}
	if !telemetry.Enabled() || len(evs) == 1 && telemetry.Unsampled(ctx) {
		return ctx, nil, nil // an unsampled trace: its context carries the ids, no span
	}
	if len(evs) == 1 {
		ev := evs[0]
		ctx, span := telemetry.Tracer().Start(ctx, "process "+ev.Type(), trace.WithSpanKind(trace.SpanKindConsumer))
		if span.IsRecording() {
			span.SetAttributes(attribute.String("messaging.consumer.group.name", rc.Consumer), attribute.Int("messaging.batch.message_count", 1),
				attribute.String("cloudevents.event_id", ev.ID()), attribute.String("cloudevents.event_source", SourceOf(ev)),
				attribute.String("cloudevents.event_type", ev.Type()))
			tp, ts := TraceOf(ev)
			if sc, ok := telemetry.ParseParent(tp, ts); ok && sc.TraceID() != parent.TraceID() {
				span.AddLink(eventLink(sc, ev))
			}
		}
		return ctx, span, nil
	}
	ctx, span := telemetry.Tracer().Start(ctx, "process batch", consumerSpan...)
	var opts []trace.SpanStartOption
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.consumer.group.name", rc.Consumer), attribute.Int("messaging.batch.message_count", len(evs)))
		for _, ev := range evs {
			// Only the recorded traces, as the kafka-trigger's batch span
			// links them: an unsampled one is in no trace store.
			if tp, ts := TraceOf(ev); telemetry.ParentSampled(tp) {
				if sc, ok := telemetry.ParseParent(tp, ts); ok {
					span.AddLink(eventLink(sc, ev))
				}
			}
		}
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: span.SpanContext()}))
	}
	var each []trace.Span
	for _, ev := range evs {
		tp, ts := TraceOf(ev)
		if !telemetry.ParentSampled(tp) {
			continue
		}
		sc, ok := telemetry.ParseParent(tp, ts)
		if !ok {
			continue
		}
		_, s := telemetry.Tracer().Start(trace.ContextWithRemoteSpanContext(ctx, sc), "process "+ev.Type(),
			append(opts, trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attribute.String("messaging.consumer.group.name", rc.Consumer),
					attribute.String("cloudevents.event_id", ev.ID()), attribute.String("cloudevents.event_type", ev.Type())))...)
		each = append(each, s)
	}
	return ctx, span, each
}

// consumerSpan are the options of a delivery's batch span, built once: a
// batch under an unsampled parent starts a span nothing records.
var consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}

// eventLink links a span to the trace of ev, whose context is sc.
func eventLink(sc trace.SpanContext, ev Event) trace.Link {
	return trace.Link{SpanContext: sc,
		Attributes: []attribute.KeyValue{attribute.String("cloudevents.event_id", ev.ID()), attribute.String("cloudevents.event_type", ev.Type())}}
}

// isTick recognises schedule ticks among authenticated deliveries: the
// OpenFaaS cron-connector's empty POST (X-Connector: cron-connector or
// X-Topic: cron-function), as the kafka-trigger's scheduler sends it signed,
// and a tick CloudEvent (PingSource, the local schedule trigger) in binary or
// structured mode. ServeHTTP authenticates the delivery first: only a signed
// tick, one with a service token, or an unsigned one on an EVENTS_TRUST_UNSIGNED
// (cluster-local) endpoint runs.
func isTick(r *http.Request, body []byte) bool {
	if len(bytes.TrimSpace(body)) == 0 && r.Header.Get("Ce-Specversion") == "" &&
		(r.Header.Get("X-Connector") == "cron-connector" || r.Header.Get("X-Topic") == "cron-function") {
		return true
	}
	if t := r.Header.Get("Ce-Type"); t != "" {
		return TickTypes[t]
	}
	if len(body) > 4096 || !bytes.Contains(body, []byte("tick")) && !bytes.Contains(body, []byte("sources.ping")) {
		return false
	}
	var head struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(body, &head) == nil && TickTypes[head.Type]
}

// authenticate accepts a valid signature or a service/admin JWT.
func (rc *Receiver) authenticate(r *http.Request, body []byte) error {
	if h := r.Header.Get(SignatureHeader); h != "" {
		tol := rc.Tolerance
		if tol == 0 {
			tol = DefaultTolerance
		}
		keys := rc.Keys
		if rc.KeyRing != nil {
			keys = rc.KeyRing.Keys()
		}
		// The signature names the function it was made for: a delivery
		// captured on its way to another function is refused here.
		return VerifyDelivery(keys, h, rc.Consumer, body, rc.now(), tol)
	}
	if rc.Verifier != nil && r.Header.Get("Authorization") != "" {
		p, err := rc.Verifier.FromRequest(r)
		if err != nil {
			return err
		}
		if !auth.HasRole(p, auth.RoleService, auth.RoleAdmin) {
			return fmt.Errorf("role %s may not deliver events", p.Role)
		}
		return nil
	}
	if rc.TrustUnsigned {
		return nil
	}
	return ErrNoSignature
}

func (rc *Receiver) tick(w http.ResponseWriter, r *http.Request) {
	if rc.Tick == nil && rc.ProcessedRetention <= 0 {
		httpx.WriteJSON(w, http.StatusOK, Result{Tick: true})
		return
	}
	every := rc.TickEvery
	if every == 0 {
		every = time.Second
	}
	rc.tickMu.Lock()
	if !rc.lastTick.IsZero() && rc.now().Sub(rc.lastTick) < every {
		rc.tickMu.Unlock()
		// A tick ran moments ago: this one does nothing. 200, not 429, so
		// no trigger retries it and a flood of ticks costs no more work.
		ticksSkipped.WithLabelValues(rc.Consumer).Inc()
		httpx.WriteJSON(w, http.StatusOK, Result{Tick: true, Skipped: true})
		return
	}
	rc.lastTick = rc.now()
	rc.tickMu.Unlock()
	var err error
	if rc.Tick != nil {
		err = rc.Tick(r.Context())
	}
	// Pruned whether or not Tick failed, and after it, so a slow or
	// failing delete never delays or stops the function's own work.
	if perr := rc.pruneProcessed(r.Context()); perr != nil {
		slog.ErrorContext(r.Context(), "processed_events retention failed", "consumer", rc.Consumer, "err", perr.Error())
		err = errors.Join(err, perr)
	}
	if err != nil {
		problem.Write(w, r, &problem.Error{Code: problem.Unavailable, Detail: "the tick failed; it will run again", Err: err})
		return
	}
	httpx.WriteJSON(w, http.StatusOK, Result{Tick: true})
}

// PruneEvery is the least time between two deletions of a consumer's
// expired processed_events rows by one process: the rows expire by the
// day, so deleting at every tick (each second) would only add statements.
const PruneEvery = 10 * time.Minute

// pruneBatch is how many rows one DELETE of pruneProcessed removes at most,
// so no statement holds many row locks or runs long.
const pruneBatch = 5000

// brinPagesPerRange is the pages_per_range of processed_at's BRIN index
// (PostgreSQL's default): the blocks one summary covers.
const brinPagesPerRange = 128

// pruneProcessed deletes the consumer's processed_events rows older than
// ProcessedRetention, in batches, unless it ran less than PruneEvery ago.
// processed_at's BRIN index finds the old rows: they are the table's first
// pages, since rows are inserted in processed_at order.
//
// A range's summary (its least and greatest processed_at) only widens: the
// pages a delete empties, once vacuum frees them, take new rows, and the
// range would match every later cutoff, until the runs read the whole table.
// So the ranges the deletes touched are desummarized: the next vacuum, which
// must run before their space is reused, summarizes them again from the rows
// left (an unsummarized range matches every scan until then). That takes a
// lock vacuum holds too: it is tried for 200 ms, not to make autovacuum give
// way, and the ranges wait for the next run when it fails.
func (rc *Receiver) pruneProcessed(ctx context.Context) error {
	if rc.ProcessedRetention <= 0 {
		return nil
	}
	rc.tickMu.Lock()
	now := rc.now()
	if !rc.lastPrune.IsZero() && now.Sub(rc.lastPrune) < PruneEvery {
		rc.tickMu.Unlock()
		return nil
	}
	rc.lastPrune = now
	ranges := rc.pruned // the first block of each range a delete touched
	rc.pruned = nil
	rc.tickMu.Unlock()
	err := rc.deleteProcessed(ctx, now.Add(-rc.ProcessedRetention), &ranges)
	slices.Sort(ranges)
	ranges = slices.Compact(ranges)
	if err == nil && len(ranges) > 0 {
		err = postgres.Tx(ctx, rc.Pool, func(tx pgx.Tx) error {
			// Below deadlock_timeout (1 s), after which a waiter cancels the
			// autovacuum of processed_events that holds the lock.
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '200ms'`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `SELECT brin_desummarize_range('processed_events_processed_at_idx', r)
				FROM unnest($1::bigint[]) AS t(r)`, ranges)
			return err
		})
	}
	if err != nil {
		rc.tickMu.Lock()
		rc.pruned = append(rc.pruned, ranges...)
		rc.tickMu.Unlock()
	}
	if pg := (*pgconn.PgError)(nil); errors.As(err, &pg) && pg.Code == "55P03" { // lock_not_available
		return nil
	}
	return err
}

// deleteProcessed deletes the consumer's processed_events rows processed
// before cutoff, in batches, and adds to ranges the first block of each BRIN
// range it deleted from.
func (rc *Receiver) deleteProcessed(ctx context.Context, cutoff time.Time, ranges *[]int64) error {
	for {
		rows, err := rc.Pool.Query(ctx, `WITH gone AS (
				DELETE FROM processed_events WHERE ctid = ANY (ARRAY(
					SELECT ctid FROM processed_events WHERE processed_at < $2 AND consumer = $1 LIMIT $3))
				RETURNING (ctid::text::point)[0]::bigint / $4 * $4 AS range)
			SELECT range, count(*) FROM gone GROUP BY range`, rc.Consumer, cutoff, pruneBatch, brinPagesPerRange)
		if err != nil {
			return err
		}
		deleted := 0
		var r, n int64
		if _, err := pgx.ForEachRow(rows, []any{&r, &n}, func() error {
			*ranges = append(*ranges, r)
			deleted += int(n)
			return nil
		}); err != nil {
			return err
		}
		if deleted < pruneBatch {
			return nil
		}
	}
}

// Parse reads the events of a delivery in any supported mode.
func Parse(r *http.Request, body []byte) ([]Event, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var evs []Event
	switch {
	case mt == ContentTypeBatch:
		var err error
		if evs, err = unmarshalBatch(body); err != nil {
			return nil, problem.New(problem.BadRequest, "malformed CloudEvents batch: %v", err)
		}
	case r.Header.Get("Ce-Specversion") != "":
		// The SDK's conversion indexes past the prefix of a header named
		// just "Ce-": it would panic (headers without a value, whose first
		// value it would read too, eventFromBinary skips).
		for k := range r.Header {
			if strings.EqualFold(k, "Ce-") {
				return nil, problem.New(problem.BadRequest, "malformed binary-mode CloudEvent: a Ce- header without an attribute name")
			}
		}
		ev, err := eventFromBinary(r.Header, body)
		if err != nil {
			return nil, problem.New(problem.BadRequest, "malformed binary-mode CloudEvent: %v", err)
		}
		// Data declared JSON (or of no declared type, which means JSON) is
		// written raw when the event is encoded, so it must be JSON: else
		// the event could not even be parked.
		if d := ev.Data(); len(d) > 0 && jsonMedia(ev.DataContentType()) && !ev.DataBase64 &&
			ev.Context.DeprecatedGetDataContentEncoding() != event.Base64 && !json.Valid(d) {
			return nil, problem.New(problem.BadRequest, "malformed binary-mode CloudEvent: the data is not the JSON its content type says")
		}
		evs = []Event{*ev}
	default:
		// Structured mode, or the kafka-connector form whose body is the
		// structured event whatever its Content-Type says.
		var ev Event
		if err := unmarshalStructured(body, &ev); err != nil {
			return nil, problem.New(problem.BadRequest, "the body is not a structured CloudEvent: %v", err)
		}
		evs = []Event{ev}
	}
	if len(evs) == 0 {
		return nil, problem.New(problem.BadRequest, "the batch holds no events")
	}
	for i := range evs {
		if err := validate(evs[i]); err != nil {
			return nil, problem.New(problem.BadRequest, "event %d is not a valid CloudEvent: %v", i, err)
		}
		for name := range extensionsOf(evs[i]) {
			if _, ok := formatMembers[name]; ok {
				return nil, problem.New(problem.BadRequest, "event %d has an extension named %q, a member of the CloudEvents format itself", i, name)
			}
		}
		if name := untextual(evs[i]); name != "" {
			return nil, problem.New(problem.BadRequest, "event %d: its %s holds U+0000 or bytes that are not UTF-8", i, name)
		}
	}
	return evs, nil
}

// untextual names an attribute of ev that holds U+0000 or bytes that are
// not UTF-8, "" when none does. The CloudEvents spec's Strings hold
// neither, and Postgres text refuses both: the event's id and type go to
// processed_events and dead_letters, the whole event to a dead letter, so
// such an event could be neither applied nor parked, and answered 503 for
// good — its partition waiting behind it, since the trigger retries a 503
// until the function takes the record — or made a metric panic on its
// type. A 400 has the trigger dead-letter the record at once. The source
// is written percent-encoded and needs no check.
func untextual(ev Event) string {
	bad := func(s string) bool { return strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) }
	switch {
	case bad(ev.ID()):
		return "id"
	case bad(ev.Type()):
		return "type"
	case bad(ev.Subject()):
		return "subject"
	case bad(ev.DataContentType()):
		return "datacontenttype"
	}
	for name, v := range extensionsOf(ev) {
		if s, ok := v.(string); ok && bad(s) {
			return "extension " + name
		}
	}
	return ""
}

// validate is ev.Validate() without the map it allocates for its answer
// when there is nothing to put in it: an event with a context, no field
// errors and a context that validates is valid; any other is answered by
// Validate itself, its error unchanged.
func validate(ev Event) error {
	if ev.Context != nil && len(ev.FieldErrors) == 0 && (plainValid(ev.Context) || ev.Context.Validate() == nil) {
		return nil
	}
	return ev.Validate()
}

// plainValid reports that a 1.0 context passes Validate without asking
// it, which builds the source's string and parses the content type on
// every call (three allocations per event): an id and a type not blank, a
// source that is a path of plain characters (SourceOf's), not blank, a
// subject not blank if any, a JSON content type Validate takes, no
// dataschema. false says nothing: Validate decides
// (TestPlainValidIsValidate).
func plainValid(c event.EventContext) bool {
	ec, ok := c.(*event.EventContextV1)
	if !ok || strings.TrimSpace(ec.ID) == "" || strings.TrimSpace(ec.Type) == "" || ec.DataSchema != nil ||
		ec.Subject != nil && strings.TrimSpace(*ec.Subject) == "" {
		return false
	}
	if ec.DataContentType != nil {
		switch *ec.DataContentType {
		case event.ApplicationJSON, event.TextJSON, event.ApplicationCloudEventsJSON, event.ApplicationCloudEventsBatchJSON:
		default:
			return false
		}
	}
	return ec.Source.URL.Path != "" && plainSource(&ec.Source.URL)
}

// formatMembers are the names an extension may not take: the format's own
// members. The SDK reads a member it does not know ("dAtA", a Ce-Data
// header) as an extension under its lower-cased name, which encoding the
// event again would write as that member (a "data" replacing the data), so
// the event would change between a consumer and its dead letters.
var formatMembers = map[string]struct{}{
	"specversion": {}, "id": {}, "source": {}, "type": {}, "subject": {}, "time": {},
	"datacontenttype": {}, "dataschema": {}, "data": {}, "data_base64": {},
	"schemaurl": {}, "datacontentencoding": {}, // CloudEvents 0.3's
}

// jsonMedia reports whether a datacontenttype means JSON data ("" does).
func jsonMedia(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "", event.ApplicationJSON, event.TextJSON, event.ApplicationCloudEventsJSON, event.ApplicationCloudEventsBatchJSON:
		return true
	}
	return false
}

// Deliver applies events: deduplicated, each with its effect, poison parked.
// A non-nil error means the delivery must be retried.
//
// Each event's disposition (dispose) is decided once, before any proof is
// verified: it needs none. The events OnlyIf says change nothing here are
// ignored unverified, like the ones Wanted does not want (wantedFirst):
// whatever their proof, they would change nothing.
func (rc *Receiver) Deliver(ctx context.Context, evs []Event) (Result, error) {
	ds := make([]disposed, len(evs))
	for i, ev := range evs {
		ds[i].d, ds[i].cause = rc.dispose(ctx, ev)
	}
	if rc.Wanted != nil {
		if unproven, unwanted, ok := rc.wantedFirst(ctx, evs, ds); ok {
			return rc.deliver(ctx, evs, ds, unproven, unwanted)
		}
	}
	return rc.deliver(ctx, evs, ds, rc.unprovenBut(evs, func(i int) bool { return ds[i].d == ignoreIrrelevant }), nil)
}

// disposed is an event's disposition, with the cause of a parkForeign.
type disposed struct {
	d     disposition
	cause error
}

// deliver is Deliver once the origins are checked: ds[i] is evs[i]'s
// disposition, unproven[i] why its origin cannot be trusted (nil: proven,
// or not verified because it is unwanted or irrelevant). unwanted, when
// not nil, is Wanted's answer already asked (wantedFirst): unwanted[i]
// events are ignored and Wanted is not asked again; nil asks Wanted, when
// set, about the proven handled events.
func (rc *Receiver) deliver(ctx context.Context, evs []Event, ds []disposed, unproven []error, unwanted []bool) (Result, error) {
	var res Result
	var selfEvs []Event  // applySelf: run outside any transaction
	handled := evs[:0:0] // applyTx: Wanted asked (unless it was), then a transaction
	for i, ev := range evs {
		_, known := ContractTopic(ev.Type())
		if unwanted != nil && unwanted[i] {
			// Wanted says it changes nothing here: acknowledged, its
			// proof never verified (wantedFirst).
			res.Ignored++
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "ignored").Inc()
			continue
		}
		if cause := unproven[i]; cause != nil {
			// No valid proof of who wrote it: anyone able to write the
			// topic may have. Parked, never applied, acknowledged (a retry
			// brings the same bytes). Not marked processed: the (source,
			// id) it claims may be a real producer's, whose genuine event
			// must still apply when it comes.
			if err := rc.park(ctx, ev, cause, false); err != nil {
				received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "failed").Inc()
				return res, err
			}
			res.Parked++
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "parked").Inc()
			reason := ReasonBadOrigin
			if errors.Is(cause, ErrNoOrigin) {
				reason = ReasonNoOrigin
			}
			deadLetters.WithLabelValues(rc.Consumer, reason).Inc()
			rc.noteUnexpected(ctx, ev, reason)
			continue
		}
		d, cause := ds[i].d, ds[i].cause
		switch d {
		case parkForeign:
			// A fact from a source that may not emit it (a forgery, or a
			// producer writing what is not its own): parked before any
			// handler runs, alone, so the rest of a batch still applies.
			// A retry cannot fix it: acknowledged, left for an operator.
			if err := rc.Park(ctx, ev, cause); err != nil {
				received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "failed").Inc()
				return res, err
			}
			res.Parked++
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "parked").Inc()
			deadLetters.WithLabelValues(rc.Consumer, ReasonForeignSource).Inc()
			rc.noteUnexpected(ctx, ev, ReasonForeignSource)
		case ignoreMisplaced:
			// The contract puts this type on another topic: a producer
			// that may not write it there, or a mistake; never applied.
			res.Ignored++
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "ignored").Inc()
			rc.noteUnexpected(ctx, ev, ReasonWrongTopic)
		case ignoreIrrelevant:
			// Nothing to do for this consumer (OnlyIf): acknowledged,
			// nothing written, the same answer at every redelivery.
			res.Ignored++
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "ignored").Inc()
		case applySelf, applyTx:
			if !known && rc.typeLabel(ev.Type()) == OtherType {
				// A catch-all batch handler takes it; still worth a trace.
				rc.noteUnexpected(ctx, ev, ReasonUnknownType)
			}
			if d == applySelf {
				selfEvs = append(selfEvs, ev)
			} else {
				handled = append(handled, ev)
			}
		case ignoreUnhandled:
			res.Ignored++
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "ignored").Inc()
			reason := ReasonUnhandled
			if !known {
				reason = ReasonUnknownType
			}
			rc.noteUnexpected(ctx, ev, reason)
		default:
			panic(fmt.Sprintf("events: deliver has no case for disposition %d", d))
		}
	}
	if err := rc.deliverSelf(ctx, selfEvs, &res); err != nil {
		return res, err
	}
	if rc.Wanted != nil && unwanted == nil && len(handled) > 0 {
		var err error
		if handled, err = rc.wanted(ctx, handled, &res); err != nil {
			return res, err
		}
	}
	if len(handled) == 0 {
		return res, nil
	}
	if (rc.Batch != nil || rc.LogBatch != nil) && len(handled) > 1 {
		n, dups, err := rc.deliverBatch(ctx, handled)
		if err == nil {
			res.Processed += n
			res.Duplicates += dups
			return res, nil
		}
		if !IsPermanentIn(ctx, err) {
			return res, err
		}
		slog.WarnContext(ctx, "batch failed permanently; applying one by one", "consumer", rc.Consumer, "err", err.Error())
	}
	for _, ev := range handled {
		outcome, err := rc.deliverOne(ctx, ev)
		if err != nil {
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "failed").Inc()
			return res, err
		}
		switch outcome {
		case "processed":
			res.Processed++
		case "duplicate":
			res.Duplicates++
		case "parked":
			res.Parked++
		}
		received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), outcome).Inc()
	}
	return res, nil
}

// wanted keeps the events of evs that Wanted says can change something,
// and counts the others ignored.
func (rc *Receiver) wanted(ctx context.Context, evs []Event, res *Result) ([]Event, error) {
	want, err := rc.Wanted(ctx, evs)
	if err == nil && len(want) != len(evs) {
		err = fmt.Errorf("events: Wanted answered for %d of %d events", len(want), len(evs))
	}
	if err != nil {
		for _, ev := range evs {
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "failed").Inc()
		}
		return nil, err
	}
	kept := evs[:0:0]
	for i, ev := range evs {
		if want[i] {
			kept = append(kept, ev)
			continue
		}
		res.Ignored++
		received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "ignored").Inc()
	}
	return kept, nil
}

// deliverSelf runs self-handled events: as one batch when possible, one by
// one otherwise (and to isolate a poison event).
func (rc *Receiver) deliverSelf(ctx context.Context, evs []Event, res *Result) error {
	if len(evs) == 0 {
		return nil
	}
	if rc.SelfBatch != nil && len(evs) > 1 {
		err := rc.SelfBatch(ctx, evs)
		if err == nil {
			res.Processed += len(evs)
			for _, ev := range evs {
				received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "processed").Inc()
			}
			return nil
		}
		if !IsPermanentIn(ctx, err) {
			return err
		}
	}
	for _, ev := range evs {
		err := rc.self[ev.Type()](ctx, ev)
		switch {
		case err == nil:
			res.Processed++
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "processed").Inc()
		case IsPermanentIn(ctx, err):
			if perr := rc.Park(ctx, ev, err); perr != nil {
				return perr
			}
			deadLetters.WithLabelValues(rc.Consumer, ReasonRejected).Inc()
			res.Parked++
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "parked").Inc()
		default:
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "failed").Inc()
			return err
		}
	}
	return nil
}

var errDuplicate = errors.New("duplicate")

func (rc *Receiver) deliverOne(ctx context.Context, ev Event) (string, error) {
	err := postgres.Tx(ctx, rc.Pool, func(tx pgx.Tx) error {
		if _, ok := rc.handlers[ev.Type()]; !ok && rc.LogBatch != nil {
			dup, err := rc.logBatch(ctx, tx, []Event{ev})
			if err == nil && dup[0] {
				return errDuplicate
			}
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO processed_events (consumer, source, id) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, rc.Consumer, SourceOf(ev), ev.ID())
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errDuplicate
		}
		return rc.apply(ctx, tx, ev)
	})
	switch {
	case err == nil:
		return "processed", nil
	case errors.Is(err, errDuplicate):
		return "duplicate", nil
	case IsPermanentIn(ctx, err):
		if perr := rc.park(ctx, ev, err, rc.LogBatch == nil); perr != nil {
			return "", perr
		}
		deadLetters.WithLabelValues(rc.Consumer, ReasonRejected).Inc()
		return "parked", nil
	}
	return "", err
}

func (rc *Receiver) apply(ctx context.Context, tx pgx.Tx, ev Event) error {
	if h, ok := rc.handlers[ev.Type()]; ok {
		return h(ctx, tx, ev)
	}
	return rc.Batch(ctx, tx, []Event{ev})
}

func (rc *Receiver) deliverBatch(ctx context.Context, evs []Event) (processed, dups int, err error) {
	if rc.LogBatch != nil {
		return rc.deliverLogBatch(ctx, evs)
	}
	sources := make([]string, len(evs))
	ids := make([]string, len(evs))
	for i, ev := range evs {
		sources[i], ids[i] = SourceOf(ev), ev.ID()
	}
	var todo []Event
	err = postgres.Tx(ctx, rc.Pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `INSERT INTO processed_events (consumer, source, id)
			SELECT $1, s, i FROM unnest($2::text[], $3::text[]) AS t(s, i)
			ON CONFLICT DO NOTHING RETURNING source, id`, rc.Consumer, sources, ids)
		if err != nil {
			return err
		}
		fresh := map[[2]string]bool{}
		for rows.Next() {
			var s, i string
			if err := rows.Scan(&s, &i); err != nil {
				return err
			}
			fresh[[2]string{s, i}] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		todo = make([]Event, 0, len(fresh))
		for _, ev := range evs {
			k := [2]string{SourceOf(ev), ev.ID()}
			if fresh[k] {
				todo = append(todo, ev)
				delete(fresh, k) // the same event twice in one batch counts once
			}
		}
		processed, dups = len(todo), len(evs)-len(todo)
		if len(todo) == 0 {
			return nil
		}
		return rc.Batch(ctx, tx, todo)
	})
	if err == nil {
		// As for single deliveries: applied events count as processed, the
		// rest of the batch as duplicates.
		for _, ev := range todo {
			received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "processed").Inc()
		}
		if n := len(evs) - len(todo); n > 0 {
			applied := map[[2]string]int{}
			for _, ev := range todo {
				applied[[2]string{SourceOf(ev), ev.ID()}]++
			}
			for _, ev := range evs {
				k := [2]string{SourceOf(ev), ev.ID()}
				if applied[k] > 0 {
					applied[k]--
					continue
				}
				received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), "duplicate").Inc()
			}
		}
	}
	return processed, dups, err
}

// deliverLogBatch is deliverBatch for a LogBatch, which says itself which
// events it had applied before.
func (rc *Receiver) deliverLogBatch(ctx context.Context, evs []Event) (processed, dups int, err error) {
	var dup []bool
	err = postgres.Tx(ctx, rc.Pool, func(tx pgx.Tx) error {
		var err error
		dup, err = rc.logBatch(ctx, tx, evs)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	for i, ev := range evs {
		result := "processed"
		if dup[i] {
			result = "duplicate"
			dups++
		}
		received.WithLabelValues(rc.Consumer, rc.typeLabel(ev.Type()), result).Inc()
	}
	return len(evs) - dups, dups, nil
}

func (rc *Receiver) logBatch(ctx context.Context, tx pgx.Tx, evs []Event) ([]bool, error) {
	dup, err := rc.LogBatch(ctx, tx, evs)
	if err == nil && len(dup) != len(evs) {
		err = fmt.Errorf("events: %s's LogBatch answered for %d of %d events", rc.Consumer, len(dup), len(evs))
	}
	return dup, err
}

// Park stores a poison event in dead_letters and marks it processed, so a
// redelivery is acknowledged without running it again.
func (rc *Receiver) Park(ctx context.Context, ev Event, cause error) error {
	return rc.park(ctx, ev, cause, true)
}

// disposition is what deliver does with an event whose origin is proven
// (or not checked), decided by the checks that need no proof. deliver
// switches on it, and wantedFirst asks Wanted about the applyTx events
// alone, so the two cannot disagree about which events Wanted may rule
// out unverified.
type disposition uint8

const (
	parkForeign      disposition = iota // a fact from a source that may not emit it: parked (foreign_source)
	ignoreMisplaced                     // read from a topic the contract does not put its type on: ignored (wrong_topic)
	ignoreUnhandled                     // no handler here: ignored (unhandled, unknown_type)
	ignoreIrrelevant                    // OnlyIf says it changes nothing here: ignored
	applySelf                           // a self-handled type: run outside any transaction; Wanted is not asked
	applyTx                             // applied in a transaction, deduplicated; the only events Wanted is asked about
	nDispositions
)

// dispose is ev's disposition, by the checks in deliver's order; for
// parkForeign, the cause it is parked with.
func (rc *Receiver) dispose(ctx context.Context, ev Event) (disposition, error) {
	if cause := foreign(ev); cause != nil {
		return parkForeign, cause
	}
	switch {
	case misplaced(ctx, ev):
		return ignoreMisplaced, nil
	case !rc.Handles(ev.Type()):
		return ignoreUnhandled, nil
	case rc.irrelevant(ev):
		return ignoreIrrelevant, nil
	}
	if _, ok := rc.self[ev.Type()]; ok {
		return applySelf, nil
	}
	return applyTx, nil
}

// pick returns the events of evs for which keep(i) holds, and the index
// in evs of each.
func pick(evs []Event, keep func(i int) bool) (picked []Event, at []int) {
	for i, ev := range evs {
		if keep(i) {
			picked, at = append(picked, ev), append(at, i)
		}
	}
	return picked, at
}

// wantedFirst checks a delivery's origins for a consumer with Wanted, at
// the cost of the events that can change something only: Wanted is asked
// first, about the events deliver would apply in a transaction (applyTx:
// the same dispose deliver switches on), their proofs not yet verified,
// and only the others are verified (the wanted ones, and the events that are
// parked or ignored for other reasons than irrelevance, whose dead letter
// or count depends on the proof as before). An unwanted event is not
// verified, nor an irrelevant one (OnlyIf): it is ignored whatever its
// proof, since it changes nothing here.
//
// Wanted's answer holds only when the events it wants are genuine: an
// answer may depend on the other events of the delivery (handle-webhook
// wants only the first event naming an unknown payment, so a forgery
// placed before the genuine event would make that one unwanted). So when
// any wanted event fails its proof, the unwanted events are verified too
// and unwanted is nil: deliver then parks every unproven event and asks
// Wanted again about the proven ones only, as a consumer without this
// shortcut does. When Wanted fails, or there is nothing to ask it, ok is
// false and Deliver verifies every event but the irrelevant ones first,
// as without Wanted (and asks Wanted again, which answers its error).
// unproven and unwanted are deliver's arguments.
func (rc *Receiver) wantedFirst(ctx context.Context, evs []Event, ds []disposed) (unproven []error, unwanted []bool, ok bool) {
	ask, at := pick(evs, func(i int) bool { return ds[i].d == applyTx })
	if len(ask) == 0 {
		return nil, nil, false // nothing to ask: Deliver's path without Wanted
	}
	want, err := rc.Wanted(ctx, ask)
	if err != nil || len(want) != len(ask) {
		return nil, nil, false // today's path asks again and answers the error
	}
	unwanted = make([]bool, len(evs))
	wanted := make([]bool, len(evs))
	for k, i := range at {
		unwanted[i], wanted[i] = !want[k], want[k]
	}
	unproven = rc.unprovenBut(evs, func(i int) bool { return unwanted[i] || ds[i].d == ignoreIrrelevant })
	forged := false
	for i, cause := range unproven {
		forged = forged || cause != nil && wanted[i]
	}
	if !forged {
		return unproven, unwanted, true
	}
	// A wanted forgery: Wanted's answer cannot be trusted. The unwanted
	// events are verified too, and deliver asks Wanted again about the
	// proven ones: today's path, with no proof verified twice.
	rest, rat := pick(evs, func(i int) bool { return unwanted[i] })
	for k, cause := range rc.unproven(rest) {
		unproven[rat[k]] = cause
	}
	return unproven, nil, true
}

// unprovenBut is unproven for the events of evs but those skip(i) leaves
// out, whose proofs are not verified (nil).
func (rc *Receiver) unprovenBut(evs []Event, skip func(i int) bool) []error {
	skipped := false
	for i := range evs {
		skipped = skipped || skip(i)
	}
	if !skipped {
		return rc.unproven(evs) // most deliveries: nothing to copy
	}
	verify, at := pick(evs, func(i int) bool { return !skip(i) })
	out := make([]error, len(evs))
	for k, cause := range rc.unproven(verify) {
		out[at[k]] = cause
	}
	return out
}

// unproven returns, for each of evs, why its origin cannot be trusted,
// nil when its proof verifies with a key of its source. The proofs of a
// batch delivery are verified together (OriginKeys.VerifyAll): each event
// is still verified, at a fraction of the cost of one verification.
func (rc *Receiver) unproven(evs []Event) []error {
	if rc.SkipOriginCheck || len(evs) == 0 {
		return make([]error, len(evs))
	}
	if rc.verifying != nil {
		rc.verifying(evs)
	}
	return rc.Origins.VerifyAll(evs)
}

// park stores ev in dead_letters; markProcessed also records its (source,
// id) as processed, so a redelivery is acknowledged without running it.
func (rc *Receiver) park(ctx context.Context, ev Event, cause error, markProcessed bool) error {
	raw, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	slog.ErrorContext(ctx, "event parked", "consumer", rc.Consumer, "type", ev.Type(), "id", ev.ID(),
		"source", SourceOf(ev), "err", cause.Error())
	// One statement (atomic on its own, one round trip): the dead letter
	// and, with markProcessed, the event's (source, id) as processed.
	for {
		_, err = rc.Pool.Exec(context.WithoutCancel(ctx), `WITH done AS (
				INSERT INTO processed_events (consumer, source, id) SELECT $1, $2, $3 WHERE $7
				ON CONFLICT DO NOTHING)
			INSERT INTO dead_letters (consumer, source, event_id, type, event, error)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (consumer, source, event_id) DO NOTHING`,
			rc.Consumer, SourceOf(ev), ev.ID(), ev.Type(), raw, truncate(cause.Error(), 2000), markProcessed)
		var pg *pgconn.PgError
		if err == nil || ev.DataBase64 || len(ev.Data()) == 0 || !errors.As(err, &pg) || !strings.HasPrefix(pg.Code, "22") {
			return err
		}
		// jsonb refused the data (U+0000, half a surrogate pair, a
		// number beyond numeric: JSON that encoding/json takes), and an
		// event that cannot be parked would be retried for good. Its
		// bytes are kept as they came, as data_base64.
		ev = ev.Clone()
		ev.DataBase64 = true
		if raw, err = json.Marshal(ev); err != nil {
			return err
		}
	}
}

// truncate makes an error text fit a text column: valid UTF-8 without NUL
// (Postgres rejects both), at most n bytes, cut between characters.
func truncate(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Marshal encodes an event in structured mode.
func Marshal(ev Event) ([]byte, error) { return json.Marshal(ev) }

// Unmarshal decodes a structured-mode event.
func Unmarshal(b []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(b, &ev); err != nil {
		return ev, err
	}
	return ev, ev.Validate()
}
