package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/http/httpguts"

	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/telemetry"
)

// consumer is one function's consumer group.
type consumer struct {
	t        *Trigger
	name     string
	spanName string // of its deliveries' spans, built once
	sub      stackfile.Subscription
	url      string
	cancel   context.CancelFunc
	done     chan struct{}
}

func (t *Trigger) startConsumer(parent context.Context, name string, sub stackfile.Subscription) *consumer {
	ctx, cancel := context.WithCancel(parent)
	c := newConsumer(t, name, sub)
	c.cancel = cancel
	t.metrics.initConsumer(name)
	go c.run(ctx)
	return c
}

// newConsumer is the consumer of function name's subscription, not started.
func newConsumer(t *Trigger, name string, sub stackfile.Subscription) *consumer {
	return &consumer{t: t, name: name, spanName: "deliver " + name, sub: sub, done: make(chan struct{}),
		url: strings.TrimRight(t.cfg.GatewayURL, "/") + "/function/" + name + "/"}
}

func (c *consumer) stop() {
	c.cancel()
	<-c.done
}

func (c *consumer) saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.ClientID = "billfn-kafka-trigger"
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.Offsets.AutoCommit.Enable = true // commits what was marked: only delivered records
	cfg.Consumer.Offsets.AutoCommit.Interval = time.Second
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	if c.t.cfg.InitialOffset == "latest" {
		cfg.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	// A record may be retried for minutes; the group must not give the
	// partition away meanwhile (heartbeats run on their own goroutine).
	cfg.Consumer.Group.Rebalance.Timeout = 2 * time.Minute
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategySticky()}
	cfg.Consumer.Fetch.Default = 1 << 20
	cfg.Consumer.Fetch.Min, cfg.Consumer.MaxWaitTime = fetchWait(c.sub.BatchWait)
	cfg.Metadata.RefreshFrequency = time.Minute
	// The trigger's own principal (kafka-acls.yaml): READ on the topics
	// and on its groups; validate checked the settings at start.
	_ = c.t.cfg.SASL.Apply(cfg)
	return cfg
}

// maxFetchWait bounds how long the broker may hold a fetch of a
// function that batches with a wait: sarama's own default, the longest a
// fetch waits for a function that does not.
const maxFetchWait = 500 * time.Millisecond

// fetchWait is the fetch's minimum size and longest wait for a function
// whose batches may wait w. Without a wait (a lone record is delivered at
// once) a fetch returns as soon as one record is there, and otherwise
// waits 500 ms: latency first, one fetch per record or burst. With a
// wait, the broker holds each fetch until 1 MiB is there or w has passed
// (at most maxFetchWait): at a few thousand records a second one fetch
// brings tens of them instead of one each (sarama's fetch loop was over a
// quarter of the trigger's CPU, make bench profiles 2026-12-03). A
// record's hold is counted from when it was written (fill, holdFor), so
// the fetch's wait is part of w, not added to it: a record still waits at
// most w in all. Not less than w: a fetch that finds nothing costs the
// trigger and the broker about as much as one that brings records, so
// an idle trigger polls each such function 1/w times a second (w/2 doubled
// the idle stack's CPU in make bench, 2026-12-03). So a long wait also
// brings a function its records in clumps of up to maxFetchWait's worth,
// a burst that delays the requests of every process sharing its cores:
// aggregate-report's 1 s did until 2026-12-08 (docs/platform.md,
// Batching), and every function now asks for 100 ms.
func fetchWait(w time.Duration) (minBytes int32, maxWait time.Duration) {
	if w <= 0 {
		return 1, 500 * time.Millisecond
	}
	return 1 << 20, max(time.Millisecond, min(w, maxFetchWait).Truncate(time.Millisecond))
}

// run keeps the group consuming until ctx ends, reconnecting after errors.
func (c *consumer) run(ctx context.Context) {
	defer close(c.done)
	group := c.t.cfg.GroupPrefix + c.name
	backoff := time.Second
	for ctx.Err() == nil {
		cg, err := sarama.NewConsumerGroup(c.t.cfg.Brokers, group, c.saramaConfig())
		if err != nil {
			slog.Warn("cannot join the consumer group; retrying", "target", c.name, "group", group,
				"brokers", strings.Join(c.t.cfg.Brokers, ","), "err", err.Error())
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		go func() {
			for err := range cg.Errors() {
				slog.Warn("consumer group error", "target", c.name, "err", err.Error())
			}
		}()
		for ctx.Err() == nil {
			// Consume returns at every rebalance; call it again.
			if err := cg.Consume(ctx, c.sub.Topics, &handler{c: c}); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
					break
				}
				slog.Warn("consume failed; rejoining", "target", c.name, "err", err.Error())
				if !sleep(ctx, time.Second) {
					break
				}
			}
		}
		_ = cg.Close() // commits the marked offsets
	}
}

// handler is one session of a consumer's group. For a function that
// takes batches it merges, per topic, the records of every partition the
// session was given (merger).
type handler struct {
	c       *consumer
	mergers map[string]*merger // by topic; set by Setup
	wg      sync.WaitGroup     // the mergers' goroutines
}

