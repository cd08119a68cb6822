package billing

import (
	"context"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/events"
)

// The tick's collection sweeps: overdue invoices, then dunning (retries on
// the schedule, reminders, finally uncollectible).

const sweepBatch = 200

// FlagOverdue flags open invoices whose due date has passed (the invoice
// stays open) and starts their dunning.
func (s *Service) FlagOverdue(ctx context.Context, now time.Time) (int, error) {
	return s.sweep(ctx, func(tx Tx) ([]string, error) {
		invs, err := tx.LockOverdue(ctx, invoicing.UTCDate(now), sweepBatch)
		if err != nil {
			return nil, err
		}
		var ids []string
		var msgs []invoicing.Event
		for _, inv := range invs {
			inv.Overdue, inv.OverdueAt, inv.UpdatedAt = true, ptr(now), now
			inv.NextPaymentAttemptAt = s.nextDunning(inv, now)
			if err := tx.SaveInvoice(ctx, inv); err != nil {
				return nil, err
			}
			msgs = append(msgs, invoicing.InvoiceEvent(events.TypeInvoiceOverdue, inv, 0), invoicing.Notification(events.NotifyInvoiceOverdue, inv))
			ids = append(ids, inv.ID)
		}
		return ids, tx.Emit(ctx, msgs)
	})
}

// sweep runs step in a transaction after another until one changes fewer
// than sweepBatch invoices; each committed batch's invoices are reported
// changed. It returns how many changed.
func (s *Service) sweep(ctx context.Context, step func(tx Tx) ([]string, error)) (int, error) {
	total := 0
	for {
		var ids []string
		err := s.store.InTx(ctx, func(tx Tx) error {
			var err error
			ids, err = step(tx)
			return err
		})
		if err != nil {
			return total, err
		}
		total += len(ids)
		s.changed(ids, nil)
		if len(ids) < sweepBatch {
			return total, nil
		}
	}
}

// dueAt is the instant an invoice becomes overdue: the end of its due date (UTC).
func dueAt(inv *invoicing.Invoice) time.Time { return inv.DueDate.AddDate(0, 0, 1) }

// nextDunning is when the next dunning step of an overdue invoice runs:
// the next retry (automatic collection only), else the uncollectible step,
// at its offset from the due date. A step that offset puts at or before
// now (the ticks came late: an outage, a stopped schedule) comes the
// schedule's interval after now instead, the time it leaves between that
// step and the one just taken: otherwise every tick, a tick delivered
// twice included, would take one more step at once (two charges in the
// same second, the whole schedule run to uncollectible in a few minutes).
func (s *Service) nextDunning(inv *invoicing.Invoice, now time.Time) *time.Time {
	if inv.DueDate == nil {
		return nil
	}
	base := dueAt(inv)
	sched, k := s.cfg.DunningSchedule, inv.DunningAttempts
	retries := inv.CollectionMethod == invoicing.ChargeAutomatically
	var offset time.Duration
	switch {
	case retries && k < len(sched):
		offset = sched[k]
	case s.cfg.UncollectibleAfter > 0:
		offset = s.cfg.UncollectibleAfter
	default:
		return nil
	}
	at := base.Add(offset)
	if retries && k > 0 && !at.After(now) {
		at = now.Add(offset - sched[min(k, len(sched))-1]) // the step just taken was retry k
	}
	return ptr(at)
}

// RunDunning asks capture-payment to retry collection on the schedule,
// then marks the invoice uncollectible.
func (s *Service) RunDunning(ctx context.Context, now time.Time) (int, error) {
	return s.sweep(ctx, func(tx Tx) ([]string, error) {
		invs, err := tx.LockDunningDue(ctx, now, sweepBatch)
		if err != nil {
			return nil, err
		}
		var ids []string
		var msgs []invoicing.Event
		for _, inv := range invs {
			if inv.CollectionMethod == invoicing.ChargeAutomatically && inv.DunningAttempts < len(s.cfg.DunningSchedule) {
				inv.DunningAttempts++
				inv.UpdatedAt = now
				inv.NextPaymentAttemptAt = s.nextDunning(inv, now)
				// A frozen or closed account is not charged: the
				// attempt passes without a retry request.
				if f, err := s.facts(ctx, tx, inv.AccountID); err == nil && f.Active() != nil {
					s.skipInactive(ctx, "dunning", "invoice", inv.ID, f)
				} else {
					msgs = append(msgs, invoicing.InvoiceEvent(events.TypeInvoicePaymentRetryRequested, inv, inv.DunningAttempts))
				}
				// The customer is reminded at each step of the schedule.
				msgs = append(msgs, invoicing.Reminder(inv, inv.DunningAttempts))
			} else {
				m, err := invoicing.MarkUncollectible(inv, now)
				if err != nil {
					return nil, err
				}
				msgs = append(msgs, m...)
			}
			if err := tx.SaveInvoice(ctx, inv); err != nil {
				return nil, err
			}
			ids = append(ids, inv.ID)
		}
		return ids, tx.Emit(ctx, msgs)
	})
}
