package invoicing

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
)

// CheckFinalize validates a draft for finalization at now and fixes its
// due date. It changes nothing else.
func CheckFinalize(inv *Invoice, now time.Time, defaultNetDays int) error {
	if inv.Status != StatusDraft {
		return apperr.New(CodeInvoiceNotDraft, "invoice %s is %s; only a draft can be finalized", inv.ID, inv.Status)
	}
	if len(inv.Lines) == 0 {
		return apperr.New(CodeInvoiceEmpty, "invoice %s has no line items; add lines before finalizing", inv.ID)
	}
	today := UTCDate(now)
	switch {
	case inv.DueDate != nil:
		if inv.DueDate.Before(today) {
			return &apperr.Error{Code: CodeDueDateInPast,
				Detail: "the invoice's due_date " + inv.DueDate.Format(time.DateOnly) + " has passed; PATCH a new one first",
				Errors: []apperr.FieldError{apperr.Field("due_date", "must be today or later")}}
		}
	case inv.NetTermsDays != nil:
		inv.DueDate = &Date{today.AddDate(0, 0, *inv.NetTermsDays)}
	default:
		inv.DueDate = &Date{today.AddDate(0, 0, defaultNetDays)}
	}
	return nil
}

// Numberer reserves invoice numbers: n consecutive numbers of a series,
// the first returned, inside the caller's transaction.
type Numberer interface {
	ReserveNumbers(ctx context.Context, series string, n int) (int64, error)
}

// Finalize gives every invoice (drafts already checked) its number in one
// reservation per series, freezes it as open (or paid when nothing is
// due) and returns the events. The invoices are not written.
func Finalize(ctx context.Context, numbers Numberer, invs []*Invoice, now time.Time) ([]Event, error) {
	bySeries := map[string][]*Invoice{}
	for _, inv := range invs {
		k := seriesKey(inv.NumberPrefix, now.Year())
		bySeries[k] = append(bySeries[k], inv)
	}
	keys := make([]string, 0, len(bySeries))
	for k := range bySeries {
		keys = append(keys, k)
	}
	sort.Strings(keys) // one lock order for every transaction
	for _, k := range keys {
		group := bySeries[k]
		first, err := numbers.ReserveNumbers(ctx, k, len(group))
		if err != nil {
			return nil, err
		}
		for i, inv := range group {
			inv.Number = ptr(FormatNumber(inv.NumberPrefix, now.Year(), first+int64(i)))
		}
	}
	var msgs []Event
	for _, inv := range invs {
		inv.Status = StatusOpen
		inv.FinalizedAt = ptr(now)
		inv.UpdatedAt = now
		inv.AmountDue = max(inv.Total-inv.AmountPaid, 0)
		msgs = append(msgs, InvoiceEvent(events.TypeInvoiceFinalized, inv, 0), Notification(events.NotifyInvoiceFinalized, inv))
		if inv.AmountDue == 0 {
			// Nothing to collect (a 100% discount, a free plan): paid at once.
			inv.Status, inv.PaidAt = StatusPaid, ptr(now)
			msgs = append(msgs, InvoiceEvent(events.TypeInvoicePaid, inv, 0))
		}
	}
	return msgs, nil
}

// Void: open → void. Nothing is due any more. An invoice money was paid
// against (and not refunded) is not voided, as Stripe refuses a void with
// partial payments: the payment would stay with nothing owed for it.
func Void(inv *Invoice, now time.Time) ([]Event, error) {
	if inv.Status != StatusOpen {
		return nil, apperr.New(CodeInvoiceNotOpen, "invoice %s is %s; only an open invoice can be voided", inv.ID, inv.Status)
	}
	if kept := inv.AmountPaid - inv.AmountRefunded; kept > 0 {
		return nil, apperr.New(CodeInvoicePartiallyPaid,
			"invoice %s has %d paid against it; refund the payments first, or mark it uncollectible", inv.ID, kept).
			With("amount_paid", inv.AmountPaid).With("amount_refunded", inv.AmountRefunded)
	}
	inv.Status, inv.VoidedAt, inv.UpdatedAt, inv.AmountDue = StatusVoid, ptr(now), now, 0
	inv.NextPaymentAttemptAt = nil
	return []Event{InvoiceEvent(events.TypeInvoiceVoided, inv, 0)}, nil
}