// Setup says which partitions this trigger delivers from now on: with
// several triggers in a group, every rebalance (one died, one joined)
// moves partitions, and the log shows where they went.
func (h *handler) Setup(sess sarama.ConsumerGroupSession) error {
	claims := sess.Claims()
	var parts []string
	for _, topic := range slices.Sorted(maps.Keys(claims)) {
		ps := slices.Clone(claims[topic])
		slices.Sort(ps)
		for _, p := range ps {
			parts = append(parts, topic+"/"+strconv.Itoa(int(p)))
		}
	}
	slog.Info("partitions assigned", "target", h.c.name, "group", h.c.t.cfg.GroupPrefix+h.c.name,
		"generation", sess.GenerationID(), "member", sess.MemberID(), "partitions", strings.Join(parts, ","))
	if h.c.sub.BatchSize > 1 {
		h.mergers = make(map[string]*merger, len(claims))
		for topic := range claims {
			// A batch's worth buffered: a batch takes the records already
			// there (all of a backlog's), and without a buffer only one of
			// each partition would be (TestABatchGathersTheRecordsOfEveryPartitionOfItsTopic).
			m := &merger{c: h.c, topic: topic, in: make(chan *sarama.ConsumerMessage, h.c.sub.BatchSize),
				claims: map[int32]sarama.ConsumerGroupClaim{}, waiting: map[int32]int64{}}
			h.mergers[topic] = m
			h.wg.Go(func() { m.run(sess) })
		}
	}
	return nil
}

// Cleanup runs once every claim's ConsumeClaim returned: it waits for the
// mergers, which stop with the session, so none marks an offset once
// the session is over.
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error {
	h.wg.Wait()
	return nil
}

// ConsumeClaim delivers one partition's records in order (or forwards
// them, in order, to its topic's merger, which does). An offset is
// marked (and so committed) only once its record was delivered or
// dead-lettered; when the session ends first, the record stays uncommitted
// and is delivered again by whoever owns the partition next.
func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	c := h.c
	ctx := sess.Context()
	partition := strconv.Itoa(int(claim.Partition()))
	// The partition may go to another trigger at the next rebalance (one
	// of several died or joined): its lag is then that one's to report,
	// and a stale figure here would never go down.
	defer c.t.metrics.lag.DeleteLabelValues(c.name, claim.Topic(), partition)
	if m := h.mergers[claim.Topic()]; m != nil {
		return m.forward(ctx, claim)
	}
	lag := c.t.metrics.lag.WithLabelValues(c.name, claim.Topic(), partition)
	msgs := claim.Messages()
	wants := c.sub.Wants // one method value for the claim, not one per record
	names := typeNames{}
	for {
		var first *sarama.ConsumerMessage
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			first = m
		}
		// Until it is delivered, the record counts as lag, also while a
		// batch-wait holds it.
		lag.Set(float64(max(1, claim.HighWaterMarkOffset()-first.Offset)))
		batch := c.fill(ctx, msgs, first)
		if !c.process(ctx, batch, wants, names) {
			return nil
		}
		// Every record of the batch is done: delivered, dead-lettered or
		// not wanted by the function.
		last := batch[len(batch)-1]
		sess.MarkMessage(last, "")
		lag.Set(float64(max(0, claim.HighWaterMarkOffset()-last.Offset-1)))
	}
}

// process delivers the records of batch the function wants, in order,
// and reports whether all are done (delivered, dead-lettered or not
// wanted); false when ctx ended first.
func (c *consumer) process(ctx context.Context, batch []*sarama.ConsumerMessage, wants func(string) bool, names typeNames) bool {
	wanted := make([]record, 0, len(batch))
	for _, m := range batch {
		if r, ok := inspectWith(m, wants, names); ok {
			wanted = append(wanted, r)
		} else {
			c.t.metrics.events.WithLabelValues(c.name, events.TypeLabel(r.typ), "filtered").Inc()
		}
	}
	if skipped := len(batch) - len(wanted); skipped > 0 {
		c.t.metrics.deliveries.WithLabelValues(c.name, batch[0].Topic, "filtered").Add(float64(skipped))
	}
	done := 0 // splitBatch keeps wanted's order: group i is the next len(group) records
	for _, group := range splitBatch(wanted) {
		if !c.deliver(ctx, group, wanted[done:done+len(group)]) {
			return false
		}
		done += len(group)
	}
	return true
}

// A merger delivers the records of every partition of one topic that a
// session holds for a function that takes batches, as one stream: a
// batch gathers the records of all of them that arrived within the
// function's batch-wait (up to its batch size), where each partition's
// claim would otherwise send its own. Each partition's records keep their
// order (its claim forwards them in order, and the merger delivers one
// batch at a time) and its offset is marked once its records are done,
// as a claim marks its own. One request per batch-wait instead of one per
// partition (6 or 12 of them): the kafka-trigger and the functions
// consuming a payment's events spent 749 µs of CPU per payment, against
// 1,052–1,306 µs before (docs/platform.md, Batching). A topic's
// partitions then wait for each other's deliveries, as records of one
// partition always did; the function is the same for all of them, and a
// batch it refuses goes record by record (deliver).
type merger struct {
	c     *consumer
	topic string
	in    chan *sarama.ConsumerMessage

	mu     sync.Mutex
	claims map[int32]sarama.ConsumerGroupClaim // the partitions forwarding, for their lag
	// waiting is, by partition, the offset of the oldest record forwarded
	// since the last batch was done: the lag counts from there.
	waiting map[int32]int64
}

