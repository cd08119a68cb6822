package payments

import (
	"context"

	"github.com/billfn/billfn/shared/events"
)

// BatchTypes are the event types OnEvents applies.
var BatchTypes = map[string]bool{
	events.TypeGatewayUpdated: true, events.TypeInvoicePaymentUnapplied: true,
	events.TypeInvoiceCreated: true, events.TypeInvoiceFinalized: true, events.TypeInvoiceOverdue: true,
	events.TypeInvoicePaymentRetryRequested: true, events.TypeInvoicePaid: true, events.TypeInvoiceVoided: true,
	events.TypeInvoiceUncollectible: true,
}

// OnEvents applies a batch delivery's events (of BatchTypes; others are
// skipped) in run, the receiver's one transaction: first the invoice facts
// of all its invoice events, in one round trip (Tx.PutInvoices: the effect
// of learning them one after another, in delivery order), then, in
// delivery order, what each event does besides: a finalized invoice's
// automatic collection, a dunning retry, a gateway's news, an unapplied
// payment. So a collection sees every fact of the delivery, as it would
// have seen them had they come first. An event that fails permanently
// fails the batch, and the receiver applies the events one by one, which
// parks that one alone; any other error retries the whole delivery.
func (s *Service) OnEvents(ctx context.Context, run Runner, evs []events.Event) error {
	tx := run.DB()
	var facts []InvoiceFacts
	for _, ev := range evs {
		if _, ok := impliedStatus[ev.Type()]; !ok {
			continue
		}
		f, err := invoiceFactsOf(ev)
		if err != nil {
			return err
		}
		facts = append(facts, f)
	}
	if err := tx.PutInvoices(ctx, facts, "event"); err != nil {
		return err
	}
	for _, ev := range evs {
		var err error
		switch ev.Type() {
		case events.TypeInvoiceFinalized:
			err = s.collectFinalized(ctx, run, ev)
		case events.TypeInvoicePaymentRetryRequested:
			err = s.retryPayment(ctx, run, ev)
		case events.TypeGatewayUpdated:
			err = s.OnGatewayUpdated(ctx, run, ev)
		case events.TypeInvoicePaymentUnapplied:
			err = s.OnPaymentUnapplied(ctx, run, ev)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
