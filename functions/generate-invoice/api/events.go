package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/outbox"
)

// ---- events in ----

// onInvoiceRequested creates the invoice a billfn.invoice.requested event
// asks for, exactly as POST /invoices does.
func (s *Service) onInvoiceRequested(ctx context.Context, tx *store.Tx, ev events.Event) error {
	return s.applyRequests(ctx, tx, []events.Event{ev})
}

// onBatch applies a batch delivery in one transaction: invoice requests in
// bulk (the async path's throughput), payment events one after another,
// anything else ignored. A batch holding account facts (user-events) is
// handed back before anything is done, marked permanent, so the receiver
// applies its events one by one through their registered handlers (the
// read model's own, which this function does not copy).
func (s *Service) onBatch(ctx context.Context, tx *store.Tx, evs []events.Event) error {
	for _, ev := range evs {
		if ev.Type() == accounts.TypeCreated || ev.Type() == accounts.TypeUpdated {
			return events.Permanent(errApplyOneByOne)
		}
	}
	var (
		reqs      []events.Event
		notifyEvs []events.Event
		notifies  []*events.NotificationRequested
	)
	for _, ev := range evs {
		var err error
		switch ev.Type() {
		case events.TypeInvoiceRequested:
			reqs = append(reqs, ev)
		case events.TypePaymentCaptured:
			err = s.onPaymentCaptured(ctx, tx, ev)
		case events.TypePaymentFailed:
			err = s.onPaymentFailed(ctx, tx, ev)
		case events.TypeRefundSucceeded:
			err = s.onRefundSucceeded(ctx, tx, ev)
		case events.TypeRefundFailed:
			err = s.onRefundFailed(ctx, tx, ev)
		case events.TypeNotificationRequested:
			// queued together, after the loop (billing.QueueNotifications)
			var req events.NotificationRequested
			if err = decodeLoose(ev, &req); err != nil {
				err = events.Permanent(err)
			}
			notifyEvs, notifies = append(notifyEvs, ev), append(notifies, &req)
		case events.TypeWebhookEndpointDisabled:
			err = s.onEndpointDisabled(ctx, tx, ev)
		}
		if err != nil {
			return err
		}
	}
	if err := s.b.QueueNotifications(ctx, tx, notifyEvs, notifies); err != nil {
		return err
	}
	return s.applyRequests(ctx, tx, reqs)
}

var errApplyOneByOne = errors.New("account events in a batch are applied one by one")

// applyRequests decodes invoice requests and has billing create them
// (billing.ApplyRequests: what a request that cannot be honoured becomes).
func (s *Service) applyRequests(ctx context.Context, tx *store.Tx, evs []events.Event) error {
	reqs := make([]billing.RequestedInvoice, len(evs))
	for i, ev := range evs {
		reqs[i] = billing.RequestedInvoice{Event: ev, Own: events.From(ev, FunctionName)}
		reqs[i].Err = httpx.Unmarshal(ev.Data(), &reqs[i].In)
	}
	return s.b.ApplyRequests(ctx, tx, reqs)
}

// invalidations collects the cache keys an event delivery changed, so they
// are dropped after the receiver committed (see eventsHandler).
type invalidations struct {
	mu       sync.Mutex
	invoices []string
	subs     []string
	mail     bool // an email was queued: wake the sender
}

type invalidationsKey struct{}

// touched drops cached invoices and subscriptions changed by the current
// transaction: after the delivery's commit when running under
// eventsHandler, at once otherwise (the caller has committed).
func (s *Service) touched(ctx context.Context, invoiceIDs []string, subIDs ...string) {
	if c, ok := ctx.Value(invalidationsKey{}).(*invalidations); ok {
		c.mu.Lock()
		c.invoices = append(c.invoices, invoiceIDs...)
		c.subs = append(c.subs, subIDs...)
		c.mu.Unlock()
		return
	}
	s.invalidate(invoiceIDs, subIDs)
}

func (s *Service) invalidate(invoiceIDs, subIDs []string) {
	s.d.Publisher.Kick()
	s.dropCached(invoiceIDs, subIDs)
}

