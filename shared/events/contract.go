package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// contractTopics is the contract of docs/events.md by aggregate: every
// billfn.<aggregate>.<verb> travels on one topic.
var contractTopics = map[string]string{
	"account":      TopicUser,
	"invoice":      TopicBilling,
	"subscription": TopicBilling,
	"notification": TopicBilling,
	"transaction":  TopicTransaction,
	"hold":         TopicTransaction,
	"payment":      TopicPayment,
	"refund":       TopicPayment,
	// handle-webhook's merchant endpoints: on the one topic it may write.
	"webhook_endpoint": TopicPayment,
}

// ContractTopic is the topic the contract puts events of typ on: its row's
// (Contract), else its aggregate's; false for a type the contract does not
// know (not billfn.<aggregate>.<verb> of a known aggregate).
func ContractTopic(typ string) (string, bool) {
	if s, ok := specs[typ]; ok {
		return s.Topic, true
	}
	rest, ok := strings.CutPrefix(typ, "billfn.")
	if !ok {
		return "", false
	}
	agg, verb, ok := strings.Cut(rest, ".")
	if !ok || verb == "" || strings.Contains(verb, ".") || len(verb) > 64 {
		return "", false
	}
	topic, ok := contractTopics[agg]
	return topic, ok
}

// OtherType is the metric label of every type neither the contract nor
// the receiver knows, so a producer inventing types cannot grow the
// metrics without bound.
const OtherType = "other"

// TypeLabel is typ as a metric label outside a receiver (the
// kafka-trigger): itself when the contract knows it, else OtherType, so a
// record's free-text type cannot grow a metric without bound.
func TypeLabel(typ string) string {
	if _, ok := ContractTopic(typ); ok {
		return typ
	}
	return OtherType
}

// typeLabel is typ as a metric label: itself when the contract or a
// registered handler knows it, else OtherType.
func (rc *Receiver) typeLabel(typ string) string {
	if _, ok := rc.handlers[typ]; ok {
		return typ
	}
	if _, ok := rc.self[typ]; ok {
		return typ
	}
	if _, ok := ContractTopic(typ); ok {
		return typ
	}
	return OtherType
}

var unexpected = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_events_unexpected_total",
	Help: "Events delivered to a consumer that it did not apply, by consumer, type (\"other\" for a type the contract does not know) " +
		"and reason: unknown_type (not in the contract, no handler), unhandled (in the contract, no handler here), " +
		"wrong_topic (read from a topic the contract does not put the type on), " +
		"foreign_source (a fact from a source other than its owner: parked), " +
		"origin_missing (no origin proof: parked), origin_invalid (an origin proof that does not verify with a key of the source the event claims: parked).",
}, []string{"consumer", "type", "reason"})

// Unexpected reasons.
const (
	ReasonUnknownType = "unknown_type"
	ReasonUnhandled   = "unhandled"
	ReasonWrongTopic  = "wrong_topic"
	// ReasonForeignSource: a fact from a source that may not emit it
	// (AllowedSource); parked in dead_letters, never applied.
	ReasonForeignSource = "foreign_source"
	// ReasonNoOrigin: an event without an origin proof (origin.go);
	// parked, never applied.
	ReasonNoOrigin = "origin_missing"
	// ReasonBadOrigin: an origin proof that is malformed, names a key its
	// source does not hold, or does not match the event; parked.
	ReasonBadOrigin = "origin_invalid"
)

type topicKey struct{}

// WithTopic returns ctx carrying the Kafka topic a delivery was read from
// (the X-Topic header of the kafka-trigger and the kafka-connector).
func WithTopic(ctx context.Context, topic string) context.Context {
	if topic == "" {
		return ctx
	}
	return context.WithValue(ctx, topicKey{}, topic)
}

func topicOf(ctx context.Context) string {
	t, _ := ctx.Value(topicKey{}).(string)
	return t
}

// misplaced reports an event read from a topic the contract does not put
// its type on (only when the delivery says which topic).
func misplaced(ctx context.Context, ev Event) bool {
	topic := topicOf(ctx)
	if topic == "" {
		return false
	}
	want, known := ContractTopic(ev.Type())
	return known && want != topic
}

