// Package rollup is aggregate-report's aggregation: it turns the events of
// every topic into additive rollups (per currency, hour and day, and per
// account and day), a few small state tables (account ownership, the MRR of
// each subscription, open invoices, disputes seen) and per-event
// reconciliation rows.
//
// The same code runs two ways, both driven by package store (the SQL).
// Streaming (store.Ingest) applies a batch of fresh events inside the
// delivery's transaction: it appends them to the event log report_events,
// loads the state rows they touch (Needs), applies them in memory
// (Aggregator.Apply) and writes the differences in bulk (State.Changed).
// Rebuilding (store.Replay, Check, Rebuild) replays report_events in log
// order into empty state (Replayed.Apply) and compares (Compare) or
// replaces what streaming wrote. This package holds no SQL. Because both paths are one function of the
// log in one order, streamed and recomputed rollups agree exactly, and any
// difference is a defect worth reporting.
//
// Order: every streaming transaction takes one advisory lock before it
// appends to the log, so log order (seq) is commit order is application
// order, and a replay in seq order sees exactly what streaming saw.
package rollup

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/money"
)

// Event is one event of the log: what report_events holds and what the
// aggregator reads.
type Event struct {
	Seq     int64
	Source  string
	ID      string
	Type    string
	Time    time.Time // microsecond precision, UTC
	Subject string
	Data    []byte
}

// FromCloudEvent converts a received CloudEvent; an event without a time
// gets now (the receipt time).
func FromCloudEvent(ev events.Event, now time.Time) Event {
	t := ev.Time()
	if t.IsZero() {
		t = now
	}
	return Event{Source: events.SourceOf(ev), ID: ev.ID(), Type: ev.Type(), Time: Micro(t), Subject: ev.Subject(), Data: ev.Data()}
}

// Micro normalises t to what Postgres stores: UTC, microseconds.
func Micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// The event types the aggregator consumes: the shared contract's names
// (shared/events, docs/events.md), under the names the rules use.
const (
	TransferPosted   = events.TypeTransactionPosted
	TransferRejected = events.TypeTransactionRejected
	HoldCreated      = events.TypeHoldCreated
	HoldCaptured     = events.TypeHoldCaptured
	HoldVoided       = events.TypeHoldVoided
	HoldExpired      = events.TypeHoldExpired

	AccountCreated = events.TypeAccountCreated
	AccountUpdated = events.TypeAccountUpdated

	InvoiceCreated       = events.TypeInvoiceCreated
	InvoiceFinalized     = events.TypeInvoiceFinalized
	InvoicePaid          = events.TypeInvoicePaid
	InvoiceVoided        = events.TypeInvoiceVoided
	InvoiceOverdue       = events.TypeInvoiceOverdue
	InvoiceUncollectible = events.TypeInvoiceUncollectible

	SubscriptionCreated  = events.TypeSubscriptionCreated
	SubscriptionUpdated  = events.TypeSubscriptionUpdated
	SubscriptionCanceled = events.TypeSubscriptionCanceled

	PaymentCreated    = events.TypePaymentCreated
	PaymentAuthorized = events.TypePaymentAuthorized
	PaymentCaptured   = events.TypePaymentCaptured
	PaymentFailed     = events.TypePaymentFailed
	PaymentCanceled   = events.TypePaymentCanceled
	RefundSucceeded   = events.TypeRefundSucceeded
	RefundFailed      = events.TypeRefundFailed
	GatewayUpdated    = events.TypeGatewayUpdated
	PaymentDisputed   = events.TypePaymentDisputed

	// PaymentUnapplied is money of a payment its invoice did not need
	// (paid or void already, an overpayment, another currency), which
	// capture-payment credits to the customer's account. Only
	// generate-invoice may say so (UnappliedSource).
	PaymentUnapplied = events.TypeInvoicePaymentUnapplied
)

// UnappliedSource is the only source PaymentUnapplied is accepted from.
const UnappliedSource = "/functions/generate-invoice"