func (s *Service) dropCached(invoiceIDs, subIDs []string) {
	if len(invoiceIDs) > 0 {
		s.invCache.Invalidate(context.Background(), invoiceIDs...)
	}
	if len(subIDs) > 0 {
		s.subCache.Invalidate(context.Background(), subIDs...)
	}
}

// eventsHandler serves CloudEvents and ticks through the shared receiver,
// then drops the cache keys the handlers changed: the receiver commits each
// handler's transaction itself, so only after it returns is a key safe to
// drop without a reader putting the old row back. The outbox publisher is
// woken only when a handler wrote outbox rows: most deliveries (emails to
// queue, account facts) write none, and each wake-up is a transaction.
func (s *Service) eventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &invalidations{}
		var emitted outbox.Written
		ctx := outbox.Tracking(context.WithValue(r.Context(), invalidationsKey{}, c), &emitted)
		s.d.Events.ServeHTTP(w, r.WithContext(ctx))
		c.mu.Lock()
		defer c.mu.Unlock()
		if emitted.Load() {
			s.d.Publisher.Kick()
		}
		s.dropCached(c.invoices, c.subs)
		if c.mail {
			s.mail.kick()
		}
	})
}

// decodeLoose reads another function's event: producers may add optional
// fields (docs/events.md), so unknown members are fine here, unlike in
// request bodies.
func decodeLoose(ev events.Event, v any) error { return events.Decode(ev, v) }

// namesAnInvoice is the receiver's OnlyIf test of a payment event whose
// data is a T: only an event naming an invoice can change anything here
// (billing.paymentInvoice returns at once for the others, and each still
// cost a transaction, a commit and a processed_events row). The data is decoded exactly as the handler decodes
// it, so the answer is the handler's: an event it would refuse (data that
// does not decode) is relevant, and parked by the handler as before.
func namesAnInvoice[T any](invoice func(*T) *string) func(events.Event) bool {
	return func(ev events.Event) bool {
		var d T
		if decodeLoose(ev, &d) != nil {
			return true
		}
		id := invoice(&d)
		return id != nil && *id != ""
	}
}

func (s *Service) onPaymentCaptured(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var p events.PaymentCaptured
	if err := decodeLoose(ev, &p); err != nil {
		return err
	}
	return s.b.PaymentCaptured(ctx, tx, ev, &p)
}

func (s *Service) onPaymentFailed(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var p events.PaymentFailed
	if err := decodeLoose(ev, &p); err != nil {
		return err
	}
	return s.b.PaymentFailed(ctx, tx, ev, &p)
}

func (s *Service) onRefundSucceeded(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var r events.Refund
	if err := decodeLoose(ev, &r); err != nil {
		return err
	}
	return s.b.RefundSucceeded(ctx, tx, ev, &r)
}

func (s *Service) onRefundFailed(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var r events.Refund
	if err := decodeLoose(ev, &r); err != nil {
		return err
	}
	return s.b.RefundReversed(ctx, tx, ev, &r)
}

// ---- the schedule tick ----

// tick runs the periodic work; every step is idempotent and safe to run
// from several replicas at once (rows are taken FOR UPDATE SKIP LOCKED).
// A failing step does not stop the others.
func (s *Service) tick(ctx context.Context) error {
	var errs []error
	if _, err := s.d.Publisher.Sweep(ctx); err != nil {
		errs = append(errs, fmt.Errorf("outbox sweep: %w", err))
	}
	now := s.clock()
	steps := []struct {
		name string
		fn   func(context.Context, time.Time) (int, error)
	}{
		{"recurring billing", s.b.BillDueSubscriptions},
		{"cancellations", s.b.CancelDueSubscriptions},
		{"overdue", s.b.FlagOverdue},
		{"dunning", s.b.RunDunning},
		{"emails", func(ctx context.Context, _ time.Time) (int, error) { return s.SendDue(ctx) }},
		{"email log retention", s.b.PruneNotifications},
	}
	for _, st := range steps {
		n, err := st.fn(ctx, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name, err))
			continue
		}
		if n > 0 {
			slog.InfoContext(ctx, "tick", "step", st.name, "rows", n)
		}
	}
	s.d.Publisher.Kick()
	return errors.Join(errs...)
}