// forward sends claim's records to the merger, in order, until the
// session ends.
func (m *merger) forward(ctx context.Context, claim sarama.ConsumerGroupClaim) error {
	m.mu.Lock()
	m.claims[claim.Partition()] = claim
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.claims, claim.Partition())
		delete(m.waiting, claim.Partition())
		m.mu.Unlock()
	}()
	msgs := claim.Messages()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r, ok := <-msgs:
			if !ok {
				return nil
			}
			// Until it is delivered, the record counts as lag, also
			// while the batch before it is delivered or a batch-wait
			// holds it.
			m.hold(r)
			select {
			case m.in <- r:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// run delivers the forwarded records until the session ends.
func (m *merger) run(sess sarama.ConsumerGroupSession) {
	c, ctx := m.c, sess.Context()
	wants := c.sub.Wants
	names := typeNames{}
	for {
		var first *sarama.ConsumerMessage
		select {
		case <-ctx.Done():
			return
		case first = <-m.in:
		}
		batch := c.fill(ctx, m.in, first)
		if !c.process(ctx, batch, wants, names) {
			return
		}
		// Every record of the batch is done: each partition's last one
		// is marked (records of a partition come in order).
		last := map[int32]*sarama.ConsumerMessage{}
		for _, r := range batch {
			last[r.Partition] = r
		}
		m.mu.Lock()
		for p, r := range last {
			sess.MarkMessage(r, "")
			delete(m.waiting, p)
			m.setLag(p, r.Offset+1, 0)
		}
		m.mu.Unlock()
	}
}

// hold notes that r waits in the merger: the first of its partition since
// the last batch was done sets the partition's lag.
func (m *merger) hold(r *sarama.ConsumerMessage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.waiting[r.Partition]; !ok {
		m.waiting[r.Partition] = r.Offset
		m.setLag(r.Partition, r.Offset, 1)
	}
}

// setLag sets the lag of partition p, whose next record to deliver is at
// offset next (at least least), if its claim is still forwarding; m.mu
// held.
func (m *merger) setLag(p int32, next, least int64) {
	if claim := m.claims[p]; claim != nil {
		m.c.t.metrics.lag.WithLabelValues(m.c.name, m.topic, strconv.Itoa(int(p))).
			Set(float64(max(least, claim.HighWaterMarkOffset()-next)))
	}
}

// fill completes a batch that starts with first: the records already
// waiting, up to the batch size, and, when the function asked for a
// batch-wait, those arriving until that long after first was written to
// Kafka (holdFor).
func (c *consumer) fill(ctx context.Context, msgs <-chan *sarama.ConsumerMessage, first *sarama.ConsumerMessage) []*sarama.ConsumerMessage {
	batch := []*sarama.ConsumerMessage{first}
	var deadline <-chan time.Time
	if c.sub.BatchWait > 0 { // stackfile allows a wait only with batches
		t := time.NewTimer(holdFor(c.sub.BatchWait, first.Timestamp, time.Now()))
		defer t.Stop()
		deadline = t.C
	}
	for len(batch) < c.sub.BatchSize {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
			continue
		default:
		}
		if deadline == nil {
			return batch
		}
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
		case <-deadline:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// holdFor is how long a batch whose first record was written at written
// may still wait, now, for a function's batch-wait w: what is left of w
// since the record was written (the broker may have held its fetch for
// part of it, fetchWait), never more than w (a record stamped in the
// future: another clock) and nothing for a record older than w (a
// backlog fills its batches anyway).
func holdFor(w time.Duration, written, now time.Time) time.Duration {
	if written.IsZero() {
		return w
	}
	return min(w, max(0, written.Add(w).Sub(now)))
}

// record is a Kafka record with what the trigger reads of it, read once:
// its CloudEvent type, which the function's type filter decides on, and
// whether it may share a CloudEvents batch with others.
type record struct {
	*sarama.ConsumerMessage
	typ       string // the ce_type header, else the envelope's "type"; "" when it has none
	batchable bool   // a structured-mode JSON object, whole (walkHead)
	// tp and ts are the event's traceparent and tracestate (its
	// extensions, or ce_ headers in binary mode) as the record holds them,
	// kept only when tracing is on and parsed only when a span needs them:
	// most records of a batch are of unsampled traces and need none.
	tp, ts []byte
}

// sampled reports whether the record's trace is sampled (its flags alone).
func (r record) sampled() bool { return telemetry.ParentSampled(r.tp) }

// parent parses the record's trace context.
func (r record) parent() (trace.SpanContext, bool) {
	if len(r.tp) == 0 {
		return trace.SpanContext{}, false
	}
	return telemetry.ParseParent(string(r.tp), string(r.ts))
}

// inspect is inspectFor a function that wants every record.
func inspect(m *sarama.ConsumerMessage) record {
	r, _ := inspectFor(m, func(string) bool { return true })
	return r
}

// inspectFor reads what the trigger needs of a record for a function that
// wants the types wants accepts, and whether it wants this one. The type
// comes first: the ce_type header, else the envelope's "type" as walkHead
// finds it. A record of a type the function does not want is skipped
// there, without a request. The trigger validates nothing: the function's
// receiver checks the JSON of every delivery anyway, and refuses a batch
// holding a malformed event before it applies any, whereupon deliver sends
// the batch's records one by one, so only the malformed one is
// dead-lettered. (json.Valid over every record the function wants was a
// tenth of the trigger's CPU in make bench's payments, 2026-12-04, the
// same bytes the receiver validates again.) For valid JSON the type is the
// one the function would read; for any other value, what walkHead finds
// (nothing, for a value that is not an object: every function takes it).
func inspectFor(m *sarama.ConsumerMessage, wants func(string) bool) (record, bool) {
	return inspectWith(m, wants, nil)
}

// typeNames are the CloudEvent types a claim has read, each kept as one
// string: a record of a type seen before costs no copy of its type (one
// allocation per record and consumer group before: every group reads every
// record of its topics; TestARecordOfAKnownTypeIsReadWithoutAllocating).
// At most maxTypeNames are kept, whatever types the records claim.
type typeNames map[string]string

const maxTypeNames = 64

// name is b as a string, the one kept when n (nil: none) holds it.
func (n typeNames) name(b []byte) string {
	if s, ok := n[string(b)]; ok {
		return s
	}
	s := string(b)
	if n != nil && len(n) < maxTypeNames {
		n[s] = s
	}
	return s
}

// inspectWith is inspectFor with the claim's type names.
func inspectWith(m *sarama.ConsumerMessage, wants func(string) bool, names typeNames) (record, bool) {
	r := record{ConsumerMessage: m}
	tv, fromHeader := headerValue(m, "ce_type")
	var typ string
	if fromHeader {
		typ = names.name(tv)
	}
	binary := binaryMode(m)
	traced := telemetry.Enabled()
	if binary && fromHeader {
		r.typ = typ
		if !wants(typ) {
			return r, false
		}
		if traced {
			r.tp, _ = headerValue(m, "ce_traceparent")
			r.ts, _ = headerValue(m, "ce_tracestate")
		}
		return r, true
	}
	head := walkHead(m.Value)
	if !fromHeader {
		typ = ""
		if head.object { // a type that is not a string is no type
			if raw := head.typ; len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw[1:len(raw)-1], '\\') < 0 && utf8.Valid(raw[1:len(raw)-1]) {
				typ = names.name(raw[1 : len(raw)-1]) // jsonString's fast path
			} else {
				typ = jsonString(raw)
			}
		}
	}
	r.typ = typ
	if !wants(typ) {
		return r, false
	}
	if head.object {
		r.batchable = !binary && head.whole
		if traced && len(head.traceParent) > 0 {
			r.tp, r.ts = jsonBytes(head.traceParent), jsonBytes(head.traceState)
		}
	}
	return r, true
}

// splitBatch groups consecutive records that can travel in one CloudEvents
// batch (structured-mode JSON objects); anything else goes alone.
func splitBatch(recs []record) [][]*sarama.ConsumerMessage {
	var out [][]*sarama.ConsumerMessage
	var cur []*sarama.ConsumerMessage
	for _, r := range recs {
		if !r.batchable || len(recs) == 1 {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			out = append(out, []*sarama.ConsumerMessage{r.ConsumerMessage})
			continue
		}
		cur = append(cur, r.ConsumerMessage)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// header is a record header's value: the last of several, as delivery
// sends them (each one overwrites the one before), so the type the
// trigger filters on is the type the function receives.
func header(m *sarama.ConsumerMessage, key string) (string, bool) {
	v, ok := headerValue(m, key)
	return string(v), ok
}

// headerValue is header's value as the record holds it (not copied).
func headerValue(m *sarama.ConsumerMessage, key string) ([]byte, bool) {
	for i := len(m.Headers) - 1; i >= 0; i-- {
		if h := m.Headers[i]; h != nil && strings.EqualFold(string(h.Key), key) {
			return h.Value, true
		}
	}
	return nil, false
}

// binaryMode reports a binary-mode CloudEvents record (ce_* headers).
func binaryMode(m *sarama.ConsumerMessage) bool {
	_, ok := header(m, "ce_specversion")
	return ok
}

// outcome is the result of one delivery attempt.
type outcome struct {
	status     int           // HTTP status, 0 when no response
	err        error         // transport error or the problem's detail
	retryable  bool          // worth another attempt
	retryAfter time.Duration // the function's Retry-After
}

func (o outcome) ok() bool { return o.err == nil && o.status >= 200 && o.status < 300 }

func (o outcome) String() string {
	if o.status == 0 {
		return o.err.Error()
	}
	if o.err != nil {
		return strconv.Itoa(o.status) + ": " + o.err.Error()
	}
	return strconv.Itoa(o.status)
}

// deliver retries one delivery until it succeeds or is dead-lettered; false
// means ctx ended first (nothing may be committed). With tracing on the
// delivery (all its attempts) is a span: the child of the event's
// traceparent for one event, a root linking every sampled event's trace for a
// batch; the request carries its traceparent to the function.
func (c *consumer) deliver(ctx context.Context, msgs []*sarama.ConsumerMessage, recs []record) (ok bool) {
	topic := msgs[0].Topic
	start := time.Now()
	var passOn string
	if telemetry.Enabled() {
		var span trace.Span
		var each []trace.Span
		ctx, span, each, passOn = c.span(ctx, msgs, recs)
		if span != nil {
			each = append(each, span)
		}
		defer func() {
			for _, s := range each {
				if !ok {
					s.SetStatus(codes.Error, "not delivered")
				}
				s.End()
			}
		}()
	}
	for attempt := 1; ; attempt++ {
		o := c.post(ctx, msgs, passOn)
		if !o.ok() {
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.AddEvent("attempt failed", trace.WithAttributes(attribute.Int("attempt", attempt), attribute.String("error", o.String())))
			}
		}
		if o.ok() {
			c.t.metrics.deliveries.WithLabelValues(c.name, topic, "delivered").Add(float64(len(msgs)))
			c.countEvents(recs, "delivered")
			c.t.metrics.duration.WithLabelValues(c.name, deliveryType(recs), "delivered").Observe(time.Since(start).Seconds())
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if !o.retryable && len(msgs) > 1 {
			// The function refused the batch as a whole (a receiver
			// refuses a batch holding one malformed event before applying
			// any): each record goes alone, so only the one it refuses is
			// dead-lettered.
			c.t.metrics.deliveries.WithLabelValues(c.name, topic, "retried").Add(float64(len(msgs)))
			c.countEvents(recs, "retried")
			slog.Warn("batch refused; delivering its records one by one", "target", c.name, "topic", topic,
				"partition", msgs[0].Partition, "offset", msgs[0].Offset, "records", len(msgs), "err", o.String())
			for i := range msgs {
				if !c.deliver(ctx, msgs[i:i+1], recs[i:i+1]) {
					return false
				}
			}
			return true
		}
		if !o.retryable || (c.t.cfg.MaxAttempts > 0 && attempt >= c.t.cfg.MaxAttempts) {
			if !c.deadLetter(ctx, msgs, o, attempt) {
				return false
			}
			c.countEvents(recs, "dead_lettered")
			c.t.metrics.duration.WithLabelValues(c.name, deliveryType(recs), "dead_lettered").Observe(time.Since(start).Seconds())
			return true
		}
		c.t.metrics.deliveries.WithLabelValues(c.name, topic, "retried").Add(float64(len(msgs)))
		c.countEvents(recs, "retried")
		wait := c.backoff(attempt)
		if o.retryAfter > wait {
			wait = min(o.retryAfter, c.t.cfg.BackoffMax.D())
		}
		slog.Warn("delivery failed; retrying", "target", c.name, "topic", topic, "partition", msgs[0].Partition,
			"offset", msgs[0].Offset, "records", len(msgs), "attempt", attempt, "in", wait.String(), "err", o.String())
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// span starts the delivery's span (see deliver). One record: the child of
// its event's trace, none when that trace is not sampled (its context
// passes on in the request). A batch: a root of its own whose sampling is
// its own decision, whatever its events' (a batch of tens of events holds
// a sampled one nearly always); when it is recorded, it links the trace
// of every sampled event: an unsampled trace has no span to link to, and
// at 10 % sampling nine links in ten (each record's traceparent parsed,
// the link stored and exported) led nowhere. In each sampled event's trace it also starts a delivery
// span of that record (child of its event's traceparent, linked to the
// batch's when that is recorded), so every sampled producer's trace shows
// its event's delivery. Only the sampled records' traceparents are parsed
// then, and attributes are computed only for a span that records.
//
// A lone record of an unsampled trace whose traceparent is of version 00
// and comes without tracestate (every event inside the stack) starts no
// span and changes no context: passOn is its traceparent, which the
// request carries as it came, the string Inject would format from it
// (one allocation instead of five: the parse's string, the context and
// its span, the formatted traceparent and its slice;
// TestALoneUnsampledRecordsTraceparentPassesOnAsItCame).
func (c *consumer) span(ctx context.Context, msgs []*sarama.ConsumerMessage, recs []record) (_ context.Context, _ trace.Span, _ []trace.Span, passOn string) {
	first := msgs[0]
	if len(msgs) == 1 {
		if r := recs[0]; len(r.ts) == 0 && len(r.tp) == 55 && string(r.tp[:3]) == "00-" && !r.sampled() {
			tp := string(r.tp)
			if sc, ok := telemetry.ParseParent(tp, ""); ok && !sc.IsSampled() {
				return ctx, nil, nil, tp
			}
		}
	}
	name := c.spanName
	if len(msgs) == 1 {
		sc, ok := recs[0].parent()
		if ok {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
			if !sc.IsSampled() {
				return ctx, nil, nil, "" // not sampled: no span, its context passes on
			}
		}
		ctx, span := telemetry.Tracer().Start(ctx, name, producerSpan...)
		if span.IsRecording() {
			span.SetAttributes(c.deliveryAttributes(first, 1)...)
		}
		return ctx, span, nil, ""
	}
	// A batch's span is a root: the consumer's context carries no span, so
	// trace.WithNewRoot, which costs a context of its own (two
	// allocations) on every batch, would only guard against one.
	root := producerSpan
	if trace.SpanContextFromContext(ctx).IsValid() {
		root = append(root[:len(root):len(root)], trace.WithNewRoot())
	}
	ctx, span := telemetry.Tracer().Start(ctx, name, root...)
	var opts []trace.SpanStartOption
	if span.IsRecording() {
		span.SetAttributes(c.deliveryAttributes(first, len(msgs))...)
		for _, r := range recs {
			if !r.sampled() {
				continue // its trace has no span to link to (see span)
			}
			if sc, ok := r.parent(); ok {
				span.AddLink(trace.Link{SpanContext: sc})
			}
		}
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: span.SpanContext()}))
	}
	var each []trace.Span
	for i, r := range recs {
		if !r.sampled() {
			continue
		}
		sc, ok := r.parent()
		if !ok {
			continue
		}
		m := msgs[i]
		_, s := telemetry.Tracer().Start(trace.ContextWithRemoteSpanContext(ctx, sc), name,
			append(opts, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
				attribute.String("messaging.destination.name", m.Topic), attribute.Int("messaging.destination.partition.id", int(m.Partition)),
				attribute.Int64("messaging.kafka.offset", m.Offset), attribute.String("billfn.target", c.name)))...)
		each = append(each, s)
	}
	return ctx, span, each, ""
}

// producerSpan are the options of a delivery's span, built once rather
// than on every delivery.
var producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}

