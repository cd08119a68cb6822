package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
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
	var reqs []events.Event
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
		case events.TypeNotificationRequested:
			err = s.onNotificationRequested(ctx, tx, ev)
		}
		if err != nil {
			return err
		}
	}
	return s.applyRequests(ctx, tx, reqs)
}

var errApplyOneByOne = errors.New("account events in a batch are applied one by one")

// applyRequests creates the invoices of requested events. A request that
// cannot be honoured (undecodable or invalid data, an unknown tax rate…) is
// a business outcome, not a poison event: it is recorded as failed, with
// its problem document, at GET /invoice-requests/{event id}, so whoever
// asked can see why. Only a database failure makes the delivery retry.
//
// The invoice belongs to the account's owner, from the read model (read
// through for a fresh account), never to the user_id the event states.
// An outside producer's command that names an unknown account, a user_id
// or currency that is not the account's, or a frozen or closed account is
// refused: parked with its reason, nothing written. A request of our own
// POST /invoices (Prefer: respond-async), already checked when it was
// accepted and awaited by its client, is recorded as failed instead (its
// account was frozen in between).
func (s *Service) applyRequests(ctx context.Context, tx *store.Tx, evs []events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	now := s.clock()
	res := s.b.NewResolver(tx, now)
	memo := billing.AccountMemo{}
	service := auth.Principal{Role: auth.RoleService}
	var (
		outs     []store.RequestOutcome
		invs     []*invoicing.Invoice
		finalize []bool
		idx      []int // outs index of each invoice
	)
	for _, ev := range evs {
		var in invoicing.CreateInvoiceIn
		var d *invoicing.InvoiceDraft
		err := httpx.Unmarshal(ev.Data(), &in)
		o := store.RequestOutcome{Source: ev.Source(), ID: ev.ID(), Account: in.AccountID}
		if err == nil {
			d, err = s.b.ParseCreate(ctx, tx, service, memo, &in, "", now)
		}
		if d != nil {
			o.Owner = d.Inv.UserID // from the account: who may read the request
		}
		if err == nil {
			err = res.Draft(ctx, d)
		}
		if err != nil {
			var pe *problem.Error
			if !errors.As(err, &pe) || Statuses.Status(err) >= 500 {
				return err // the database or the read-through, not the request: retry
			}
			if billing.IsAccountRefusal(err) && ev.Source() != events.Source(FunctionName) {
				return events.Permanent(fmt.Errorf("%s %s from %s refused: %w", ev.Type(), ev.ID(), ev.Source(), err))
			}
			doc, _ := Statuses.Doc(nil, "", pe)
			o.Problem, _ = json.Marshal(doc)
			outs = append(outs, o)
			continue
		}
		o.InvoiceID = d.Inv.ID
		idx = append(idx, len(outs))
		outs = append(outs, o)
		invs = append(invs, d.Inv)
		finalize = append(finalize, d.AutoFinalize)
	}
	if len(invs) > 0 {
		msgs, err := s.b.PersistNew(ctx, tx, invs, finalize, now)
		if err != nil {
			var pe *problem.Error
			if errors.As(err, &pe) && Statuses.Status(err) < 500 && len(invs) == 1 {
				// A finalization rule (due date passed): the request failed.
				doc, _ := Statuses.Doc(nil, "", pe)
				outs[idx[0]].Problem, _ = json.Marshal(doc)
				outs[idx[0]].InvoiceID = ""
				return store.CompleteRequests(ctx, tx, outs, now)
			}
			return err
		}
		if err := res.Flush(ctx); err != nil {
			return err
		}
		if err := tx.Emit(ctx, msgs); err != nil {
			return err
		}
	}
	if err := store.CompleteRequests(ctx, tx, outs, now); err != nil {
		return err
	}
	s.touched(ctx, nil)
	return nil
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
// drop without a reader putting the old row back.
func (s *Service) eventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &invalidations{}
		s.d.Events.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), invalidationsKey{}, c)))
		c.mu.Lock()
		defer c.mu.Unlock()
		s.invalidate(c.invoices, c.subs)
		if c.mail {
			s.mail.kick()
		}
	})
}

// decodeLoose reads another function's event: producers may add optional
// fields (docs/events.md), so unknown members are fine here, unlike in
// request bodies.
func decodeLoose(ev events.Event, v any) error { return events.Decode(ev, v) }

