package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/readthrough"
)

// Capture-payment knows the state of the invoices it is asked to collect:
// a read model (table payment_invoices) fed by generate-invoice's invoice
// events on billing-events, read through from generate-invoice's
// GET /invoices/{id} for an invoice whose event has not arrived yet. A
// payment naming an invoice is checked against it before any gateway call
// (see gateInvoice), under a lock on the invoice's row, so at most one
// payment per invoice is in flight. Money that lands on an invoice anyway
// (a late webhook, a race with generate-invoice's POST /invoices/{id}/pay)
// is found by generate-invoice, which emits billfn.invoice.payment_unapplied; the
// settlement of that part is then reversed (onPaymentUnapplied) and the
// money stays on the customer's account as a credit.

// invoiceOwner is the only source invoice facts are accepted from.
const invoiceOwner = "generate-invoice"

// Invoice statuses, as generate-invoice defines them.
const (
	invDraft         = "draft"
	invOpen          = "open"
	invPaid          = "paid"
	invVoid          = "void"
	invUncollectible = "uncollectible"
)

// Problem codes of invoice
const (
	CodeInvoiceNotPayable   apperr.Code = "invoice_not_payable"
	CodeInvoiceInProgress   apperr.Code = "invoice_payment_in_progress"
	CodeExceedsInvoiceDue   apperr.Code = "amount_exceeds_invoice_remaining"
	CodeInvoiceLookupFailed apperr.Code = "invoice_unavailable"
)

// OnInvoiceFacts applies an invoice event to the read model.
func (s *Service) OnInvoiceFacts(ctx context.Context, run Runner, ev events.Event) error {
	tx := run.DB()
	return s.learnInvoice(ctx, tx, ev)
}

// learnInvoice stores the facts an invoice event carries, accepted only
// from generate-invoice (anything else is parked, never applied).
func (s *Service) learnInvoice(ctx context.Context, tx Tx, ev events.Event) error {
	f, err := invoiceFactsOf(ev)
	if err != nil {
		return err
	}
	_, err = tx.PutInvoice(ctx, f, "event")
	return err
}

// invoiceFactsOf is what an invoice event says of its invoice, checked:
// only generate-invoice's word is taken.
func invoiceFactsOf(ev events.Event) (InvoiceFacts, error) {
	var f InvoiceFacts
	if !events.From(ev, invoiceOwner) {
		return f, events.Permanent(fmt.Errorf("%s from %q: invoice facts are accepted only from %s", ev.Type(), ev.Source(), invoiceOwner))
	}
	if err := events.Decode(ev, &f); err != nil {
		return f, err
	}
	if f.Status == "" { // every type implies its status
		f.Status = impliedStatus[ev.Type()]
	}
	if f.Total == 0 {
		f.Total = f.AmountPaid + f.AmountDue
	}
	if err := f.validate(); err != nil {
		return f, events.Permanent(err)
	}
	return f, nil
}

// invoiceFor locks the facts of invoice id in tx, reading them through
// from generate-invoice when the read model does not know the invoice yet,
// or knows it only as a draft: a draft is never payable, and the
// billfn.invoice.finalized event of an invoice finalized a moment ago may
// still be on its way (create, finalize and pay in a row, as the README
// does), so the owner is asked before a draft is refused.
func (s *Service) invoiceFor(ctx context.Context, tx Tx, id string) (InvoiceFacts, error) {
	f, ok, err := tx.LockInvoice(ctx, id)
	if err != nil {
		return f, err
	}
	if ok {
		if f.Status != invDraft || s.Invoices == nil {
			return f, nil
		}
		fresh, err := s.Invoices.Invoice(ctx, id)
		if err == nil {
			err = fresh.validate()
		}
		if err != nil || fresh.ID != id {
			// The stored draft stands: refused as not payable, which
			// is what the owner said last.
			slog.DebugContext(ctx, "draft invoice not read through", "invoice_id", id, "err", err)
			return f, nil
		}
		if _, err := tx.PutInvoice(ctx, fresh, "read_through"); err != nil {
			return InvoiceFacts{}, err
		}
		f, _, err = tx.LockInvoice(ctx, id)
		return f, err
	}
	noSuch := errNoSuchInvoice()
	if s.Invoices == nil {
		return InvoiceFacts{}, noSuch
	}
	f, err = s.Invoices.Invoice(ctx, id)
	if errors.Is(err, readthrough.ErrUnknown) {
		return InvoiceFacts{}, noSuch
	}
	if err == nil {
		err = f.validate()
	}
	if err == nil && f.ID != id {
		err = fmt.Errorf("generate-invoice answered for invoice %s, not %s", f.ID, id)
	}
	if err != nil {
		return InvoiceFacts{}, &apperr.Error{Code: CodeInvoiceLookupFailed, RetryAfter: time.Second,
			Detail: "the invoice could not be looked up; retry later", Err: err}
	}
	if _, err := tx.PutInvoice(ctx, f, "read_through"); err != nil {
		return InvoiceFacts{}, err
	}
	f, _, err = tx.LockInvoice(ctx, id)
	return f, err
}

