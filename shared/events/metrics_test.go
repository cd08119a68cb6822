package events_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// series gathers the package's metrics: for each series of name whose
// consumer label is consumer, its other labels (in order, space-joined) →
// series reads a metric of the events package for one consumer
// (testenv.Series).
func series(t *testing.T, name, consumer string, labels ...string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(events.Collectors()...)
	return testenv.Series(t, reg, name, map[string]string{"consumer": consumer}, labels...)
}

// RED per event type (issue 19): every delivery is timed by its type and
// result (ok, failed: the 503 that makes the trigger retry), a batch of
// several types under "mixed"; a parked event counts as a dead letter by
// reason, and every reason has a series at zero from the first delivery.
func TestDeliveriesAreTimedByTypeAndDeadLettersCountedByReason(t *testing.T) {
	g := newRig(t, true)
	ct := http.Header{"Content-Type": {events.ContentTypeStructured}}
	s := structured(t, newEvent(t, 5))
	if code, _ := g.send(g.signed(s, ct.Clone()), s); code != 200 {
		t.Fatalf("delivery: %d", code)
	}
	if got := series(t, "billfn_event_dead_letters_total", g.consumer, "reason"); len(got) != 4 || got["rejected"] != 0 {
		t.Fatalf("dead letters before any = %v, want the four reasons at 0", got)
	}
	s = structured(t, newEvent(t, -2)) // retryable failure
	if code, _ := g.send(g.signed(s, ct.Clone()), s); code != 503 {
		t.Fatalf("flaky delivery: %d, want 503", code)
	}
	s = structured(t, newEvent(t, -1)) // poison: parked
	if code, res := g.send(g.signed(s, ct.Clone()), s); code != 200 || res.Parked != 1 {
		t.Fatalf("poison delivery: %d %+v", code, res)
	}
	foreign, err := events.New(context.Background(), "handle-webhook", "billfn.payment.captured", "s", payment{9})
	if err != nil {
		t.Fatal(err)
	}
	s = structured(t, foreign) // a fact from a source that may not emit it: parked
	if code, res := g.send(g.signed(s, ct.Clone()), s); code != 200 || res.Parked != 1 {
		t.Fatalf("foreign delivery: %d %+v", code, res)
	}
	other, _ := events.New(context.Background(), "kcat", "com.example.thing", "s", payment{1})
	body, _ := json.Marshal([]events.Event{newEvent(t, 2), other})
	if code, _ := g.send(g.signed(body, http.Header{"Content-Type": {events.ContentTypeBatch}}), body); code != 200 {
		t.Fatalf("mixed batch: %d", code)
	}

	got := series(t, "billfn_event_delivery_duration_seconds", g.consumer, "type", "result")
	want := map[string]float64{"billfn.payment.captured ok": 3, "billfn.payment.captured failed": 1, "mixed ok": 1}
	if len(got) != len(want) {
		t.Errorf("deliveries timed %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("deliveries timed %v, want %v", got, want)
			break
		}
	}
	dl := series(t, "billfn_event_dead_letters_total", g.consumer, "reason")
	if dl["rejected"] != 1 || dl["foreign_source"] != 1 || dl["origin_missing"] != 0 || dl["origin_invalid"] != 0 {
		t.Errorf("dead letters by reason = %v, want 1 rejected and 1 foreign_source", dl)
	}
}
