package billing

import (
	"context"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/outbox"
)

// Tx is what the use cases need from the store inside one transaction.
// Package store implements it; every SQL statement lives there.
type Tx interface {
	// ReserveNumbers reserves n consecutive invoice numbers of a series.
	invoicing.Numberer
	// Invoice reads invoice id (locked when lock is set), a not_found
	// error when there is none.
	Invoice(ctx context.Context, id string, lock bool) (*invoicing.Invoice, error)
	// InvoiceHead reads invoice id without its lines (Lines nil), a
	// not_found error when there is none.
	InvoiceHead(ctx context.Context, id string) (*invoicing.Invoice, error)
	// InvoiceHeads reads the invoices of ids that exist without their
	// lines, in one statement.
	InvoiceHeads(ctx context.Context, ids []string) (map[string]*invoicing.Invoice, error)
	// SaveInvoice writes a changed invoice (not its lines).
	SaveInvoice(ctx context.Context, inv *invoicing.Invoice) error
	// InsertInvoices writes new invoices and their lines.
	InsertInvoices(ctx context.Context, invs []*invoicing.Invoice) error
	// ReplaceLines rewrites the lines of an invoice.
	ReplaceLines(ctx context.Context, inv *invoicing.Invoice) error
	// TaxRates returns the rates of ids that exist.
	TaxRates(ctx context.Context, ids []string) ([]invoicing.TaxRate, error)
	// Coupon returns coupon id (locked when lock is set), a not_found
	// error when there is none.
	Coupon(ctx context.Context, id string, lock bool) (invoicing.Coupon, error)
	// InsertTaxRate and InsertCoupon add to the catalogue (a coupon id
	// taken is a coupon_exists error).
	InsertTaxRate(ctx context.Context, r invoicing.TaxRate) error
	InsertCoupon(ctx context.Context, c invoicing.Coupon) error
	// RedeemCoupon counts n more redemptions of a coupon (n < 0 gives
	// them back, never below zero).
	RedeemCoupon(ctx context.Context, id string, n int) error
	// RecordOutOfBandPayment records a payment made outside billfn.
	RecordOutOfBandPayment(ctx context.Context, invoiceID, paymentID string, amount int64, cur, reference string) error
	// CapturedSoFar is what a payment captured for an invoice so far (0
	// for a payment not seen yet); RecordCapture records its new
	// cumulative amount.
	CapturedSoFar(ctx context.Context, invoiceID, paymentID string) (int64, error)
	RecordCapture(ctx context.Context, invoiceID, paymentID string, captured int64, cur string) error
	// RecordFailure counts a failed attempt of a payment for an invoice.
	RecordFailure(ctx context.Context, invoiceID, paymentID, cur, reason string) error
	// RecordRefund records a refund once per refund id; false for one
	// seen before.
	RecordRefund(ctx context.Context, refundID, invoiceID, paymentID string, amount int64, cur string) (bool, error)
	// ReverseRefund records that a refund which had succeeded failed
	// after all: counted is what amount_refunded counted of it; fresh
	// false for one reversed before.
	ReverseRefund(ctx context.Context, refundID, invoiceID, paymentID string, amount int64, cur string) (counted int64, fresh bool, err error)
	// LockOverdue locks up to limit open invoices due before today, not
	// yet flagged overdue; LockDunningDue those whose next dunning step
	// is due at now.
	LockOverdue(ctx context.Context, today time.Time, limit int) ([]*invoicing.Invoice, error)
	LockDunningDue(ctx context.Context, now time.Time, limit int) ([]*invoicing.Invoice, error)
	// InsertPendingRequests records invoice requests of source as
	// pending, made by a customer when byCustomer is set.
	InsertPendingRequests(ctx context.Context, source string, ids, owners, accounts []string, byCustomer bool, now time.Time) error
	// CustomerRequests is the set of those of the requests ids of source
	// a customer made.
	CustomerRequests(ctx context.Context, source string, ids []string) (map[string]bool, error)
	// Send writes ready-made events into the outbox of the transaction.
	Send(ctx context.Context, msgs ...outbox.Message) error
	// CompleteRequests records how invoice requests ended.
	CompleteRequests(ctx context.Context, outs []RequestOutcome, now time.Time) error
	// InsertNotification logs a notification; false when its event was
	// logged before. Notification reads one (locked when lock is set).
	InsertNotification(ctx context.Context, n *notify.Notification) (bool, error)
	// InsertNotifications is InsertNotification for several, in one round
	// trip: fresh[i] is InsertNotification's answer for ns[i].
	InsertNotifications(ctx context.Context, ns []*notify.Notification) (fresh []bool, err error)
	Notification(ctx context.Context, id string, lock bool) (*notify.Notification, error)
	// Account reads the read model of the accounts billed in the
	// transaction; ok is false for an account it does not hold (yet).
	Account(ctx context.Context, id string) (f accounts.Facts, ok bool, err error)
	// Subscription reads subscription id in the transaction (not_found
	// when there is none).
	Subscription(ctx context.Context, id string) (*invoicing.Subscription, error)
	// InsertSub writes a new subscription; SaveSub writes a changed one.
	InsertSub(ctx context.Context, sub *invoicing.Subscription) error
	SaveSub(ctx context.Context, sub *invoicing.Subscription) error
	// LockBillable locks up to limit subscriptions due for billing at
	// now, but those of skip (rows another transaction holds are skipped).
	LockBillable(ctx context.Context, now time.Time, skip []string, limit int) ([]*invoicing.Subscription, error)
	// LockCancelDue locks up to limit subscriptions whose cancel_at has come.
	LockCancelDue(ctx context.Context, now time.Time, limit int) ([]*invoicing.Subscription, error)
	// Savepoint runs fn in a savepoint: when fn fails, what it wrote is
	// undone and the transaction goes on.
	Savepoint(ctx context.Context, fn func(Tx) error) error

	// Emit writes events into the outbox of the transaction.
	Emit(ctx context.Context, evs []invoicing.Event) error
	// EmitAll writes the events of several emissions (a group commit's
	// callers, each with its own trace) into the outbox together: one
	// statement, their events signed together.
	EmitAll(ctx context.Context, es ...Emission) error
	// Record stores the answer of the request in the transaction (what
	// the caller's Answer made of the result; nil: nothing).
	Record(ctx context.Context, answer any) error
}

