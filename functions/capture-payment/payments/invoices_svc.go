package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/readthrough"
)

// capture-payment knows the state of the invoices it is asked to collect:
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

// Event types of generate-invoice that carry invoice facts.
const (
	evInvoiceCreated       = "billfn.invoice.created"
	evInvoiceFinalized     = "billfn.invoice.finalized"
	evInvoicePaid          = "billfn.invoice.paid"
	evInvoiceVoided        = "billfn.invoice.voided"
	evInvoiceUncollectible = "billfn.invoice.uncollectible"
	evInvoiceOverdue       = "billfn.invoice.overdue"
	evInvoiceRetry         = "billfn.invoice.payment_retry_requested"
	// evUnapplied: generate-invoice found money of a payment the invoice
	// did not need (see docs/events.md).
	evUnapplied = "billfn.invoice.payment_unapplied"
)

// Invoice statuses, as generate-invoice defines them.
const (
	invDraft         = "draft"
	invOpen          = "open"
	invPaid          = "paid"
	invVoid          = "void"
	invUncollectible = "uncollectible"
)

// impliedStatus is the status each invoice event type describes.
var impliedStatus = map[string]string{evInvoiceCreated: invDraft, evInvoiceFinalized: invOpen, evInvoiceOverdue: invOpen,
	evInvoiceRetry: invOpen, evInvoicePaid: invPaid, evInvoiceVoided: invVoid, evInvoiceUncollectible: invUncollectible}

// invoiceRank orders the statuses: a status never moves backwards. paid
// and void are both final; the first one learnt stays.
func invoiceRank(status string) int {
	switch status {
	case invDraft:
		return 0
	case invOpen:
		return 1
	case invUncollectible:
		return 2
	case invPaid, invVoid:
		return 3
	}
	return -1
}

// payable reports whether an invoice in status may be paid: open, and
// uncollectible (generate-invoice's own rule: money that still arrives
// pays it).
func payable(status string) bool { return status == invOpen || status == invUncollectible }

// Problem codes of invoice payments.
const (
	codeInvoiceNotPayable   problem.Code = "invoice_not_payable"
	codeInvoiceInProgress   problem.Code = "invoice_payment_in_progress"
	codeExceedsInvoiceDue   problem.Code = "amount_exceeds_invoice_remaining"
	codeInvoiceLookupFailed problem.Code = "invoice_unavailable"
)

func init() {
	problem.Register(codeInvoiceNotPayable, http.StatusConflict, "The invoice cannot be paid")
	problem.Register(codeInvoiceInProgress, http.StatusConflict, "Another payment of this invoice is in progress")
	problem.Register(codeExceedsInvoiceDue, http.StatusUnprocessableEntity, "Amount exceeds what remains to pay on the invoice")
	problem.Register(codeInvoiceLookupFailed, http.StatusServiceUnavailable, "The invoice could not be looked up")
}

// InvoicesConfig configures the read-through of invoices: where
// generate-invoice answers and the service token to ask it with (the same
// secret as the accounts read-through).
type InvoicesConfig struct {
	InvoicesURL  string `envconfig:"INVOICES_URL" default:"http://gateway.openfaas:8080/function/generate-invoice"`
	ServiceToken string `envconfig:"SERVICE_TOKEN" secret:"service-token"`
}

// invoiceFacts is what capture-payment knows of an invoice.
type invoiceFacts struct {
	ID         string `json:"id"`
	InvoiceID  string `json:"invoice_id"` // the events' name of the id
	AccountID  string `json:"account_id"`
	UserID     string `json:"user_id"`
	Currency   string `json:"currency"`
	Total      int64  `json:"total"`
	AmountPaid int64  `json:"amount_paid"`
	AmountDue  int64  `json:"amount_due"`
	Status     string `json:"status"`
}

func (f *invoiceFacts) validate() error {
	if f.ID == "" {
		f.ID = f.InvoiceID
	}
	id, err := uuid.Parse(f.ID)
	if err != nil {
		return fmt.Errorf("invoice id %q is not a UUID", f.ID)
	}
	acct, err := uuid.Parse(f.AccountID)
	if err != nil {
		return fmt.Errorf("invoice %s: account_id %q is not a UUID", f.ID, f.AccountID)
	}
	cur, err := money.ParseCurrency(f.Currency)
	if err != nil {
		return fmt.Errorf("invoice %s: currency %q: %w", f.ID, f.Currency, err)
	}
	if invoiceRank(f.Status) < 0 {
		return fmt.Errorf("invoice %s: unknown status %q", f.ID, f.Status)
	}
	if f.Total < 0 || f.AmountPaid < 0 || f.AmountDue < 0 {
		return fmt.Errorf("invoice %s: negative amounts", f.ID)
	}
	if u, err := uuid.Parse(f.UserID); err == nil {
		f.UserID = u.String()
	} else {
		f.UserID = ""
	}
	f.ID, f.InvoiceID, f.AccountID, f.Currency = id.String(), id.String(), acct.String(), string(cur)
	return nil
}

