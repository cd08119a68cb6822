package api

import (
	"context"
	"slices"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/store"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
)

// onEvent applies one event (onEvents).
func (a *API) onEvent(ctx context.Context, tx store.Tx, ev events.Event) error {
	return a.onEvents(ctx, tx, []events.Event{ev})
}

// onEvents applies a delivery of events in the receiver's one transaction
// (which records them processed): the merchant's endpoints get one
// delivery per event they subscribed to (store.Enqueue), and
// capture-payment's events teach the payment map (store.Learn). A poison
// event fails a batch permanently; the receiver then applies the events
// one by one and parks that one alone.
func (a *API) onEvents(ctx context.Context, tx store.Tx, evs []events.Event) error {
	queued, err := tx.Enqueue(ctx, evs)
	if err != nil {
		return err
	}
	var refs []webhooks.PaymentRef
	for _, ev := range evs {
		if !slices.Contains(webhooks.LearnTypes, ev.Type()) {
			continue
		}
		if ref, ok := a.taught.take(ev); ok {
			refs = append(refs, ref) // decoded by wanted
			continue
		}
		ref, ok, err := a.taught.refOf(ev)
		if err != nil {
			return err
		}
		if ok {
			refs = append(refs, ref)
		}
	}
	unparked, err := tx.Learn(ctx, refs)
	if err == nil {
		// Kick the publisher and the sender only for what they have to
		// do: releasing parked webhooks writes outbox events, a queued
		// delivery is the sender's (events). A transaction that then
		// rolls back costs a pass that finds nothing, no more.
		wrote(ctx, unparked > 0, queued > 0)
	}
	return err
}

// wanted says which events of a delivery can change something here now
// (events.Receiver.Wanted): an event of a type an enabled endpoint
// subscribes to (it is queued for the endpoint), and the first of the
// delivery's events to name a gateway object the payment map does not
// hold (it teaches it). The rest — a payment's events after the first
// naming its object, the facts no endpoint subscribes to, most of what
// handle-webhook receives — are acknowledged without a transaction or a
// processed_events row. It is asked before the origin check, and only the
// proofs of the events it wants are verified: an unwanted event is ignored
// whatever its proof (a forgery changes nothing here; the consumers it
// could affect park it). A wanted forgery is parked, and the receiver then
// asks again about the proven events alone, so a forgery placed before a
// genuine event naming the same object cannot make the genuine one
// unwanted: an event is made unwanted here only by an earlier one that is
// wanted, as Receiver.Wanted requires. One thing differs from recording them: an event ignored
// because no endpoint subscribed is queued for an endpoint created before
// a redelivery of it (a trigger's retry, a replay), which its
// processed_events row used to answer as a duplicate. What decides is
// store.Interest: from the replica's copy when it has it (no round trip),
// else read.
func (a *API) wanted(ctx context.Context, evs []events.Event) ([]bool, error) {
	want := make([]bool, len(evs))
	var (
		refs  []webhooks.PaymentRef
		at    []int  // the index in evs of each of refs
		first []bool // whether each of refs is named by a payment's first event
	)
	for i, ev := range evs {
		if !slices.Contains(webhooks.LearnTypes, ev.Type()) {
			continue
		}
		switch ref, ok, err := a.taught.refOf(ev); {
		case err != nil:
			want[i] = true // the handler parks it
		case ok:
			refs, at, first = append(refs, ref), append(at, i), append(first, ev.Type() == events.TypePaymentCreated)
		}
	}
	subscribed, known, err := a.store.Interest(ctx, refs, first)
	if err != nil {
		return nil, err
	}
	for k, ref := range refs {
		key := [2]string{ref.Gateway, ref.GatewayPaymentID}
		if !known[key] {
			want[at[k]], known[key] = true, true // the first to teach it
		}
	}
	for i, ev := range evs {
		if !want[i] && outgoing.IsDeliverable(ev.Type()) && outgoing.AnyWants(subscribed, ev.Type()) {
			want[i] = true
		}
	}
	// The wanted events' references, for their transaction's handler
	// (onEvents), which then need not decode their data again.
	for k, ref := range refs {
		if want[at[k]] {
			a.taught.keep(evs[at[k]], ref)
		}
	}
	return want, nil
}