// kinds says, for each consumed type, whether it changes state (subscriptions,
// invoices, payments, disputes, accounts). A replay of a date range must
// still run every stateful event; the others only matter inside the range.
var kinds = map[string]bool{
	TransferPosted: false, TransferRejected: false,
	HoldCreated: false, HoldCaptured: false, HoldVoided: false, HoldExpired: false,
	// A refund's failure may reverse its success (capture-payment's
	// refund_reversal), in either order of arrival: state.
	RefundSucceeded: true, RefundFailed: true,
	AccountCreated: true, AccountUpdated: true,
	InvoiceCreated: true, InvoiceFinalized: true, InvoicePaid: true, InvoiceVoided: true,
	InvoiceOverdue: true, InvoiceUncollectible: true,
	SubscriptionCreated: true, SubscriptionUpdated: true, SubscriptionCanceled: true,
	PaymentCreated: true, PaymentAuthorized: true, PaymentCaptured: true, PaymentFailed: true, PaymentCanceled: true,
	GatewayUpdated: true, PaymentDisputed: true,
	// Additions and a row of its own, no state: a ranged replay needs it
	// only inside the range.
	PaymentUnapplied: false,
}

// Consumes reports whether typ is aggregated (and therefore logged).
func Consumes(typ string) bool { _, ok := kinds[typ]; return ok }

// StatefulTypes lists the consumed types that change state.
func StatefulTypes() []string {
	var out []string
	for t, s := range kinds {
		if s {
			out = append(out, t)
		}
	}
	return out
}

// Metric names, as stored in the rollups and accepted by the query API.
const (
	MTransferPosted   = "transfer.posted"   // count, volume; per account: the sending account
	MTransferRejected = "transfer.rejected" // dim: reject reason
	MTransferReceived = "transfer.received" // per account only: the receiving account

	MHoldCreated  = "hold.created"
	MHoldCaptured = "hold.captured" // amount: captured_amount
	MHoldVoided   = "hold.voided"
	MHoldExpired  = "hold.expired"

	MInvoiceCreated       = "invoice.created"       // amount: total
	MInvoiceFinalized     = "invoice.finalized"     // amount: total
	MInvoicePaid          = "invoice.paid"          // amount: total (revenue)
	MInvoiceVoided        = "invoice.voided"        // amount: total
	MInvoiceOverdue       = "invoice.overdue"       // amount: amount_due
	MInvoiceUncollectible = "invoice.uncollectible" // amount: amount_due

	MPaymentCreated    = "payment.created"    // dim: gateway
	MPaymentAuthorized = "payment.authorized" // dim: gateway
	MPaymentCaptured   = "payment.captured"   // dim: gateway; every capture
	MPaymentSucceeded  = "payment.succeeded"  // dim: gateway; a payment's first capture
	MPaymentFailed     = "payment.failed"     // dim: gateway; every failed attempt
	MPaymentCanceled   = "payment.canceled"   // dim: gateway
	MPaymentDecline    = "payment.decline"    // dim: gateway|decline code

	MRefundSucceeded = "refund.succeeded" // dim: gateway
	MRefundFailed    = "refund.failed"    // dim: gateway; refunds that failed without ever succeeding
	MRefundReversed  = "refund.reversed"  // dim: gateway; refunds that failed after succeeding: the money came back
	MDisputeOpened   = "dispute.opened"   // dim: gateway; each disputed payment once

	MPaymentUnapplied = "payment.unapplied" // dim: reason; money credited to the account instead of its invoice

	MMRRNew          = "mrr.new"          // +; count: subscriptions that started paying
	MMRRReactivation = "mrr.reactivation" // +; count: subscriptions that paid again
	MMRRExpansion    = "mrr.expansion"    // +
	MMRRContraction  = "mrr.contraction"  // −
	MMRRChurned      = "mrr.churned"      // −; count: subscriptions that stopped paying

	MSubscriptionCreated  = "subscription.created"
	MSubscriptionCanceled = "subscription.canceled"
	MAccountCreated       = "account.created"
)