// deliveryAttributes describe a delivery of n records from first's
// partition on.
func (c *consumer) deliveryAttributes(first *sarama.ConsumerMessage, n int) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", first.Topic),
		attribute.Int("messaging.destination.partition.id", int(first.Partition)), attribute.Int64("messaging.kafka.offset", first.Offset),
		attribute.Int("messaging.batch.message_count", n), attribute.String("billfn.target", c.name)}
}

// countEvents counts a delivery's records by type (a run of records of
// one type is one Add: a batch usually holds one type).
func (c *consumer) countEvents(recs []record, result string) {
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && recs[j].typ == recs[i].typ {
			j++
		}
		c.t.metrics.events.WithLabelValues(c.name, events.TypeLabel(recs[i].typ), result).Add(float64(j - i))
		i = j
	}
}

// deliveryType is a delivery's type label: its records' type when they
// share one, else events.MixedType.
func deliveryType(recs []record) string {
	for _, r := range recs[1:] {
		if r.typ != recs[0].typ {
			return events.MixedType
		}
	}
	return events.TypeLabel(recs[0].typ)
}

// Reasons a delivery is dead-lettered (billfn_trigger_dead_letters_total).
const (
	// dlqRejected: the function answered a status no retry can change
	// (a 4xx other than 404, 408, 409, 425 and 429).
	dlqRejected = "rejected"
	// dlqExhausted: every one of MaxAttempts attempts failed with a
	// retryable answer (5xx, 429, …) or no answer.
	dlqExhausted = "retries_exhausted"
	// dlqUnsendable: the request could not even be built.
	dlqUnsendable = "unsendable"
)

