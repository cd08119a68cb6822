package events

import (
	"context"
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
}

// ContractTopic is the topic the contract puts events of typ on; false for
// a type the contract does not know (not billfn.<aggregate>.<verb> of a
// known aggregate).
func ContractTopic(typ string) (string, bool) {
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
		"wrong_topic (read from a topic the contract does not put the type on).",
}, []string{"consumer", "type", "reason"})

// Unexpected reasons.
const (
	ReasonUnknownType = "unknown_type"
	ReasonUnhandled   = "unhandled"
	ReasonWrongTopic  = "wrong_topic"
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
		"event_id", truncate(ev.ID(), 200), "source", truncate(ev.Source(), 200), "topic", topicOf(ctx))
}