// paymentInvoice loads and locks the invoice a payment event names.
// ok is false for a payment that is not for an invoice. An invoice that
// does not exist makes the event malformed: it is parked with the reason,
// counted and logged. The currency is the caller's to compare.
func (s *Service) paymentInvoice(ctx context.Context, tx *store.Tx, ev events.Event, invoiceID *string) (*invoicing.Invoice, bool, error) {
	if invoiceID == nil || *invoiceID == "" {
		return nil, false, nil
	}
	inv, err := store.GetInvoice(ctx, tx, *invoiceID, true)
	var pe *problem.Error
	if errors.As(err, &pe) && pe.Code == problem.NotFound {
		paymentAnomalies.WithLabelValues(ev.Type(), "invoice_not_found").Inc()
		return nil, false, events.Permanent(fmt.Errorf("%s %s names invoice %s, which does not exist", ev.Type(), ev.ID(), *invoiceID))
	}
	if err != nil {
		return nil, false, err
	}
	return inv, true, nil
}

// paymentAnomalies counts payment events that could not apply to their
// invoice as they are: money the invoice did not need (unapplied, by
// reason), a currency that is not the invoice's, an invoice that does not
// exist. Each is also logged at warn and, for money, announced as
// billfn.invoice.payment_unapplied: none is dropped silently.
var paymentAnomalies = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "generate_invoice_payment_anomalies_total",
	Help: "Payment events that did not apply to their invoice as they are, by event type and reason (invoice_paid, invoice_void, overpayment, currency_mismatch, invoice_not_found).",
}, []string{"type", "reason"})

// unapplied records that amount of payment p reached inv without being
// needed: counted, logged at warn, announced.
func (s *Service) unapplied(ctx context.Context, inv *invoicing.Invoice, p *events.PaymentCaptured, amount int64, cur money.Currency, reason string) invoicing.Event {
	paymentAnomalies.WithLabelValues(events.TypePaymentCaptured, reason).Inc()
	account := p.AccountID
	if account == "" {
		account = inv.AccountID
	}
	slog.WarnContext(ctx, "payment not applied to its invoice: credited to the account", "payment_id", p.PaymentID,
		"invoice_id", inv.ID, "invoice_status", inv.Status, "account_id", account, "amount", amount, "currency", string(cur), "reason", reason)
	return invoicing.NewEvent(events.TypeInvoicePaymentUnapplied, p.PaymentID, inv.AccountID, events.PaymentUnapplied{PaymentID: p.PaymentID, InvoiceID: inv.ID,
		AccountID: account, UserID: inv.UserID, Amount: amount, Currency: string(cur), Reason: reason, InvoiceStatus: inv.Status,
		InvoiceTotal: inv.Total, InvoiceAmountPaid: inv.AmountPaid, InvoiceCurrency: string(inv.Currency)})
}

// onPaymentCaptured adds a capture to the invoice's amount_paid, never
// beyond its total. The payment's cumulative amount_captured is kept per
// payment and only ever grows, so duplicates and reordered captures change
// nothing. Money the invoice does not need (it is paid or void already,
// the capture exceeds what is due, or it is in another currency) is
// recorded with the payment, left out of amount_paid, and announced as
// billfn.invoice.payment_unapplied.
func (s *Service) onPaymentCaptured(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var p events.PaymentCaptured
	if err := decodeLoose(ev, &p); err != nil {
		return err
	}
	inv, ok, err := s.paymentInvoice(ctx, tx, ev, p.InvoiceID)
	if err != nil || !ok {
		return err
	}
	captured := max(p.AmountCaptured, p.Amount)
	if captured <= 0 || p.PaymentID == "" {
		return events.Permanent(fmt.Errorf("%s %s has no payment_id or captured amount", ev.Type(), ev.ID()))
	}
	cur := money.Currency(p.Currency)
	if cur == "" {
		cur = inv.Currency
	}
	before, err := tx.CapturedSoFar(ctx, inv.ID, p.PaymentID)
	if err != nil {
		return err
	}
	if captured <= before {
		return nil // a duplicate or an older capture
	}
	if err := tx.RecordCapture(ctx, inv.ID, p.PaymentID, captured, string(cur)); err != nil {
		return err
	}
	delta := captured - before
	var applied int64
	reason := ""
	switch {
	case cur != inv.Currency:
		reason = "currency_mismatch"
	case inv.Status == invoicing.StatusVoid:
		reason = "invoice_void"
	case inv.Status == invoicing.StatusPaid:
		reason = "invoice_paid"
	default:
		applied = min(delta, max(inv.Total-inv.AmountPaid, 0))
		if applied < delta {
			reason = "overpayment"
		}
	}
	var msgs []invoicing.Event
	if applied > 0 {
		now := s.clock()
		inv.AmountPaid += applied // ≤ total: no overflow
		at := ev.Time().UTC()
		if at.IsZero() || at.After(now) {
			at = now
		}
		msgs = invoicing.Settle(inv, at, now)
		if err := store.SaveInvoice(ctx, tx, inv); err != nil {
			return err
		}
	}
	if rest := delta - applied; rest > 0 {
		msgs = append(msgs, s.unapplied(ctx, inv, &p, rest, cur, reason))
	}
	if err := tx.Emit(ctx, msgs); err != nil {
		return err
	}
	s.touched(ctx, []string{inv.ID})
	return nil
}