// MarkUncollectible: open → uncollectible. The amount stays due: money
// that still arrives pays the invoice.
func MarkUncollectible(inv *Invoice, now time.Time) ([]Event, error) {
	if inv.Status != StatusOpen {
		return nil, apperr.New(CodeInvoiceNotOpen, "invoice %s is %s; only an open invoice can be marked uncollectible", inv.ID, inv.Status)
	}
	inv.Status, inv.MarkedUncollectibleAt, inv.UpdatedAt = StatusUncollectible, ptr(now), now
	inv.NextPaymentAttemptAt = nil
	return []Event{InvoiceEvent(events.TypeInvoiceUncollectible, inv, 0)}, nil
}

// Settle recomputes amount_due after amount_paid changed and marks the
// invoice paid when it is covered. A paid invoice never goes back.
func Settle(inv *Invoice, at, now time.Time) []Event {
	inv.UpdatedAt = now
	if inv.Status == StatusVoid {
		return nil // money reaching a void invoice is recorded; nothing becomes due
	}
	inv.AmountDue = max(inv.Total-inv.AmountPaid, 0)
	if inv.AmountDue > 0 || (inv.Status != StatusOpen && inv.Status != StatusUncollectible) {
		return nil
	}
	inv.Status, inv.PaidAt, inv.NextPaymentAttemptAt = StatusPaid, ptr(at), nil
	// The receipt goes to the customer with the paid fact.
	return []Event{InvoiceEvent(events.TypeInvoicePaid, inv, 0), Notification(events.NotifyInvoicePaid, inv)}
}

// FormatNumber renders an invoice number: PREFIX-YYYY-000123.
func FormatNumber(prefix string, year int, seq int64) string {
	s := strconv.FormatInt(seq, 10)
	if len(s) < 6 {
		s = strings.Repeat("0", 6-len(s)) + s
	}
	return prefix + "-" + strconv.Itoa(year) + "-" + s
}

func seriesKey(prefix string, year int) string { return prefix + "-" + strconv.Itoa(year) }

func RequireDraft(inv *Invoice) error {
	if inv.Status != StatusDraft {
		return apperr.New(CodeInvoiceNotDraft, "invoice %s is %s; only a draft can be changed", inv.ID, inv.Status)
	}
	return nil
}

// ScheduleCancel ends the subscription when its current period ends; one
// that has not billed anything yet ends when it would have started.
func ScheduleCancel(sub *Subscription) {
	if sub.PeriodsBilled == 0 || sub.CurrentPeriodEnd == nil {
		sub.CancelAt = ptr(sub.BillingStart)
		return
	}
	sub.CancelAt = ptr(*sub.CurrentPeriodEnd)
}

// EndSubscription ends sub at at (its pending lines are the caller's to
// invoice first: billing.endSubscription).
func EndSubscription(sub *Subscription, at, now time.Time) {
	sub.Status, sub.CanceledAt, sub.NextBillingAt, sub.UpdatedAt = SubCanceled, ptr(at), nil, now
	if sub.CancelAt == nil || sub.CancelAt.After(at) {
		sub.CancelAt = ptr(at)
	}
}

// CycleWith is the subscription's cycle under another plan (the old one).
func (s *Subscription) CycleWith(p Plan) Cycle {
	c := s.Cycle()
	c.Interval, c.Count = p.Interval, p.IntervalCount
	return c
}

func TaxesOf(snaps []TaxRateSnap) []LineTax {
	out := make([]LineTax, len(snaps))
	for i, t := range snaps {
		out[i] = LineTax{TaxRateSnap: t}
	}
	return out
}
