package api

import (
	"context"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
)

// onPaymentEvent learns payment id ↔ gateway object from capture-payment.
func (a *API) onPaymentEvent(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	return a.onPaymentEvents(ctx, tx, []events.Event{ev})
}

// onPaymentEvents learns from a delivery of capture-payment's events, in
// its one transaction (store.Learn). A poison event fails a batch
// permanently; the receiver then applies the events one by one and parks
// that one alone.
func (a *API) onPaymentEvents(ctx context.Context, tx pgx.Tx, evs []events.Event) error {
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
	return a.store.Learn(ctx, tx, refs)
}