// Metrics lists every metric name (for validation and documentation).
var Metrics = []string{
	MTransferPosted, MTransferRejected, MTransferReceived,
	MHoldCreated, MHoldCaptured, MHoldVoided, MHoldExpired,
	MInvoiceCreated, MInvoiceFinalized, MInvoicePaid, MInvoiceVoided, MInvoiceOverdue, MInvoiceUncollectible,
	MPaymentCreated, MPaymentAuthorized, MPaymentCaptured, MPaymentSucceeded, MPaymentFailed, MPaymentCanceled, MPaymentDecline,
	MRefundSucceeded, MRefundFailed, MRefundReversed, MDisputeOpened, MPaymentUnapplied,
	MMRRNew, MMRRReactivation, MMRRExpansion, MMRRContraction, MMRRChurned,
	MSubscriptionCreated, MSubscriptionCanceled, MAccountCreated,
}

// NoCurrency buckets rejected transfers whose currency code is not ISO 4217
// (ISO's own code for "no currency").
const NoCurrency = "XXX"

// Grains of the global rollups.
const (
	Hour byte = 'h'
	Day  byte = 'd'
)

// RollKey is one global rollup row. Bucket is the unix second of the
// bucket's start (UTC).
type RollKey struct {
	Grain    byte
	Bucket   int64
	Currency string
	Metric   string
	Dim      string
}

// AccountKey is one per-account rollup row (day grain).
type AccountKey struct {
	Account  string
	Day      int64
	Currency string
	Metric   string
	Dim      string
}

// Cell is a figure of a report: a count and an amount in int64 minor units.
type Cell struct {
	Count  int64 `json:"count"`
	Amount int64 `json:"amount"`
}

// Sum is a rollup row's value: a count, and the sum of its facts' amounts,
// which may exceed int64 (see Wide).
type Sum struct {
	Count  int64
	Amount Wide
}

// String formats s as count/amount (a check's differences).
func (s Sum) String() string { return strconv.FormatInt(s.Count, 10) + "/" + s.Amount.String() }

func (s Sum) add(count, amount int64) (Sum, error) {
	n, err := money.Add(s.Count, count) // 2^63 events: never, but not wrapped
	if err != nil {
		return s, err
	}
	return Sum{n, s.Amount.AddInt64(amount)}, nil
}

// ReconRow is one reconciliation entry.
type ReconRow struct {
	Source, EventID string
	Side            string // gateway | ledger
	Kind            string // capture | refund | refund_reversal (a refund that failed after succeeding)
	PaymentID       string
	AccountID       string // "" when unknown
	Gateway         string
	Currency        string
	Amount          int64
	Status          string // succeeded | reversed (gateway), posted | rejected (ledger)
	Ref             string // transfer id, refund id or event id
	At              time.Time
}

// InvoicePayment is a capture applied to an invoice.
type InvoicePayment struct {
	Source, EventID string
	InvoiceID       string
	At              time.Time
	Amount          int64
}

// UnappliedRow is money of a payment its invoice did not need, credited to
// the account (billfn.invoice.payment_unapplied).
type UnappliedRow struct {
	Source, EventID string
	PaymentID       string
	InvoiceID       string
	AccountID       string // the account credited
	UserID          string // "" when not given
	Currency        string
	Amount          int64
	Reason          string
	InvoiceStatus   string
	At              time.Time
}

// Effects are the additive results of applying events.
type Effects struct {
	Global          map[RollKey]Sum
	Accounts        map[AccountKey]Sum
	Recon           []ReconRow
	InvoicePayments []InvoicePayment
	Unapplied       []UnappliedRow
	Days            map[int64]bool // days (unix second of 00:00 UTC) whose figures changed

	// Keep, when set, drops effects whose time it rejects (a ranged replay).
	Keep func(t time.Time) bool
}

// NewEffects returns empty effects.
func NewEffects() *Effects {
	return &Effects{Global: map[RollKey]Sum{}, Accounts: map[AccountKey]Sum{}, Days: map[int64]bool{}}
}

// DayStart is the start of t's day (UTC).
func DayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// DayAligned reports whether both ends are midnights (UTC).
func DayAligned(from, to time.Time) bool {
	return DayStart(from).Equal(from) && DayStart(to).Equal(to)
}

type scope int

const (
	everywhere  scope = iota // global and the account's rollups
	accountOnly              // only the account's rollups
)

var errOverflow = errors.New("rollup count overflows int64")