// gateInvoice decides, inside tx and before any gateway call, whether p
// may be charged for the invoice it names (nothing to decide without
// one). It locks the invoice's facts row, so two payments of one invoice
// are decided one after the other and the second sees the first in
// flight. creating is true for a new payment: if p exists already the
// request is a re-run and was decided before.
//
// Refused: another account's invoice (422 naming invoice_id, as an
// unknown one: nothing of it is told), an invoice that is not payable
// (409 invoice_not_payable, with its status), one in another currency (422
// naming currency), another payment of the invoice in
// flight (409 invoice_payment_in_progress, Retry-After), and an amount
// beyond what remains (422 amount_exceeds_invoice_remaining; 409
// invoice_not_payable when nothing remains). What remains counts
// Capture-payment's own captures, which generate-invoice may not have
// reported yet, as well as the invoice's amount_paid.
// errNoSuchInvoice answers an invoice that does not exist, and one of
// another account alike.
func errNoSuchInvoice() error { return apperr.Invalid(apperr.Field("invoice_id", "no such invoice")) }

func (s *Service) gateInvoice(ctx context.Context, tx Tx, p *Payment, creating bool) error {
	if p.InvoiceID == nil {
		return nil
	}
	if creating {
		if exists, err := tx.PaymentExists(ctx, p.ID); err != nil || exists {
			return err
		}
	}
	f, err := s.invoiceFor(ctx, tx, *p.InvoiceID)
	if err != nil {
		return err
	}
	if f.AccountID != p.AccountID {
		// Another account's invoice is answered as one that does not
		// exist, before anything of it (status, currency) is compared:
		// the payment's account is the caller's, the invoice may be
		// someone else's.
		return errNoSuchInvoice()
	}
	if !payable(f.Status) {
		return apperr.New(CodeInvoiceNotPayable, "invoice %s is %s: only an open or uncollectible invoice can be paid", f.ID, f.Status).
			With("invoice_id", f.ID).With("invoice_status", f.Status)
	}
	if !strings.EqualFold(f.Currency, string(p.Currency)) {
		return apperr.Invalid(apperr.Field("currency", "must be the invoice's currency, "+f.Currency))
	}
	l, err := tx.InvoiceLoad(ctx, f.ID, p.ID)
	if err != nil {
		return err
	}
	if l.InFlight > 0 {
		return (&apperr.Error{Code: CodeInvoiceInProgress, RetryAfter: 2 * time.Second,
			Detail: "another payment of invoice " + f.ID + " is in progress; retry when it has finished"}).With("invoice_id", f.ID)
	}
	paid := max(f.AmountPaid, l.Captured)
	remaining := f.Total - paid
	if remaining <= 0 {
		return apperr.New(CodeInvoiceNotPayable, "invoice %s has nothing left to pay: %d of its %d %s is paid", f.ID, paid, f.Total, f.Currency).
			With("invoice_id", f.ID).With("invoice_status", f.Status).With("amount_remaining", 0)
	}
	if p.Amount > remaining {
		return (&apperr.Error{Code: CodeExceedsInvoiceDue, Detail: fmt.Sprintf("invoice %s has %d %s left to pay", f.ID, remaining, f.Currency),
			Errors: []apperr.FieldError{apperr.Field("amount", fmt.Sprintf("must be at most %d, what remains to pay on the invoice", remaining))}}).
			With("invoice_id", f.ID).With("amount_remaining", remaining)
	}
	return nil
}

