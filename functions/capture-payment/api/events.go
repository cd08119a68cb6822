package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

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
	rc.Tick = s.Tick
}

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