// invoiceSource reads an invoice from generate-invoice (nil: none
// configured; then only events fill the read model).
type invoiceSource interface {
	Invoice(ctx context.Context, id string) (invoiceFacts, error)
}

type httpInvoices struct{ c *readthrough.Client }

func (h httpInvoices) Invoice(ctx context.Context, id string) (invoiceFacts, error) {
	var f invoiceFacts
	err := h.c.Get(ctx, "invoices", id, &f)
	return f, err
}

// source returns the read-through cfg describes, or nil.
func (cfg InvoicesConfig) source() invoiceSource {
	c := readthrough.New(cfg.InvoicesURL, cfg.ServiceToken)
	if c == nil {
		return nil
	}
	return httpInvoices{c}
}

// registerInvoices wires the read model: the facts events, and the
// unapplied money generate-invoice reports.
func (s *service) registerInvoices(rc *events.Receiver, cfg InvoicesConfig) {
	if s.invoiceSource == nil {
		s.invoiceSource = cfg.source()
	}
	for _, typ := range []string{evInvoiceCreated, evInvoicePaid, evInvoiceVoided, evInvoiceUncollectible, evInvoiceOverdue} {
		rc.On(typ, s.onInvoiceFacts)
	}
	rc.On(evUnapplied, s.onPaymentUnapplied)
}

// onInvoiceFacts applies an invoice event to the read model.
func (s *service) onInvoiceFacts(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	return s.learnInvoice(ctx, tx, ev)
}

// learnInvoice stores the facts an invoice event carries, accepted only
// from generate-invoice (anything else is parked, never applied).
func (s *service) learnInvoice(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	if ev.Source() != events.Source(invoiceOwner) {
		return events.Permanent(fmt.Errorf("%s from %q: invoice facts are accepted only from %s", ev.Type(), ev.Source(), invoiceOwner))
	}
	var f invoiceFacts
	if err := events.Decode(ev, &f); err != nil {
		return err
	}
	if f.Status == "" { // every type implies its status
		f.Status = impliedStatus[ev.Type()]
	}
	if f.Total == 0 {
		f.Total = f.AmountPaid + f.AmountDue
	}
	if err := f.validate(); err != nil {
		return events.Permanent(err)
	}
	_, err := putInvoice(ctx, tx, f, "event")
	return err
}

// putInvoice stores f unless what is stored is as far along: a higher
// status rank wins; within a rank (and the same status) a higher
// amount_paid. It reports whether f was stored.
func putInvoice(ctx context.Context, q db, f invoiceFacts, source string) (bool, error) {
	var stored bool
	err := q.QueryRow(ctx, `INSERT INTO payment_invoices AS i (id, account_id, user_id, currency, total, amount_paid,
			amount_due, status, status_rank, source, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
		ON CONFLICT (id) DO UPDATE SET account_id = EXCLUDED.account_id, user_id = coalesce(EXCLUDED.user_id, i.user_id),
			currency = EXCLUDED.currency, total = EXCLUDED.total, amount_paid = greatest(i.amount_paid, EXCLUDED.amount_paid),
			amount_due = EXCLUDED.amount_due, status = EXCLUDED.status, status_rank = EXCLUDED.status_rank,
			source = EXCLUDED.source, updated_at = now()
		WHERE i.status_rank < EXCLUDED.status_rank
			OR (i.status_rank = EXCLUDED.status_rank AND i.status = EXCLUDED.status AND i.amount_paid < EXCLUDED.amount_paid)
			OR (i.status = 'draft' AND EXCLUDED.status = 'draft')
		RETURNING true`, f.ID, f.AccountID, payments.Nullable(f.UserID), f.Currency, f.Total, f.AmountPaid, f.AmountDue,
		f.Status, invoiceRank(f.Status), source).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return stored, err
}

