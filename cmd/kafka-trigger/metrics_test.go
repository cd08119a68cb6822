package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/testenv"
)

// series reads a metric of the trigger for one function (testenv.Series).
func (s *stack) series(t *testing.T, name, function string, labels ...string) map[string]float64 {
	t.Helper()
	return testenv.Series(t, s.trigger.metrics.reg, name, map[string]string{"function": function}, labels...)
}

func typed(t *testing.T, topic, typ, key string) *sarama.ProducerMessage {
	t.Helper()
	ev := events.Must(events.New(context.Background(), "capture-payment", typ, key, map[string]int{"amount": 1}))
	testenv.SignOrigin(&ev)
	body, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key), Value: sarama.ByteEncoder(body)}
}

// RED per event type in the trigger (issue 19): records are counted by
// their contract type (a type the contract does not know as "other") and
// result, each delivery is timed by type and result, and dead letters are
// counted by reason, every reason at zero from the consumer's start.
func TestTriggerCountsRecordsByTypeAndDeadLettersByReason(t *testing.T) {
	brokers := kafka(t)
	var flaky int
	s := startStack(t, brokers, []fn{{name: "f", annotations: map[string]string{"topic": events.TopicPayment},
		handler: verified(t, "f", func(w http.ResponseWriter, r *http.Request) {
			ev, _ := events.Unmarshal(mustRead(r))
			switch ev.Subject() {
			case "bad":
				problem.Write(w, r, problem.Invalid(problem.Field("amount", "must be positive")))
			case "flaky":
				if flaky++; flaky == 1 {
					http.Error(w, "try again", http.StatusServiceUnavailable)
				}
			}
		})}}, nil)
	waitFor(t, "the consumer's dead-letter series at zero", 10*time.Second, func() bool {
		return len(s.series(t, "billfn_trigger_dead_letters_total", "f", "reason")) == 3
	})
	for _, m := range []*sarama.ProducerMessage{
		typed(t, events.TopicPayment, "billfn.payment.captured", "good"),
		typed(t, events.TopicPayment, "billfn.payment.captured", "flaky"),
		typed(t, events.TopicPayment, "billfn.payment.failed", "bad"),
		typed(t, events.TopicPayment, "com.example.invented", "other"),
	} {
		m.Partition = 0
		produce(t, brokers, m)
	}
	want := map[string]float64{
		"billfn.payment.captured delivered": 2, "billfn.payment.captured retried": 1,
		"billfn.payment.failed dead_lettered": 1, "other delivered": 1,
	}
	waitFor(t, "every record counted", 20*time.Second, func() bool {
		got := s.series(t, "billfn_trigger_events_total", "f", "type", "result")
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return len(got) == len(want)
	})
	dur := s.series(t, "billfn_trigger_delivery_duration_seconds", "f", "type", "result")
	if dur["billfn.payment.captured delivered"] != 2 || dur["billfn.payment.failed dead_lettered"] != 1 || dur["other delivered"] != 1 {
		t.Errorf("deliveries timed %v", dur)
	}
	dl := s.series(t, "billfn_trigger_dead_letters_total", "f", "reason")
	if dl["rejected"] != 1 || dl["retries_exhausted"] != 0 || dl["unsendable"] != 0 || len(dl) != 3 {
		t.Errorf("dead letters by reason %v, want 1 rejected", dl)
	}
}