var dlqReasons = []string{dlqRejected, dlqExhausted, dlqUnsendable}

func deadLetterReason(o outcome) string {
	switch {
	case o.retryable:
		return dlqExhausted
	case o.status != 0:
		return dlqRejected
	}
	return dlqUnsendable
}

// backoff is exponential with full jitter above half the step.
func (c *consumer) backoff(attempt int) time.Duration {
	d := c.t.cfg.BackoffBase.D() << min(attempt-1, 20)
	d = min(d, c.t.cfg.BackoffMax.D())
	return d/2 + rand.N(d/2+1)
}

// retryable statuses: the function (or the gateway in front of it) asks
// for another try. Knative's KafkaSource retries the same set.
func retryableStatus(s int) bool {
	switch s {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return s >= 500
}

// batchBufs holds the buffers of batch bodies (batchBody), so a delivery
// of tens of records does not allocate (and the collector clear and the
// scavenger return) a buffer of tens of kilobytes each time: growing a
// bytes.Buffer record by record, then freeing it, was over a tenth of the
// trigger's CPU in make bench's transfers-gateway (2026-12-04: the
// buffer's growth and clearing, and the runtime's madvise of the freed
// pages).
var batchBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBatch is the largest buffer batchBufs keeps.
const maxPooledBatch = 4 << 20

// batchBody is msgs as one CloudEvents batch, a JSON array of their values,
// in a buffer from batchBufs; the caller hands it back with
// releaseBatchBody once nothing reads it any more.
func batchBody(msgs []*sarama.ConsumerMessage) *[]byte {
	n := 1 + len(msgs) // the brackets and the commas
	for _, m := range msgs {
		n += len(m.Value)
	}
	bp := batchBufs.Get().(*[]byte)
	b := *bp
	if cap(b) < n {
		b = make([]byte, 0, n)
	}
	b = append(b[:0], '[')
	for i, m := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m.Value...)
	}
	*bp = append(b, ']')
	return bp
}