// onPaymentFailed records a failed attempt on an unpaid invoice. A failure
// that arrives after the invoice was paid changes nothing.
func (s *Service) onPaymentFailed(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var p events.PaymentFailed
	if err := decodeLoose(ev, &p); err != nil {
		return err
	}
	inv, ok, err := s.paymentInvoice(ctx, tx, ev, p.InvoiceID)
	if err != nil || !ok {
		return err
	}
	if cur := money.Currency(p.Currency); cur != "" && cur != inv.Currency {
		return mismatch(ctx, ev, inv, p.PaymentID, cur)
	}
	reason := p.FailureReason
	if p.DeclineCode != "" {
		reason = p.DeclineCode + ": " + reason
	}
	if p.PaymentID != "" {
		if err := tx.RecordFailure(ctx, inv.ID, p.PaymentID, string(inv.Currency), reason); err != nil {
			return err
		}
	}
	if inv.Status != invoicing.StatusOpen && inv.Status != invoicing.StatusUncollectible {
		return nil // paid, void or draft: never un-paid by a late failure
	}
	at := ev.Time().UTC()
	inv.PaymentFailures++
	// An older failure arriving late is counted; the newest reason stays.
	if inv.LastPaymentFailedAt == nil || !at.Before(*inv.LastPaymentFailedAt) {
		inv.LastPaymentError, inv.LastPaymentFailedAt = ptr(reason), ptr(at)
	}
	inv.UpdatedAt = s.clock()
	if err := store.SaveInvoice(ctx, tx, inv); err != nil {
		return err
	}
	// The customer hears of it (what failed, what to do) once per failure event.
	if err := tx.Emit(ctx, []invoicing.Event{invoicing.PaymentFailedNotice(inv, failureText(&p))}); err != nil {
		return err
	}
	s.touched(ctx, []string{inv.ID})
	return nil
}

// failureText is a failure as the customer may read it: the gateway's
// message for people when it has one, else its reason.
func failureText(p *events.PaymentFailed) string {
	for _, t := range []string{p.FailureMessage, p.FailureReason, p.DeclineCode} {
		if t != "" {
			return t
		}
	}
	return "the payment was declined"
}

// mismatch acknowledges a payment event in another currency than its
// invoice's (it cannot change the invoice), counted and logged at warn.
func mismatch(ctx context.Context, ev events.Event, inv *invoicing.Invoice, paymentID string, cur money.Currency) error {
	paymentAnomalies.WithLabelValues(ev.Type(), "currency_mismatch").Inc()
	slog.WarnContext(ctx, "payment event in another currency than its invoice: not applied", "type", ev.Type(), "id", ev.ID(),
		"payment_id", paymentID, "invoice_id", inv.ID, "currency", string(cur), "invoice_currency", string(inv.Currency))
	return nil
}

