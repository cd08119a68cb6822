package api

import (
	"context"
	"slices"

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
	if _, err := tx.Enqueue(ctx, evs); err != nil {
		return err
	}
	var refs []webhooks.PaymentRef
	for _, ev := range evs {
		if !slices.Contains(webhooks.LearnTypes, ev.Type()) {
			continue
		}
		ref, ok, err := webhooks.RefOf(ev)
		if err != nil {
			return err
		}
		if ok {
			refs = append(refs, ref)
		}
	}
	return tx.Learn(ctx, refs)
}