func releaseBatchBody(bp *[]byte) {
	if cap(*bp) <= maxPooledBatch {
		*bp = (*bp)[:0]
		batchBufs.Put(bp)
	}
}

// pooledBody is a request body in a batchBufs buffer: the buffer goes back
// to the pool when the transport closes the body (it does once it wrote
// it, or gave up), and not before any Read under way has returned; a Read
// after Close reads nothing.
type pooledBody struct {
	mu  sync.Mutex
	bp  *[]byte
	off int
}

func (b *pooledBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bp == nil {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.off >= len(*b.bp) {
		return 0, io.EOF
	}
	n := copy(p, (*b.bp)[b.off:])
	b.off += n
	return n, nil
}

func (b *pooledBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bp != nil {
		releaseBatchBody(b.bp)
		b.bp = nil
	}
	return nil
}

// delivery is the request of a group of records (splitBatch's): a
// CloudEvents batch, a binary-mode event, or a structured one; unsigned.
// A batch's body is in a batchBufs buffer (pooled, non-nil then), which the
// caller releases. The headers' values share one backing array and the
// numbers, time and key one string (headerValues): a structured record's
// headers cost a few allocations, not one or two per header (16 per
// record before, TestADeliverysHeadersAllocateLittle).
func delivery(msgs []*sarama.ConsumerMessage) (body []byte, pooled *[]byte, h http.Header) {
	first := msgs[0]
	h = make(http.Header, 12)
	var hv headerValues
	hv.vals = make([]string, 0, 12) // the signature and traceparent included
	// The values formatted here, in one buffer made into one string.
	var buf [128]byte
	b := buf[:0]
	var offsets, offset, ts, key [2]int // bounds in b
	mark := func(b []byte, start int) [2]int { return [2]int{start, len(b)} }
	if len(msgs) > 1 {
		n := len(b)
		b = appendOffsets(b, msgs)
		offsets = mark(b, n)
	}
	n := len(b)
	b = strconv.AppendInt(b, first.Offset, 10)
	offset = mark(b, n)
	if !first.Timestamp.IsZero() {
		n = len(b)
		b = first.Timestamp.UTC().AppendFormat(b, time.RFC3339Nano)
		ts = mark(b, n)
	}
	keyPrintable := len(first.Key) > 0 && printable(first.Key)
	if len(first.Key) > 0 {
		n = len(b)
		if keyPrintable {
			b = append(b, first.Key...)
		} else {
			b = base64.StdEncoding.AppendEncode(b, first.Key)
		}
		key = mark(b, n)
	}
	str := string(b)
	sub := func(r [2]int) string { return str[r[0]:r[1]] }
	switch {
	case len(msgs) > 1:
		pooled = batchBody(msgs)
		body = *pooled
		hv.set(h, "Content-Type", events.ContentTypeBatch)
		hv.set(h, "X-Kafka-Offsets", sub(offsets))
	case binaryMode(first):
		body = first.Value
		for _, rh := range first.Headers {
			if rh == nil {
				continue
			}
			k := strings.ToLower(string(rh.Key))
			if name, ok := strings.CutPrefix(k, "ce_"); ok {
				h.Set("Ce-"+name, string(rh.Value))
			}
		}
		if ct, ok := header(first, "content-type"); ok {
			h.Set("Content-Type", ct)
		}
	default:
		body = first.Value
		hv.set(h, "Content-Type", events.ContentTypeStructured)
	}
	hv.set(h, "X-Topic", first.Topic)
	hv.set(h, "X-Kafka-Partition", strconv.Itoa(int(first.Partition)))
	hv.set(h, "X-Kafka-Offset", sub(offset))
	if !first.Timestamp.IsZero() {
		hv.set(h, "X-Kafka-Timestamp", sub(ts))
	}
	if len(first.Key) > 0 {
		hv.set(h, "X-Kafka-Key", sub(key))
		if !keyPrintable {
			hv.set(h, "X-Kafka-Key-Encoding", "base64")
		}
	}
	hv.set(h, "X-Connector", "kafka-trigger")
	hv.set(h, "User-Agent", "billfn-kafka-trigger")
	return body, pooled, h
}

// appendOffsets appends X-Kafka-Offsets of a batch to b: first-last of
// its one partition, or, for a batch of several (merger), partition:first-last
// of each, comma-separated, in the order the batch first holds them.
func appendOffsets(b []byte, msgs []*sarama.ConsumerMessage) []byte {
	first, last := msgs[0], msgs[len(msgs)-1]
	one := true
	for _, m := range msgs[1:] {
		if m.Partition != first.Partition {
			one = false
			break
		}
	}
	if one {
		b = strconv.AppendInt(b, first.Offset, 10)
		b = append(b, '-')
		return strconv.AppendInt(b, last.Offset, 10)
	}
	var ranges [][3]int64 // partition, first, last
	for _, m := range msgs {
		i := slices.IndexFunc(ranges, func(r [3]int64) bool { return r[0] == int64(m.Partition) })
		if i < 0 {
			ranges = append(ranges, [3]int64{int64(m.Partition), m.Offset, m.Offset})
			continue
		}
		ranges[i][2] = m.Offset
	}
	for i, r := range ranges {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, r[0], 10)
		b = append(b, ':')
		b = strconv.AppendInt(b, r[1], 10)
		b = append(b, '-')
		b = strconv.AppendInt(b, r[2], 10)
	}
	return b
}