// onRefundSucceeded records a refund of an invoice payment, once per
// refund id. The invoice keeps its status (as in Stripe, a refund does not
// reopen an invoice); amount_refunded shows it.
func (s *Service) onRefundSucceeded(ctx context.Context, tx *store.Tx, ev events.Event) error {
	var r events.Refund
	if err := decodeLoose(ev, &r); err != nil {
		return err
	}
	inv, ok, err := s.paymentInvoice(ctx, tx, ev, r.InvoiceID)
	if err != nil || !ok {
		return err
	}
	if cur := money.Currency(r.Currency); cur != "" && cur != inv.Currency {
		return mismatch(ctx, ev, inv, r.PaymentID, cur)
	}
	if r.RefundID == "" || r.Amount <= 0 {
		return events.Permanent(fmt.Errorf("%s %s has no refund_id or amount", ev.Type(), ev.ID()))
	}
	fresh, err := tx.RecordRefund(ctx, r.RefundID, inv.ID, r.PaymentID, r.Amount, string(inv.Currency))
	if err != nil || !fresh {
		return err
	}
	if inv.AmountRefunded, err = money.Add(inv.AmountRefunded, r.Amount); err != nil {
		return events.Permanent(err)
	}
	inv.UpdatedAt = s.clock()
	if err := store.SaveInvoice(ctx, tx, inv); err != nil {
		return err
	}
	s.touched(ctx, []string{inv.ID})
	return nil
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
		{"overdue", s.flagOverdue},
		{"dunning", s.runDunning},
		{"emails", func(ctx context.Context, _ time.Time) (int, error) { return s.SendDue(ctx) }},
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

const sweepBatch = 200

// flagOverdue flags open invoices whose due date has passed (the invoice
// stays open) and starts their dunning.
func (s *Service) flagOverdue(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		var ids []string
		err := s.st.InTx(ctx, func(tx *store.Tx) error {
			ids = ids[:0]
			invs, err := tx.LockOverdue(ctx, invoicing.UTCDate(now), sweepBatch)
			if err != nil {
				return err
			}
			var msgs []invoicing.Event
			for _, inv := range invs {
				inv.Overdue, inv.OverdueAt, inv.UpdatedAt = true, ptr(now), now
				inv.NextPaymentAttemptAt = s.nextDunning(inv)
				if err := store.SaveInvoice(ctx, tx, inv); err != nil {
					return err
				}
				msgs = append(msgs, invoicing.InvoiceEvent(events.TypeInvoiceOverdue, inv, 0), invoicing.Notification(events.NotifyInvoiceOverdue, inv))
				ids = append(ids, inv.ID)
			}
			return tx.Emit(ctx, msgs)
		})
		if err != nil {
			return total, err
		}
		total += len(ids)
		s.invalidate(ids, nil)
		if len(ids) < sweepBatch {
			return total, nil
		}
	}
}

// dueAt is the instant an invoice becomes overdue: the end of its due date (UTC).
func dueAt(inv *invoicing.Invoice) time.Time { return inv.DueDate.AddDate(0, 0, 1) }

// nextDunning is when the next dunning step of an overdue invoice runs:
// the next retry (automatic collection only), else the uncollectible step.
func (s *Service) nextDunning(inv *invoicing.Invoice) *time.Time {
	if inv.DueDate == nil {
		return nil
	}
	base := dueAt(inv)
	if inv.CollectionMethod == invoicing.ChargeAutomatically && inv.DunningAttempts < len(s.cfg.DunningSchedule) {
		return ptr(base.Add(s.cfg.DunningSchedule[inv.DunningAttempts]))
	}
	if s.cfg.UncollectibleAfter > 0 {
		return ptr(base.Add(s.cfg.UncollectibleAfter.D()))
	}
	return nil
}

// runDunning asks capture-payment to retry collection on the schedule,
// then marks the invoice uncollectible.
func (s *Service) runDunning(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		var ids []string
		err := s.st.InTx(ctx, func(tx *store.Tx) error {
			ids = ids[:0]
			invs, err := tx.LockDunningDue(ctx, now, sweepBatch)
			if err != nil {
				return err
			}
			var msgs []invoicing.Event
			for _, inv := range invs {
				if inv.CollectionMethod == invoicing.ChargeAutomatically && inv.DunningAttempts < len(s.cfg.DunningSchedule) {
					inv.DunningAttempts++
					inv.UpdatedAt = now
					inv.NextPaymentAttemptAt = s.nextDunning(inv)
					// A frozen or closed account is not charged: the
					// attempt passes without a retry request.
					if f, err := s.b.Facts(ctx, tx, inv.AccountID); err == nil && f.Active() != nil {
						s.b.SkipInactive(ctx, "dunning", "invoice", inv.ID, f)
					} else {
						msgs = append(msgs, invoicing.InvoiceEvent(events.TypeInvoicePaymentRetryRequested, inv, inv.DunningAttempts))
					}
					// The customer is reminded at each step of the schedule.
					msgs = append(msgs, invoicing.Reminder(inv, inv.DunningAttempts))
				} else {
					m, err := invoicing.MarkUncollectible(inv, now)
					if err != nil {
						return err
					}
					msgs = append(msgs, m...)
				}
				if err := store.SaveInvoice(ctx, tx, inv); err != nil {
					return err
				}
				ids = append(ids, inv.ID)
			}
			return tx.Emit(ctx, msgs)
		})
		if err != nil {
			return total, err
		}
		total += len(ids)
		s.invalidate(ids, nil)
		if len(ids) < sweepBatch {
			return total, nil
		}
	}
}