// noteUnexpected counts an event the receiver does not apply and logs it
// at debug: such an event is acknowledged (a retry would not change it),
// so this is the only trace it leaves.
func (rc *Receiver) noteUnexpected(ctx context.Context, ev Event, reason string) {
	label := rc.typeLabel(ev.Type())
	unexpected.WithLabelValues(rc.Consumer, label, reason).Inc()
	slog.DebugContext(ctx, "event not applied", "consumer", rc.Consumer, "reason", reason, "type", truncate(ev.Type(), 200),
		"event_id", truncate(ev.ID(), 200), "source", truncate(SourceOf(ev), 200), "topic", topicOf(ctx))
}

// Who may emit each type (docs/events.md, "Who may emit each type").
//
// A fact — something that happened to an aggregate — has exactly one
// owner, the function that keeps that aggregate: consumers accept it only
// from Source(owner). The contract's rows (Contract) name the owner of
// each type, or none for a command; emitters names the owner of other
// verbs of an aggregate. Commands (asking for something to be done) are
// open to any source: integrators produce them, and so do functions
// (capture-payment and process-transaction itself request transfers,
// generate-invoice turns POST /invoices into billfn.invoice.requested). Who
// may write a command is decided by the broker's ACLs on its topic, not
// here.
var emitters = map[string]string{
	"account":          "process-transaction",
	"transaction":      "process-transaction",
	"hold":             "process-transaction",
	"invoice":          "generate-invoice",
	"subscription":     "generate-invoice",
	"notification":     "generate-invoice",
	"payment":          "capture-payment",
	"refund":           "capture-payment",
	"webhook_endpoint": "handle-webhook",
}

// Functions are billfn's functions, the only sources of facts.
var Functions = []string{"process-transaction", "capture-payment", "generate-invoice", "handle-webhook", "aggregate-report"}

// ContractTypes returns every event type docs/events.md names.
func ContractTypes() []string {
	out := make([]string, len(contract))
	for i, s := range contract {
		out[i] = s.Type
	}
	return out
}

// IsCommand reports whether typ is a command any source may emit. Only
// the contract's commands: other types ending in "requested"
// (billfn.hold.capture_requested, billfn.invoice.payment_retry_requested,
// billfn.notification.requested) are facts of their owner.
func IsCommand(typ string) bool {
	s, ok := specs[typ]
	return ok && s.Command()
}

// Emitter is the function that owns the fact type typ: the only one allowed
// to emit it. false for a command and for a type the contract does not
// know.
func Emitter(typ string) (function string, ok bool) {
	if s, ok := specs[typ]; ok {
		return s.Emitter, !s.Command()
	}
	if _, known := ContractTopic(typ); !known {
		return "", false
	}
	agg, _, _ := strings.Cut(strings.TrimPrefix(typ, "billfn."), ".")
	f, ok := emitters[agg]
	return f, ok
}

// AllowedSource reports whether an event of typ from source may be
// accepted: always for a command, for a fact only from Source of its owner
// (Emitter), never for a type the contract does not know (the receiver
// leaves those to its unexpected-event path).
func AllowedSource(typ, source string) bool {
	if IsCommand(typ) {
		return true
	}
	owner, ok := Emitter(typ)
	return ok && source == Source(owner)
}

// ErrForeignSource is the cause of an event parked because its source may
// not emit its type.
var ErrForeignSource = errors.New("a fact only from its owner")

// foreign returns why the receiver must refuse ev: a fact of a known type
// from a source other than its owner; nil otherwise.
func foreign(ev Event) error {
	owner, ok := Emitter(ev.Type())
	if !ok || From(ev, owner) {
		return nil
	}
	return fmt.Errorf("%w: %s from %q refused: only %s (%s) may emit it",
		ErrForeignSource, truncate(ev.Type(), 200), truncate(SourceOf(ev), 200), owner, Source(owner))
}

// MatchesType reports whether typ is one of patterns: a type named in
// full, or a prefix ending in "*" ("billfn.invoice.*", as stack.yml's
// billfn.dev/types and a merchant's webhook endpoint write them).
func MatchesType(patterns []string, typ string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(typ, prefix) {
			return true
		}
		if p == typ {
			return true
		}
	}
	return false
}