// headerValues gives a request's headers their one-value slices out of
// one backing array: each a full slice of length and capacity 1, so an
// Add to one copies it instead of writing over its neighbour.
type headerValues struct{ vals []string }

// set sets canonical header k to v.
func (hv *headerValues) set(h http.Header, k, v string) {
	if len(hv.vals) == cap(hv.vals) {
		h[k] = []string{v}
		return
	}
	i := len(hv.vals)
	hv.vals = append(hv.vals, v)
	h[k] = hv.vals[i : i+1 : i+1]
}

// unsendable reports why a binary-mode record's headers cannot travel as
// HTTP headers (nil when they can). delivery copies its ce_ headers and its
// content-type as the producer wrote them, and net/http refuses to send a
// name that is not a token or a value with a control character: retried,
// such a record would fail the same way for ever and hold back every
// record behind it in its partition, so it is refused before any attempt
// and dead-lettered, as a function's refusal of a malformed event is.
func unsendable(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("the record header %q cannot be sent as an HTTP header", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("the record header %s has a value no HTTP header can carry (a control character)", k)
			}
		}
	}
	return nil
}

// idleSigners holds the signers (events.Signer: the key's HMAC state,
// kept between deliveries) of the claims not signing right now, one per
// slot; a key rotation (KeyRing) just passes the new key. Not a
// sync.Pool: its Put drops items at random under the race detector, and
// the count of allocations a test holds would be left to chance there.
// When more deliveries sign at once than there are slots, the others
// use a new signer and drop it.
var idleSigners [8]atomic.Pointer[events.Signer]

// sign is events.SignDelivery(key, t, function, body) from an idle
// signer: one allocation, the header (TestSignIsEventsSignAndAllocatesOnce).
func sign(key []byte, t time.Time, function string, body []byte) string {
	var s *events.Signer
	for i := range idleSigners {
		if s = idleSigners[i].Swap(nil); s != nil {
			break
		}
	}
	if s == nil {
		s = new(events.Signer)
	}
	out := s.SignDelivery(key, t, function, body)
	for i := range idleSigners {
		if idleSigners[i].CompareAndSwap(nil, s) {
			break
		}
	}
	return out
}

// carryTrace writes the traceparent a delivery carries into h: passOn
// when not "" (span), else that of ctx.
func carryTrace(ctx context.Context, h http.Header, passOn string) {
	if passOn != "" {
		h["Traceparent"] = []string{passOn}
		return
	}
	telemetry.Inject(ctx, h)
}

