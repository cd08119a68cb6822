package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
)

// Sandbox is the built-in gateway's periodic work.
type Sandbox interface {
	// SettleDue settles the delayed payments whose time has come.
	SettleDue(ctx context.Context) (int, error)
	// Flush sends the webhooks the sandbox owes.
	Flush(ctx context.Context) (int, error)
	// Prune forgets the webhooks delivered before before.
	Prune(ctx context.Context, before time.Time) error
}

// register subscribes the event handlers: the gateways' news, invoice
// collection and dunning, the invoice read model and the unapplied money
// generate-invoice reports (the account read model registers itself).
func (s *API) register(rc *events.Receiver) {
	rc.On(events.TypeGatewayUpdated, s.store.Handler(s.svc.OnGatewayUpdated))
	rc.On(events.TypeInvoiceFinalized, s.store.Handler(s.svc.OnInvoiceFinalized))
	rc.On(events.TypeInvoicePaymentRetryRequested, s.store.Handler(s.svc.OnPaymentRetry))
	for _, typ := range []string{events.TypeInvoiceCreated, events.TypeInvoicePaid, events.TypeInvoiceVoided,
		events.TypeInvoiceUncollectible, events.TypeInvoiceOverdue} {
		rc.On(typ, s.store.Handler(s.svc.OnInvoiceFacts))
	}
	rc.On(events.TypeInvoicePaymentUnapplied, s.store.Handler(s.svc.OnPaymentUnapplied))
	rc.Batch = s.store.BatchHandler(s.onBatch)
	rc.Tick = s.Tick
	rc.Wanted = s.wanted
}

// onBatch applies a delivery of several events in one transaction
// (payments.Service.OnEvents): the invoice events' facts in one round trip
// instead of a transaction and a processed_events row each. A batch
// holding account facts is handed back before anything is done, marked
// permanent, so the receiver applies its events one by one through their
// registered handlers (the account read model's own). A type with no
// handler here never reaches it: the receiver acknowledges it as ignored
// (Receiver.Handles).
func (s *API) onBatch(ctx context.Context, run payments.Runner, evs []events.Event) error {
	mine := evs[:0:0]
	for _, ev := range evs {
		switch {
		case payments.BatchTypes[ev.Type()]:
			mine = append(mine, ev)
		case ev.Type() == accounts.TypeCreated || ev.Type() == accounts.TypeUpdated:
			return events.Permanent(errApplyOneByOne)
		}
	}
	return s.svc.OnEvents(ctx, run, mine)
}

var errApplyOneByOne = errors.New("account events in a batch are applied one by one")

// Tick is the schedule's periodic work; every part is idempotent.
func (s *API) Tick(ctx context.Context) error {
	var errs []error
	if _, err := s.sandbox.SettleDue(ctx); err != nil {
		errs = append(errs, fmt.Errorf("sandbox settlement: %w", err))
	}
	if _, err := s.sandbox.Flush(ctx); err != nil {
		slog.WarnContext(ctx, "sandbox webhooks wait for handle-webhook", "err", err.Error())
	}
	if err := s.svc.Reconcile(ctx); err != nil {
		errs = append(errs, fmt.Errorf("reconciliation: %w", err))
	}
	if err := s.svc.Expire(ctx); err != nil {
		errs = append(errs, fmt.Errorf("authorization expiry: %w", err))
	}
	// The sandbox keeps a week of delivered webhooks, as a gateway's log.
	if err := s.sandbox.Prune(ctx, s.svc.Now().Add(-7*24*time.Hour)); err != nil {
		errs = append(errs, fmt.Errorf("sandbox webhook log: %w", err))
	}
	if _, err := idempotency.Sweep(ctx, s.d.Pool); err != nil {
		errs = append(errs, fmt.Errorf("idempotency sweep: %w", err))
	}
	if _, err := s.d.Publisher.Sweep(ctx); err != nil {
		errs = append(errs, fmt.Errorf("outbox sweep: %w", err))
	}
	return errors.Join(errs...)
}
