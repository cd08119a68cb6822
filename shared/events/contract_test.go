package events_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/shared/events"
)

func TestContractTopic(t *testing.T) {
	for typ, want := range map[string]string{
		"billfn.account.created": events.TopicUser, "billfn.invoice.paid": events.TopicBilling,
		"billfn.subscription.canceled": events.TopicBilling, "billfn.notification.requested": events.TopicBilling,
		"billfn.transaction.requested": events.TopicTransaction, "billfn.hold.expired": events.TopicTransaction,
		"billfn.payment.gateway_updated": events.TopicPayment, "billfn.refund.failed": events.TopicPayment,
	} {
		if got, ok := events.ContractTopic(typ); !ok || got != want {
			t.Errorf("%s: %q %v, want %q", typ, got, ok, want)
		}
	}
	for _, typ := range []string{"", "billfn.", "billfn.invoice", "billfn.invoice.", "billfn.nope.created", "com.example.invoice.paid", "billfn.invoice.paid.x"} {
		if _, ok := events.ContractTopic(typ); ok {
			t.Errorf("%q is in the contract", typ)
		}
	}
}

// unexpectedCount reads billfn_events_unexpected_total for one consumer.
func unexpectedCount(t *testing.T, consumer string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(events.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "billfn_events_unexpected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["consumer"] == consumer {
				got[l["type"]+" "+l["reason"]] += m.GetCounter().GetValue()
			}
		}
	}
	return got
}

// An event of a type nobody knows, or on a topic the contract does not put
// its type on, is not applied, is counted (unknown types under one label)
// and leaves a line at debug.
func TestUnexpectedEventsAreCountedAndLogged(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	g := newRig(t, false)
	ct := func(topic string) http.Header {
		h := http.Header{"Content-Type": {events.ContentTypeStructured}}
		if topic != "" {
			h.Set("X-Topic", topic)
		}
		return h
	}
	for i := 0; i < 3; i++ { // three invented types: one label
		ev, err := events.New(context.Background(), "kcat", "com.example.thing"+uuid.NewString()[:4], "s", payment{5})
		if err != nil {
			t.Fatal(err)
		}
		s := structured(t, ev)
		if code, res := g.send(signed(s, ct(events.TopicPayment)), s); code != 200 || res.Ignored != 1 {
			t.Fatalf("unknown type: %d %+v", code, res)
		}
	}
	known, _ := events.New(context.Background(), "process-transaction", "billfn.hold.created", "s", payment{6})
	s := structured(t, known)
	if code, res := g.send(signed(s, ct(events.TopicTransaction)), s); code != 200 || res.Ignored != 1 {
		t.Fatalf("unhandled type: %d %+v", code, res)
	}
	wrong := newEvent(t, 7) // billfn.payment.captured, handled, but read from transaction-events
	s = structured(t, wrong)
	if code, res := g.send(signed(s, ct(events.TopicTransaction)), s); code != 200 || res.Ignored != 1 || res.Processed != 0 {
		t.Fatalf("wrong topic: %d %+v", code, res)
	}
	right := newEvent(t, 8)
	s = structured(t, right)
	if code, res := g.send(signed(s, ct(events.TopicPayment)), s); code != 200 || res.Processed != 1 {
		t.Fatalf("right topic: %d %+v", code, res)
	}
	if n, total := g.sum(); n != 1 || total != 8 {
		t.Errorf("effects %d (sum %d), want only the event on its own topic", n, total)
	}
	got := unexpectedCount(t, g.consumer)
	want := map[string]float64{"other unknown_type": 3, "billfn.hold.created unhandled": 1, "billfn.payment.captured wrong_topic": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("unexpected events %v, want %v", got, want)
			break
		}
	}
	if len(got) != len(want) {
		t.Errorf("unexpected events %v, want %v", got, want)
	}
	text := logs.String()
	if n := strings.Count(text, `"level":"DEBUG","msg":"event not applied"`); n != 5 {
		t.Errorf("%d debug lines, want 5:\n%s", n, text)
	}
	if !strings.Contains(text, `"event_id":"`+wrong.ID()+`"`) || !strings.Contains(text, `"reason":"wrong_topic"`) {
		t.Errorf("the wrong-topic line does not name the event id and reason:\n%s", text)
	}
}