// add records one fact at t.
func (e *Effects) add(t time.Time, cur, metric, dim, account string, count, amount int64, sc scope) error {
	if e.Keep != nil && !e.Keep(t) {
		return nil
	}
	day := DayStart(t).Unix()
	e.Days[day] = true
	if sc == everywhere {
		hk := RollKey{Hour, t.Truncate(time.Hour).Unix(), cur, metric, dim}
		dk := RollKey{Day, day, cur, metric, dim}
		for _, k := range []RollKey{hk, dk} {
			c, err := e.Global[k].add(count, amount)
			if err != nil {
				return fmt.Errorf("%s %s %s: %w", metric, cur, dim, errOverflow)
			}
			e.Global[k] = c
		}
	}
	if account != "" {
		k := AccountKey{account, day, cur, metric, dim}
		c, err := e.Accounts[k].add(count, amount)
		if err != nil {
			return fmt.Errorf("%s %s %s: %w", metric, cur, dim, errOverflow)
		}
		e.Accounts[k] = c
	}
	return nil
}

func (e *Effects) touch(t time.Time) {
	if e.Keep != nil && !e.Keep(t) {
		return
	}
	e.Days[DayStart(t).Unix()] = true
}

// Account is what the function knows of an account.
type Account struct {
	UserID    string
	Number    string
	Currency  string
	Status    string
	UpdatedAt time.Time
}

// Subscription is the MRR state of a subscription.
type Subscription struct {
	AccountID string
	Currency  string
	MRR       int64 // effective: 0 unless the subscription pays
	Status    string
	HadMRR    bool
	UpdatedAt time.Time
}

// Payment names a payment's account and gateway.
type Payment struct {
	AccountID string
	Gateway   string
	Currency  string
}

// DisputeKey identifies a dispute at its gateway.
type DisputeKey struct{ Gateway, ObjectID string }

// Dispute is a dispute seen once.
type Dispute struct {
	PaymentID string
	Currency  string
	Amount    int64
	OpenedAt  time.Time
}

// Invoice is an invoice's receivable.
type Invoice struct {
	AccountID   string
	Currency    string
	Total       int64
	AmountDue   int64     // when finalized
	DueDate     time.Time // zero: none
	FinalizedAt time.Time // zero: not finalized
	ClosedAt    time.Time // zero: open
	Status      string
	UpdatedAt   time.Time
}

// Refund is what is known of a refund: when it succeeded and when it
// failed (zero: not known), and the event that said it failed. A refund
// that fails after it succeeded (Stripe: the card was closed, the money is
// back) is reversed; capture-payment says so with billfn.refund.failed,
// and a failure that arrives before the success it reverses is counted
// again as a reversal when the success comes.
type Refund struct {
	PaymentID    string
	SucceededAt  time.Time
	FailedAt     time.Time
	FailedSource string
	FailedID     string
}

// State is the aggregator's state: the rows loaded for a batch (streaming)
// or everything (replay). Dirty rows are written back.
type State struct {
	Accounts      map[string]*Account
	Subscriptions map[string]*Subscription
	Payments      map[string]*Payment
	Disputes      map[DisputeKey]*Dispute
	Invoices      map[string]*Invoice
	Refunds       map[string]*Refund // by refund_id

	dirtyAccounts      map[string]bool
	dirtySubscriptions map[string]bool
	dirtyPayments      map[string]bool
	dirtyDisputes      map[DisputeKey]bool
	dirtyInvoices      map[string]bool
	dirtyRefunds       map[string]bool
}

// NewState returns empty state.
func NewState() *State {
	return &State{
		Accounts: map[string]*Account{}, Subscriptions: map[string]*Subscription{}, Payments: map[string]*Payment{},
		Disputes: map[DisputeKey]*Dispute{}, Invoices: map[string]*Invoice{}, Refunds: map[string]*Refund{},
		dirtyAccounts: map[string]bool{}, dirtySubscriptions: map[string]bool{}, dirtyPayments: map[string]bool{},
		dirtyDisputes: map[DisputeKey]bool{}, dirtyInvoices: map[string]bool{}, dirtyRefunds: map[string]bool{},
	}
}
