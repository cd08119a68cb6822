package payments

import (
	"context"
	"errors"
	"time"

	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/events"
)

// Tx is what the use cases need from the store inside one transaction (or
// on the pool, where each statement is atomic on its own). The store
// package implements it; every SQL statement lives there.
type Tx interface {
	Payment(ctx context.Context, id string, lock bool) (*Payment, error)
	// PaymentWithAccount is Payment with the read model's facts of its
	// account (known false when it does not know them), in one statement.
	PaymentWithAccount(ctx context.Context, id string, lock bool) (p *Payment, f accounts.Facts, known bool, err error)
	PaymentByGatewayID(ctx context.Context, gateway, gatewayPaymentID string, lock bool) (*Payment, error)
	Payments(ctx context.Context, f PaymentFilter) ([]*Payment, error)
	// InsertPayment reports false when a payment with p's id exists.
	InsertPayment(ctx context.Context, p *Payment) (bool, error)
	// InsertConfirming records a new payment and its first attempt at
	// once; false when the payment exists.
	InsertConfirming(ctx context.Context, p *Payment, a Attempt) (bool, error)
	// InsertPaymentFor and InsertConfirmingFor are InsertPayment and
	// InsertConfirming guarded by the read model's facts of p's account
	// (see AccountGuard), in the same statement: p.UserID is set to the
	// account's owner. When the guard refuses they write nothing and fail
	// with ErrAccountUnchecked.
	InsertPaymentFor(ctx context.Context, p *Payment, g AccountGuard) (bool, error)
	InsertConfirmingFor(ctx context.Context, p *Payment, a Attempt, g AccountGuard) (bool, error)
	UpdatePayment(ctx context.Context, p *Payment) error
	// UpdatePaymentStarting is UpdatePayment with InsertAttempt of its new
	// attempt a, in one statement.
	UpdatePaymentStarting(ctx context.Context, p *Payment, a Attempt) error

	InsertAttempt(ctx context.Context, paymentID string, a Attempt) error
	FinishAttempt(ctx context.Context, paymentID string, a Attempt) error
	// SettleOpenAttempt finishes attempt a if it is still open (pending,
	// processing, requires_action or requires_capture).
	SettleOpenAttempt(ctx context.Context, paymentID string, a Attempt) error
	Attempts(ctx context.Context, paymentID string) ([]Attempt, error)
	CurrentAttempt(ctx context.Context, p *Payment) (Attempt, error)

	Refund(ctx context.Context, id string, lock bool) (*Refund, error)
	RefundByGatewayID(ctx context.Context, gateway, gatewayRefundID string) (*Refund, error)
	// RefundedWithGatewayIDs sums the payment's refunds the gateway has
	// ids for (succeeded, or pending with an id), whoever made them.
	RefundedWithGatewayIDs(ctx context.Context, paymentID string) (int64, error)
	// FailedSince sums the payment's refunds that existed at the gateway
	// (they have its id) and failed or were canceled at or after at: a
	// gateway's total refunded as of at still counts them.
	FailedSince(ctx context.Context, paymentID string, at time.Time) (int64, error)
	// UnnamedGatewayRefunds locks the payment's succeeded refunds made at
	// the gateway that billfn knows only from a total (no gateway id), in
	// their order.
	UnnamedGatewayRefunds(ctx context.Context, paymentID string) ([]*Refund, error)
	Refunds(ctx context.Context, paymentID string) ([]*Refund, error)
	// LockRefund locks a refund and its payment (payment first).
	LockRefund(ctx context.Context, id string) (*Payment, *Refund, error)
	InsertRefund(ctx context.Context, r *Refund) (bool, error)
	UpdateRefund(ctx context.Context, r *Refund) error
	DeleteRefund(ctx context.Context, id string) error
	// Credit is what of an invoice payment was credited to its account and
	// what refunds took from the account so far.
	Credit(ctx context.Context, paymentID string) (unapplied, fromAccount int64, err error)
	SetUnapplied(ctx context.Context, paymentID string, amount int64) error
	// RefundedFromRevenue is what refunds of an invoice payment took from
	// revenue so far (pending or succeeded).
	RefundedFromRevenue(ctx context.Context, paymentID string) (int64, error)
	// TakeCredit takes amount off what an invoice payment credited to its
	// account: a refund recorded on revenue drew on that much of the credit.
	TakeCredit(ctx context.Context, paymentID string, amount int64) error
	// Withhold records, on the refunds of an invoice payment on revenue,
	// succeeded or pending (the succeeded first, each in their order),
	// what of reported — the part of the payment its invoice did not
	// need — each kept out of the account's credit: together the least of
	// reported and what they refund.
	Withhold(ctx context.Context, paymentID string, reported int64) error
	// AddUnapplied credits amount more of an invoice payment to its account.
	AddUnapplied(ctx context.Context, paymentID string, amount int64) error

	Method(ctx context.Context, accountID, id string) (*Method, error)
	DefaultMethod(ctx context.Context, accountID string) (*Method, error)
	Methods(ctx context.Context, accountID, userID string, after *MethodKey, limit int) ([]*Method, error)
	InsertMethod(ctx context.Context, m *Method) error
	SetDefaultMethod(ctx context.Context, m *Method) error
	DeleteMethod(ctx context.Context, id string) error

	// Account is the read model's facts of account id (ok false when it
	// does not know it), read where the Tx is: it never reads through.
	Account(ctx context.Context, id string) (f accounts.Facts, ok bool, err error)

	PutInvoice(ctx context.Context, f InvoiceFacts, source string) (bool, error)
	// PutInvoices stores many facts with the effect of PutInvoice on each
	// in turn, in fewer statements.
	PutInvoices(ctx context.Context, fs []InvoiceFacts, source string) error
	LockInvoice(ctx context.Context, id string) (f InvoiceFacts, ok bool, err error)
	InvoiceLoad(ctx context.Context, invoiceID, except string) (InvoiceLoad, error)
	PaymentExists(ctx context.Context, id string) (bool, error)

	// Emit writes events into the outbox of the transaction.
	Emit(ctx context.Context, msgs []Message) error
	// Record stores the answer of the request in the transaction (what
	// Answer made of its outcome).
	Record(ctx context.Context, answer any) error
}