// Emission is events to write and the context they come from: its trace
// goes into each of them.
type Emission struct {
	Ctx    context.Context
	Events []invoicing.Event
}

// Store is the store outside any transaction.
type Store interface {
	// InTx runs fn in a transaction, committed when fn returns nil.
	InTx(ctx context.Context, fn func(Tx) error) error
	// Pipelined runs fn in a transaction whose writes go in one round trip.
	Pipelined(ctx context.Context, fn func(Tx) error) error
	// UpdateInvoice locks invoice id and hands it to fn, then writes it and
	// the events fn returns, in one transaction; an unknown id is not_found.
	UpdateInvoice(ctx context.Context, id string, fn func(tx Tx, inv *invoicing.Invoice) ([]invoicing.Event, error)) (*invoicing.Invoice, error)
	// UpdateSubscription is UpdateInvoice for subscription id.
	UpdateSubscription(ctx context.Context, id string, fn func(tx Tx, sub *invoicing.Subscription) ([]invoicing.Event, error)) (*invoicing.Subscription, error)
	// Request reads invoice request id (not_found when there is none).
	Request(ctx context.Context, id string) (*InvoiceRequest, error)
	// Invoice reads invoice id outside a transaction; Invoices a page.
	Invoice(ctx context.Context, id string) (*invoicing.Invoice, error)
	Invoices(ctx context.Context, f InvoiceFilter) ([]*invoicing.Invoice, error)
	// InvoicesByID reads the invoices of ids that exist, with their lines,
	// in one round trip outside a transaction.
	InvoicesByID(ctx context.Context, ids []string) (map[string]*invoicing.Invoice, error)
	// Subscription reads subscription id outside a transaction;
	// Subscriptions a page.
	Subscription(ctx context.Context, id string) (*invoicing.Subscription, error)
	Subscriptions(ctx context.Context, f SubFilter) ([]*invoicing.Subscription, error)
	// Notification reads one notification of the delivery log;
	// Notifications a page of it.
	Notification(ctx context.Context, id string) (*notify.Notification, error)
	Notifications(ctx context.Context, f NotificationFilter) ([]*notify.Notification, error)
	// ClaimDueNotifications leases up to limit queued emails due at now;
	// RecordAttempts writes the outcomes of attempts, in one transaction.
	ClaimDueNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*notify.Notification, error)
	RecordAttempts(ctx context.Context, ns []*notify.Notification) error
	// PruneNotifications deletes up to limit notifications done with
	// (not queued) and last changed before cutoff.
	PruneNotifications(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// Coupon reads coupon id (not_found when there is none); CouponPage
	// and TaxRatePage list the catalogue after an id.
	Coupon(ctx context.Context, id string) (invoicing.Coupon, error)
	CouponPage(ctx context.Context, after string, limit int) ([]invoicing.Coupon, error)
	TaxRatePage(ctx context.Context, after string, limit int) ([]invoicing.TaxRate, error)
	// TaxRates returns the rates of ids that exist, outside a transaction.
	TaxRates(ctx context.Context, ids []string) ([]invoicing.TaxRate, error)
}

// Accounts is the read model of the accounts billed (shared/accounts'
// Directory): For answers a 404 problem for an account p may not see and
// reads through to process-transaction for one not learnt yet.
type Accounts interface {
	For(ctx context.Context, p auth.Principal, id string) (accounts.Facts, error)
	// Known returns the stored facts of those of ids the read model
	// knows, in one query, never reading through.
	Known(ctx context.Context, ids []string) (map[string]accounts.Facts, error)
}

// Answer turns a use case's result into what the store records as the
// request's idempotent answer in the same transaction (nil Answer:
// nothing to record, for event-driven work).
type Answer func(body any) any

func complete(ctx context.Context, tx Tx, done Answer, body any) error {
	if done == nil {
		return nil
	}
	return tx.Record(ctx, done(body))
}
