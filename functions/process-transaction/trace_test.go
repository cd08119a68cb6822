package main

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/events"
)

// A transfer's event continues the trace of the request or event that
// decided it, with the caller's sampling decision, although the group
// commit writes it away from the caller's context (issue 19: a sampled
// transfer's trace crosses Kafka; an unsampled one stays unsampled in
// every consumer instead of starting a new, sampled trace per event).
func TestTransferEventsContinueTheDecidingCallersTrace(t *testing.T) {
	e := newEnv(t)
	alice := uuid.NewString()
	const (
		sampled   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		unsampled = "00-5bf92f3577b34da6a3ce929d0e0e4736-10f067aa0ba902b7-00"
	)
	for _, tp := range []string{sampled, unsampled} {
		a, b := e.account(alice, "USD"), e.account(alice, "USD")
		e.fund(a, 100)
		if r := e.transfer(alice, a, b, 10, "Traceparent", tp); r.Code != 201 {
			t.Fatalf("transfer: %d %s", r.Code, r.Body)
		}
		ev := e.kafkaEvents("billfn.transaction.posted", a.ID, 1)[0]
		if got, _ := events.TraceOf(ev); got != tp {
			t.Errorf("the posted event of a request with traceparent %s carries %q", tp, got)
		}
	}

	// A batch delivery of requests: each posted event continues its own
	// requester's trace.
	a := e.account(alice, "EUR")
	e.fund(a, 100)
	var reqs []events.Event
	var want []string
	for _, tp := range []string{sampled, unsampled} {
		to := e.account(alice, "EUR")
		ev := events.Must(events.New(context.Background(), "capture-payment", "billfn.transaction.requested", to.ID,
			TransferRequest{FromAccountID: a.ID, ToAccountID: to.ID, Amount: 1, Currency: "EUR"}))
		ev.SetExtension(events.TraceParentExt, tp)
		reqs, want = append(reqs, ev), append(want, tp)
	}
	if r := e.deliver(reqs...); r.Code != 200 {
		t.Fatalf("batch delivery: %d %s", r.Code, r.Body)
	}
	got := map[string]bool{}
	for _, ev := range e.kafkaEvents("billfn.transaction.posted", a.ID, 2) {
		tp, _ := events.TraceOf(ev)
		got[tp] = true
	}
	for _, tp := range want {
		if !got[tp] {
			t.Errorf("no posted event of the batch continues its request's trace %s (got %v)", tp, got)
		}
	}
}