// lockInvoice reads and locks the facts of invoice id; ok is false when
// the read model does not know it.
func lockInvoice(ctx context.Context, tx pgx.Tx, id string) (f invoiceFacts, ok bool, err error) {
	var user *string
	err = tx.QueryRow(ctx, `SELECT id, account_id, user_id, currency, total, amount_paid, amount_due, status
		FROM payment_invoices WHERE id = $1 FOR UPDATE`, id).
		Scan(&f.ID, &f.AccountID, &user, &f.Currency, &f.Total, &f.AmountPaid, &f.AmountDue, &f.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return invoiceFacts{}, false, nil
	}
	f.InvoiceID, f.UserID = f.ID, payments.Str(user)
	return f, err == nil, err
}

// invoiceFor locks the facts of invoice id in tx, reading them through
// from generate-invoice when the read model does not know the invoice yet.
func (s *service) invoiceFor(ctx context.Context, tx pgx.Tx, id string) (invoiceFacts, error) {
	f, ok, err := lockInvoice(ctx, tx, id)
	if err != nil || ok {
		return f, err
	}
	noSuch := problem.Invalid(problem.Field("invoice_id", "no such invoice"))
	if s.invoiceSource == nil {
		return invoiceFacts{}, noSuch
	}
	f, err = s.invoiceSource.Invoice(ctx, id)
	if errors.Is(err, readthrough.ErrUnknown) {
		return invoiceFacts{}, noSuch
	}
	if err == nil {
		err = f.validate()
	}
	if err == nil && f.ID != id {
		err = fmt.Errorf("generate-invoice answered for invoice %s, not %s", f.ID, id)
	}
	if err != nil {
		return invoiceFacts{}, &problem.Error{Code: codeInvoiceLookupFailed, RetryAfter: time.Second,
			Detail: "the invoice could not be looked up; retry later", Err: err}
	}
	if _, err := putInvoice(ctx, tx, f, "read_through"); err != nil {
		return invoiceFacts{}, err
	}
	f, _, err = lockInvoice(ctx, tx, id)
	return f, err
}

// invoiceLoad is what capture-payment's own payments hold on an invoice
// besides p: captured, and whether one is in flight.
type invoiceLoad struct {
	captured int64
	inFlight int
}

func loadOfInvoice(ctx context.Context, tx pgx.Tx, invoiceID, except string) (invoiceLoad, error) {
	var l invoiceLoad
	err := tx.QueryRow(ctx, `SELECT coalesce(sum(amount_captured), 0)::bigint,
			count(*) FILTER (WHERE status IN ('processing', 'requires_action', 'requires_capture') OR pending_op = 'confirm')
		FROM payments WHERE invoice_id = $1 AND id <> $2`, invoiceID, except).Scan(&l.captured, &l.inFlight)
	return l, err
}

// gateInvoice decides, inside tx and before any gateway call, whether p
// may be charged for the invoice it names (nothing to decide without
// one). It locks the invoice's facts row, so two payments of one invoice
// are decided one after the other and the second sees the first in
// flight. creating is true for a new payment: if p exists already the
// request is a re-run and was decided before.
//
// Refused: an invoice that is not payable (409 invoice_not_payable, with
// its status), another account's or another currency's invoice (422
// naming account_id or currency), another payment of the invoice in
// flight (409 invoice_payment_in_progress, Retry-After), and an amount
// beyond what remains (422 amount_exceeds_invoice_remaining; 409
// invoice_not_payable when nothing remains). What remains counts
// capture-payment's own captures, which generate-invoice may not have
// reported yet, as well as the invoice's amount_paid.
func (s *service) gateInvoice(ctx context.Context, tx pgx.Tx, p *payments.Payment, creating bool) error {
	if p.InvoiceID == nil {
		return nil
	}
	if creating {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payments WHERE id = $1)`, p.ID).Scan(&exists); err != nil || exists {
			return err
		}
	}
	f, err := s.invoiceFor(ctx, tx, *p.InvoiceID)
	if err != nil {
		return err
	}
	if !payable(f.Status) {
		return problem.New(codeInvoiceNotPayable, "invoice %s is %s: only an open or uncollectible invoice can be paid", f.ID, f.Status).
			With("invoice_id", f.ID).With("status", f.Status)
	}
	var v problem.Validator
	v.Check(f.AccountID == p.AccountID, "account_id", "must be the invoice's account, "+f.AccountID)
	v.Check(strings.EqualFold(f.Currency, string(p.Currency)), "currency", "must be the invoice's currency, "+f.Currency)
	if err := v.Err(); err != nil {
		return err
	}
	l, err := loadOfInvoice(ctx, tx, f.ID, p.ID)
	if err != nil {
		return err
	}
	if l.inFlight > 0 {
		return (&problem.Error{Code: codeInvoiceInProgress, RetryAfter: 2 * time.Second,
			Detail: "another payment of invoice " + f.ID + " is in progress; retry when it has finished"}).With("invoice_id", f.ID)
	}
	paid := max(f.AmountPaid, l.captured)
	remaining := f.Total - paid
	if remaining <= 0 {
		return problem.New(codeInvoiceNotPayable, "invoice %s has nothing left to pay: %d of its %d %s is paid", f.ID, paid, f.Total, f.Currency).
			With("invoice_id", f.ID).With("status", f.Status).With("amount_remaining", 0)
	}
	if p.Amount > remaining {
		return (&problem.Error{Code: codeExceedsInvoiceDue, Detail: fmt.Sprintf("invoice %s has %d %s left to pay", f.ID, remaining, f.Currency),
			Errors: []problem.FieldError{problem.Field("amount", fmt.Sprintf("must be at most %d, what remains to pay on the invoice", remaining))}}).
			With("invoice_id", f.ID).With("amount_remaining", remaining)
	}
	return nil
}

// refused reports whether err is the answer "this payment cannot be made"
// (a 4xx problem): for event-driven collection it is an outcome, not a
// poison event.
func refused(err error) bool {
	var pe *problem.Error
	return errors.As(err, &pe) && pe.Status() < 500
}

// unappliedData is billfn.invoice.payment_unapplied, as generate-invoice emits it.
type unappliedData struct {
	PaymentID string `json:"payment_id"`
	InvoiceID string `json:"invoice_id"`
	AccountID string `json:"account_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reason    string `json:"reason"`
}

