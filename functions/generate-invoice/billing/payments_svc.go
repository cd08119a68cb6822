package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/money"
)

// Payments of invoices, as capture-payment's events report them (the api
// decodes each event and calls the use case in the receiver's
// transaction).

// paymentInvoice loads and locks the invoice a payment event names.
// ok is false for a payment that is not for an invoice. An invoice that
// does not exist makes the event malformed: it is parked with the reason,
// counted and logged. The currency is the caller's to compare.
func (s *Service) paymentInvoice(ctx context.Context, tx Tx, ev events.Event, invoiceID *string) (*invoicing.Invoice, bool, error) {
	if invoiceID == nil || *invoiceID == "" {
		return nil, false, nil
	}
	inv, err := tx.Invoice(ctx, *invoiceID, true)
	var pe *apperr.Error
	if errors.As(err, &pe) && pe.Code == apperr.NotFound {
		PaymentAnomalies.WithLabelValues(ev.Type(), "invoice_not_found").Inc()
		return nil, false, events.Permanent(fmt.Errorf("%s %s names invoice %s, which does not exist", ev.Type(), ev.ID(), *invoiceID))
	}
	if err != nil {
		return nil, false, err
	}
	return inv, true, nil
}

// PaymentAnomalies counts payment events that could not apply to their
// invoice as they are: money the invoice did not need (unapplied, by
// reason), a currency that is not the invoice's, an invoice that does not
// exist. Each is also logged at warn and, for money, announced as
// billfn.invoice.payment_unapplied: none is dropped silently.
var PaymentAnomalies = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "generate_invoice_payment_anomalies_total",
	Help: "Payment events that did not apply to their invoice as they are, by event type and reason (invoice_paid, invoice_void, overpayment, currency_mismatch, invoice_not_found).",
}, []string{"type", "reason"})

// unapplied records that amount of payment p reached inv without being
// needed: counted, logged at warn, announced.
func (s *Service) unapplied(ctx context.Context, inv *invoicing.Invoice, p *events.PaymentCaptured, amount int64, cur money.Currency, reason string) invoicing.Event {
	PaymentAnomalies.WithLabelValues(events.TypePaymentCaptured, reason).Inc()
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

// PaymentCaptured adds a capture to the invoice's amount_paid, never
// beyond its total. The payment's cumulative amount_captured is kept per
// payment and only ever grows, so duplicates and reordered captures change
// nothing. Money the invoice does not need (it is paid or void already,
// the capture exceeds what is due, or it is in another currency) is
// recorded with the payment, left out of amount_paid, and announced as
// billfn.invoice.payment_unapplied.
func (s *Service) PaymentCaptured(ctx context.Context, tx Tx, ev events.Event, p *events.PaymentCaptured) error {
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
		now := s.Clock()
		inv.AmountPaid += applied // ≤ total: no overflow
		at := ev.Time().UTC()
		if at.IsZero() || at.After(now) {
			at = now
		}
		msgs = invoicing.Settle(inv, at, now)
		if err := tx.SaveInvoice(ctx, inv); err != nil {
			return err
		}
	}
	if rest := delta - applied; rest > 0 {
		msgs = append(msgs, s.unapplied(ctx, inv, p, rest, cur, reason))
	}
	if err := tx.Emit(ctx, msgs); err != nil {
		return err
	}
	s.touched(ctx, []string{inv.ID})
	return nil
}

// PaymentFailed records a failed attempt on an unpaid invoice. A failure
// that arrives after the invoice was paid changes nothing.
func (s *Service) PaymentFailed(ctx context.Context, tx Tx, ev events.Event, p *events.PaymentFailed) error {
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
	inv.UpdatedAt = s.Clock()
	if err := tx.SaveInvoice(ctx, inv); err != nil {
		return err
	}
	// The customer hears of it (what failed, what to do) once per failure event.
	if err := tx.Emit(ctx, []invoicing.Event{invoicing.PaymentFailedNotice(inv, failureText(p))}); err != nil {
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
	PaymentAnomalies.WithLabelValues(ev.Type(), "currency_mismatch").Inc()
	slog.WarnContext(ctx, "payment event in another currency than its invoice: not applied", "type", ev.Type(), "id", ev.ID(),
		"payment_id", paymentID, "invoice_id", inv.ID, "currency", string(cur), "invoice_currency", string(inv.Currency))
	return nil
}

// RefundSucceeded records a refund of an invoice payment, once per
// refund id. The invoice keeps its status (as in Stripe, a refund does not
// reopen an invoice); amount_refunded shows it.
func (s *Service) RefundSucceeded(ctx context.Context, tx Tx, ev events.Event, r *events.Refund) error {
	inv, err := s.refundInvoice(ctx, tx, ev, r)
	if err != nil || inv == nil {
		return err
	}
	fresh, err := tx.RecordRefund(ctx, r.RefundID, inv.ID, r.PaymentID, r.Amount, string(inv.Currency))
	if err != nil || !fresh {
		return err
	}
	if inv.AmountRefunded, err = money.Add(inv.AmountRefunded, r.Amount); err != nil {
		return events.Permanent(err)
	}
	inv.UpdatedAt = s.Clock()
	if err := tx.SaveInvoice(ctx, inv); err != nil {
		return err
	}
	s.touched(ctx, []string{inv.ID})
	return nil
}

// RefundReversed takes back from amount_refunded a refund that had
// succeeded and then failed (billfn.refund.failed, reversed): the money
// is the merchant's again, paid against the invoice, so an invoice it
// pays is not voided (invoicing.Void). Once per refund id; a refund whose
// success was never seen under its own id (capture-payment announced it
// inside another refund's amount) is taken back all the same, and its
// success, should it arrive later, is not counted. A failure of a refund
// that never succeeded moved no money: nothing changes.
func (s *Service) RefundReversed(ctx context.Context, tx Tx, ev events.Event, r *events.Refund) error {
	if !r.Reversed {
		return nil
	}
	inv, err := s.refundInvoice(ctx, tx, ev, r)
	if err != nil || inv == nil {
		return err
	}
	counted, fresh, err := tx.ReverseRefund(ctx, r.RefundID, inv.ID, r.PaymentID, r.Amount, string(inv.Currency))
	if err != nil || !fresh {
		return err
	}
	inv.AmountRefunded = max(inv.AmountRefunded-counted, 0)
	inv.UpdatedAt = s.Clock()
	if err := tx.SaveInvoice(ctx, inv); err != nil {
		return err
	}
	s.touched(ctx, []string{inv.ID})
	return nil
}

// refundInvoice is the invoice a refund event applies to, nil when it
// applies to none (not an invoice payment, another currency): the checks
// RefundSucceeded and RefundReversed share.
func (s *Service) refundInvoice(ctx context.Context, tx Tx, ev events.Event, r *events.Refund) (*invoicing.Invoice, error) {
	inv, ok, err := s.paymentInvoice(ctx, tx, ev, r.InvoiceID)
	if err != nil || !ok {
		return nil, err
	}
	if cur := money.Currency(r.Currency); cur != "" && cur != inv.Currency {
		return nil, mismatch(ctx, ev, inv, r.PaymentID, cur)
	}
	if r.RefundID == "" || r.Amount <= 0 {
		return nil, events.Permanent(fmt.Errorf("%s %s has no refund_id or amount", ev.Type(), ev.ID()))
	}
	return inv, nil
}