// post sends one delivery request; passOn, when not "", is the
// traceparent it carries (span), else that of ctx.
func (c *consumer) post(ctx context.Context, msgs []*sarama.ConsumerMessage, passOn string) outcome {
	body, pooled, h := delivery(msgs)
	if binaryMode(msgs[0]) {
		if err := unsendable(h); err != nil {
			if pooled != nil {
				releaseBatchBody(pooled)
			}
			return outcome{err: err} // not retryable: no attempt can send it
		}
	}
	h[events.SignatureHeader] = []string{sign(c.t.key(), time.Now(), c.name, body)}

	rctx, cancel := context.WithTimeout(ctx, c.t.cfg.DeliveryTimeout.D())
	defer cancel()
	var rd io.Reader = bytes.NewReader(body)
	if pooled != nil {
		// The transport closes the body, which releases the buffer, on
		// every path (Do's error included); a POST is never replayed by
		// the transport, so it needs no GetBody (a failed attempt is
		// retried by deliver, with a body built again).
		rd = &pooledBody{bp: pooled}
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.url, rd)
	if err != nil {
		if pooled != nil {
			releaseBatchBody(pooled)
		}
		return outcome{err: err}
	}
	req.ContentLength = int64(len(body))
	req.Header = h
	carryTrace(ctx, req.Header, passOn)
	start := time.Now()
	res, err := c.t.client.Do(req)
	c.t.metrics.seconds.WithLabelValues(c.name).Observe(time.Since(start).Seconds())
	if err != nil {
		return outcome{err: err, retryable: true}
	}
	defer res.Body.Close()
	detail, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	o := outcome{status: res.StatusCode, retryable: retryableStatus(res.StatusCode)}
	if res.StatusCode >= 300 {
		o.err = errors.New(problemDetail(detail))
		if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && secs > 0 {
			o.retryAfter = time.Duration(secs) * time.Second
		}
	}
	return o
}

func printable(b []byte) bool {
	if len(b) > 256 || !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// problemDetail extracts a problem document's detail (or the start of any body).
func problemDetail(body []byte) string {
	var p struct {
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && (p.Code != "" || p.Detail != "") {
		return strings.TrimSpace(p.Code + ": " + p.Detail)
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300]
	}
	if s == "" {
		s = "no body"
	}
	return s
}

// Dead-letter headers added to the original record's.
const (
	dlqFunction  = "billfn-dlq-function"
	dlqTopic     = "billfn-dlq-topic"
	dlqPartition = "billfn-dlq-partition"
	dlqOffset    = "billfn-dlq-offset"
	dlqStatus    = "billfn-dlq-status"
	dlqError     = "billfn-dlq-error"
	dlqAttempts  = "billfn-dlq-attempts"
	dlqTime      = "billfn-dlq-time"
)

// deadLetter writes the records to the dead-letter topic, retrying until
// Kafka takes them (a record is only committed once it is safe there).
func (c *consumer) deadLetter(ctx context.Context, msgs []*sarama.ConsumerMessage, o outcome, attempts int) bool {
	errText := o.String()
	if len(errText) > 1000 {
		errText = errText[:1000]
	}
	out := make([]*sarama.ProducerMessage, 0, len(msgs))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, m := range msgs {
		hs := make([]sarama.RecordHeader, 0, len(m.Headers)+8)
		for _, h := range m.Headers {
			if h != nil {
				hs = append(hs, *h)
			}
		}
		hs = append(hs,
			sarama.RecordHeader{Key: []byte(dlqFunction), Value: []byte(c.name)},
			sarama.RecordHeader{Key: []byte(dlqTopic), Value: []byte(m.Topic)},
			sarama.RecordHeader{Key: []byte(dlqPartition), Value: []byte(strconv.Itoa(int(m.Partition)))},
			sarama.RecordHeader{Key: []byte(dlqOffset), Value: []byte(strconv.FormatInt(m.Offset, 10))},
			sarama.RecordHeader{Key: []byte(dlqStatus), Value: []byte(strconv.Itoa(o.status))},
			sarama.RecordHeader{Key: []byte(dlqError), Value: []byte(errText)},
			sarama.RecordHeader{Key: []byte(dlqAttempts), Value: []byte(strconv.Itoa(attempts))},
			sarama.RecordHeader{Key: []byte(dlqTime), Value: []byte(now)},
		)
		pm := &sarama.ProducerMessage{Topic: c.t.cfg.DLQTopic, Headers: hs}
		if m.Key != nil {
			pm.Key = sarama.ByteEncoder(m.Key)
		}
		if m.Value != nil {
			pm.Value = sarama.ByteEncoder(m.Value)
		}
		out = append(out, pm)
	}
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		p, err := c.t.dlqProducer()
		if err == nil {
			err = p.SendMessages(out)
		}
		if err == nil {
			break
		}
		slog.Error("cannot write to the dead-letter topic; retrying", "target", c.name, "dlq", c.t.cfg.DLQTopic, "err", err.Error())
		if !sleep(ctx, wait) {
			return false
		}
	}
	c.t.metrics.deliveries.WithLabelValues(c.name, msgs[0].Topic, "dead_lettered").Add(float64(len(msgs)))
	c.t.metrics.deadLetters.WithLabelValues(c.name, deadLetterReason(o)).Add(float64(len(msgs)))
	slog.Error("records dead-lettered", "target", c.name, "topic", msgs[0].Topic, "partition", msgs[0].Partition,
		"offset", msgs[0].Offset, "records", len(msgs), "attempts", attempts, "dlq", c.t.cfg.DLQTopic, "err", errText)
	return true
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}