// onPaymentUnapplied reverses the settlement of the part of a payment its
// invoice did not need: SYS-REVENUE → the payment's account (kind
// invoice_unapplied), so revenue keeps only what the invoice was owed and
// the customer's account keeps the rest as a credit. The posting's id is
// derived from the payment, so a redelivery posts nothing twice.
func (s *service) onPaymentUnapplied(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	if ev.Source() != events.Source(invoiceOwner) {
		return events.Permanent(fmt.Errorf("%s from %q: accepted only from %s", ev.Type(), ev.Source(), invoiceOwner))
	}
	var u unappliedData
	if err := events.Decode(ev, &u); err != nil {
		return err
	}
	if _, err := uuid.Parse(u.PaymentID); err != nil || u.Amount <= 0 {
		return events.Permanent(fmt.Errorf("%s %s: no payment id or amount", ev.Type(), ev.ID()))
	}
	p, err := getPayment(ctx, tx, u.PaymentID, true)
	if errors.Is(err, payments.ErrNotFound) {
		// Not one of ours (generate-invoice reports every payment source).
		return nil
	}
	if err != nil {
		return err
	}
	if p.InvoiceID == nil || !strings.EqualFold(u.Currency, string(p.Currency)) {
		return events.Permanent(fmt.Errorf("%s %s does not match payment %s", ev.Type(), ev.ID(), p.ID))
	}
	// Never more than this payment settled.
	amount := min(u.Amount, p.AmountCaptured)
	slog.WarnContext(ctx, "payment not needed by its invoice: credited to the account", "payment_id", p.ID,
		"invoice_id", p.Invoice(), "account_id", p.AccountID, "amount", amount, "currency", string(p.Currency), "reason", u.Reason)
	if err := setUnapplied(ctx, tx, p.ID, amount); err != nil {
		return err
	}
	e := emitter{ctx: ctx}
	e.posting(p, kindUnapplied, 1, "revenue", "account", amount, "")
	return e.flush(tx)
}

// kindUnapplied is the posting that reverses an unneeded settlement.
const kindUnapplied = "invoice_unapplied"

// insertCharging records a new payment and its first attempt before the
// gateway is called (insertConfirming); a payment for an invoice first
// passes gateInvoice in the same transaction, under the invoice's lock.
func (s *service) insertCharging(ctx context.Context, run txRunner, p *payments.Payment, a payments.Attempt) (bool, error) {
	if p.InvoiceID == nil {
		return insertConfirming(ctx, run.db(), p, a)
	}
	var inserted bool
	err := run.run(ctx, func(tx pgx.Tx) error {
		if err := s.gateInvoice(ctx, tx, p, true); err != nil {
			return err
		}
		var err error
		inserted, err = insertConfirming(ctx, tx, p, a)
		return err
	})
	return inserted, err
}