// Runner runs the steps of a flow: each in a new transaction (an HTTP
// request, whose gateway call happens between two of them), or all in
// the caller's (an event handler, inside the receiver's transaction).
type Runner interface {
	Run(ctx context.Context, fn func(Tx) error) error
	// DB is where a single statement runs (atomic on its own).
	DB() Tx
	// Pipelined reports whether a finishing write may go as one pipeline
	// in an implicit transaction (Store.Pipeline).
	Pipelined() bool
}

// Store is the store outside any transaction.
type Store interface {
	Fresh() Runner
	// Pipeline writes p (only if still at version) with attempt a, msgs
	// and the answer at once; false, having written nothing, when p moved.
	Pipeline(ctx context.Context, p *Payment, version time.Time, a Attempt, msgs []Message, answer any) (bool, error)
	// InsertCreated records a new payment guarded by g (InsertPaymentFor)
	// with msgs and the answer at once; false, having written nothing,
	// when it exists; ErrAccountUnchecked, having written nothing, when
	// the guard refused. p.UserID is the owner the guard must find.
	InsertCreated(ctx context.Context, p *Payment, g AccountGuard, msgs []Message, answer any) (bool, error)
	// MarkCapture marks a payment capturing in one statement, or fails
	// with ErrNotMarked. It does not mark a Stripe payment in one of
	// tenths (currencies Stripe takes only in multiples of 10 minor
	// units) for an amount that is not such a multiple.
	MarkCapture(ctx context.Context, id string, now time.Time, user string, amount int64, tenths []string) (*Payment, error)
	Unsettled(ctx context.Context, before time.Time, limit int) ([]string, error)
	PendingRefunds(ctx context.Context, before time.Time, limit int) ([]string, error)
	ExpiredAuthorizations(ctx context.Context, before time.Time, limit int) ([]string, error)
}

// AccountGuard is what a payment's guarded first write checks against
// the read model of accounts (payment_accounts) before it inserts the
// payment: the read model knows p.AccountID, the account is active, its
// currency is p.Currency, Owner (when set) owns it and UserID (when set)
// is its owner. The payment's owner is then the account's.
type AccountGuard struct {
	// Owner is the subject of a customer caller, who must own the
	// account (auth.Principal.CanAccess); nil for admin and service
	// callers, who reach every account.
	Owner *string
	// UserID is the user_id the caller sent ("" for none).
	UserID string
}

// Expected is the owner the guard lets through, when it is known before
// the write ("" when not: an admin or service caller that sent no
// user_id). Owners are compared as text: the guard passes only for an
// account whose owner reads as Expected.
func (g AccountGuard) Expected() string {
	if g.Owner != nil {
		return *g.Owner
	}
	return g.UserID
}

// ErrAccountUnchecked is a guarded insert's answer when its AccountGuard
// refused (or the read model does not know the account): nothing was
// written, and AuthorizeAccount says why.
var ErrAccountUnchecked = errors.New("the account's facts did not allow the guarded write")

// ErrNotMarked is MarkCapture's answer for a payment it could not mark.
var ErrNotMarked = errors.New("payment not marked")

// Message is one event for the outbox.
type Message struct {
	Topic, Key string
	Event      events.Event
}

// Outcome is how a request ended, for the answer the api gives.
type Outcome int

// The outcomes of a request.
const (
	// Created: a new payment or refund.
	Created Outcome = iota + 1
	// Done: the operation happened.
	Done
	// Pending: the gateway's answer is unknown yet; reconciliation or a
	// webhook settles it.
	Pending
)

// Answer turns a request's outcome and result into what the store records
// as its answer in the same transaction (nil: nothing to record, for
// event-driven work).
type Answer func(o Outcome, body any) any