// refused reports whether err is the answer "this payment cannot be made"
// (a refusal, which the api answers with a 4xx): for event-driven
// collection it is an outcome, not a poison event.
func (s *Service) refused(err error) bool {
	return err != nil && s.Refused != nil && s.Refused(err)
}

// OnPaymentUnapplied reverses the settlement of the part of a payment its
// invoice did not need: SYS-REVENUE → the payment's account (kind
// invoice_unapplied), so revenue keeps only what the invoice was owed and
// the customer's account keeps the rest as a credit. The posting's id is
// derived from the payment, so a redelivery posts nothing twice.
func (s *Service) OnPaymentUnapplied(ctx context.Context, run Runner, ev events.Event) error {
	tx := run.DB()
	if !events.From(ev, invoiceOwner) {
		return events.Permanent(fmt.Errorf("%s from %q: accepted only from %s", ev.Type(), ev.Source(), invoiceOwner))
	}
	var u events.PaymentUnapplied
	if err := events.Decode(ev, &u); err != nil {
		return err
	}
	if !ids.Valid(u.PaymentID) || u.Amount <= 0 {
		return events.Permanent(fmt.Errorf("%s %s: no payment id or amount", ev.Type(), ev.ID()))
	}
	p, err := tx.Payment(ctx, u.PaymentID, true)
	if errors.Is(err, ErrNotFound) {
		// Not one of ours (generate-invoice reports every payment source).
		return nil
	}
	if err != nil {
		return err
	}
	if p.InvoiceID == nil || !strings.EqualFold(u.Currency, string(p.Currency)) {
		return events.Permanent(fmt.Errorf("%s %s does not match payment %s", ev.Type(), ev.ID(), p.ID))
	}
	// Never more than this payment settled, nor what revenue still holds
	// of it beyond what the invoice kept: a refund made before this report
	// (HoldSource knew of no credit then) took the money from revenue, and
	// the customer has it back already. What is credited is what later
	// refunds may take from the account (HoldSource).
	fromRevenue, err := tx.RefundedFromRevenue(ctx, p.ID)
	if err != nil {
		return err
	}
	// What a refund on revenue took (succeeded) or is to take (pending) is
	// withheld from the credit, and credited after all if that refund
	// fails, before it succeeded (settleRefund) or after (reverseRefund).
	if err := tx.Withhold(ctx, p.ID, min(u.Amount, p.AmountCaptured)); err != nil {
		return err
	}
	amount := min(u.Amount, p.AmountCaptured) - fromRevenue
	if amount <= 0 {
		slog.WarnContext(ctx, "payment not needed by its invoice, refunded already: nothing to credit", "payment_id", p.ID,
			"invoice_id", p.Invoice(), "account_id", p.AccountID, "unapplied", u.Amount, "refunded", fromRevenue, "reason", u.Reason)
		return nil
	}
	slog.WarnContext(ctx, "payment not needed by its invoice: credited to the account", "payment_id", p.ID,
		"invoice_id", p.Invoice(), "account_id", p.AccountID, "amount", amount, "currency", string(p.Currency), "reason", u.Reason)
	if err := tx.SetUnapplied(ctx, p.ID, amount); err != nil {
		return err
	}
	e := emitter{ctx: ctx}
	e.posting(p, KindUnapplied, 1, "revenue", "account", amount, "")
	return e.flush(tx)
}

// KindUnapplied is the posting that reverses an unneeded settlement.
const KindUnapplied = events.KindInvoiceUnapplied

// insertCharging records a new payment and its first attempt before the
// gateway is called (insertConfirming); a payment for an invoice first
// passes gateInvoice in the same transaction, under the invoice's lock.
// g guards the insert by the account's facts (CreateFor: never with an
// invoice).
func (s *Service) insertCharging(ctx context.Context, run Runner, p *Payment, a Attempt, g *AccountGuard) (bool, error) {
	if g != nil && p.InvoiceID == nil {
		return run.DB().InsertConfirmingFor(ctx, p, a, *g)
	}
	if p.InvoiceID == nil {
		return run.DB().InsertConfirming(ctx, p, a)
	}
	var inserted bool
	err := run.Run(ctx, func(tx Tx) error {
		if err := s.gateInvoice(ctx, tx, p, true); err != nil {
			return err
		}
		var err error
		inserted, err = tx.InsertConfirming(ctx, p, a)
		return err
	})
	return inserted, err
}
