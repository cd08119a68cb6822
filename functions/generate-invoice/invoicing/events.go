package invoicing

import (
	"time"

	"github.com/billfn/billfn/shared/money"
)

// Event types generate-invoice emits and consumes (docs/events.md,
// billing-events section).
const (
	TypeInvoiceRequested      = "billfn.invoice.requested"
	TypeInvoiceCreated        = "billfn.invoice.created"
	TypeInvoiceFinalized      = "billfn.invoice.finalized"
	TypeInvoicePaid           = "billfn.invoice.paid"
	typeInvoiceVoided         = "billfn.invoice.voided"
	TypeInvoiceOverdue        = "billfn.invoice.overdue"
	typeInvoiceUncollectible  = "billfn.invoice.uncollectible"
	TypeInvoiceRetryRequested = "billfn.invoice.payment_retry_requested"
	TypeSubscriptionCreated   = "billfn.subscription.created"
	TypeSubscriptionUpdated   = "billfn.subscription.updated"
	TypeSubscriptionCanceled  = "billfn.subscription.canceled"
	TypeNotification          = "billfn.notification.requested"

	TypePaymentCaptured = "billfn.payment.captured"
	TypePaymentFailed   = "billfn.payment.failed"
	TypeRefundSucceeded = "billfn.refund.succeeded"
)

// InvoiceSummary is the data of every invoice event.
type InvoiceSummary struct {
	InvoiceID        string         `json:"invoice_id"`
	Number           *string        `json:"number"`
	AccountID        string         `json:"account_id"`
	UserID           string         `json:"user_id"`
	SubscriptionID   *string        `json:"subscription_id"`
	Currency         money.Currency `json:"currency"`
	Subtotal         int64          `json:"subtotal"`
	Discount         int64          `json:"discount"`
	Tax              int64          `json:"tax"`
	Total            int64          `json:"total"`
	AmountPaid       int64          `json:"amount_paid"`
	AmountDue        int64          `json:"amount_due"`
	AmountRefunded   int64          `json:"amount_refunded"`
	Status           string         `json:"status"`
	Overdue          bool           `json:"overdue"`
	DueDate          *Date          `json:"due_date"`
	CollectionMethod string         `json:"collection_method"`
	BillingReason    string         `json:"billing_reason"`
	PeriodStart      *time.Time     `json:"period_start"`
	PeriodEnd        *time.Time     `json:"period_end"`
	FinalizedAt      *time.Time     `json:"finalized_at"`
	PaidAt           *time.Time     `json:"paid_at"`
	Attempt          int            `json:"attempt,omitempty"`
}

func Summarize(inv *Invoice) InvoiceSummary {
	return InvoiceSummary{InvoiceID: inv.ID, Number: inv.Number, AccountID: inv.AccountID, UserID: inv.UserID,
		SubscriptionID: inv.SubscriptionID, Currency: inv.Currency, Subtotal: inv.Subtotal, Discount: inv.Discount,
		Tax: inv.Tax, Total: inv.Total, AmountPaid: inv.AmountPaid, AmountDue: inv.AmountDue,
		AmountRefunded: inv.AmountRefunded, Status: inv.Status, Overdue: inv.Overdue, DueDate: inv.DueDate,
		CollectionMethod: inv.CollectionMethod, BillingReason: inv.BillingReason, PeriodStart: inv.PeriodStart,
		PeriodEnd: inv.PeriodEnd, FinalizedAt: inv.FinalizedAt, PaidAt: inv.PaidAt}
}

// Event is a fact a change emits: its type, subject and partition key,
// and its data. The store writes it to the outbox in the change's
// transaction.
type Event struct {
	Type, Subject, Key string
	Data               any
}

func NewEvent(typ, subject, key string, data any) Event {
	return Event{Type: typ, Subject: subject, Key: key, Data: data}
}

func InvoiceEvent(typ string, inv *Invoice, attempt int) Event {
	sum := Summarize(inv)
	sum.Attempt = attempt
	return NewEvent(typ, inv.ID, inv.AccountID, sum)
}

// NotificationData asks for a message to the customer.
type NotificationData struct {
	Kind      string         `json:"kind"`
	AccountID string         `json:"account_id"`
	UserID    string         `json:"user_id"`
	InvoiceID string         `json:"invoice_id"`
	Number    *string        `json:"number"`
	AmountDue int64          `json:"amount_due"`
	Currency  money.Currency `json:"currency"`
	DueDate   *Date          `json:"due_date"`
	Email     string         `json:"email,omitempty"`
}

func Notification(kind string, inv *Invoice) Event {
	return NewEvent(TypeNotification, inv.ID, inv.AccountID, NotificationData{Kind: kind,
		AccountID: inv.AccountID, UserID: inv.UserID, InvoiceID: inv.ID, Number: inv.Number,
		AmountDue: inv.AmountDue, Currency: inv.Currency, DueDate: inv.DueDate, Email: inv.Customer.Email})
}

// SubscriptionSummary is the data of every subscription event.
type SubscriptionSummary struct {
	SubscriptionID     string         `json:"subscription_id"`
	AccountID          string         `json:"account_id"`
	UserID             string         `json:"user_id"`
	Status             string         `json:"status"`
	Plan               Plan           `json:"plan"`
	MRR                int64          `json:"mrr"`
	Currency           money.Currency `json:"currency"`
	CurrentPeriodStart *time.Time     `json:"current_period_start"`
	CurrentPeriodEnd   *time.Time     `json:"current_period_end"`
	CancelAt           *time.Time     `json:"cancel_at"`
	CanceledAt         *time.Time     `json:"canceled_at"`
}

func SubscriptionEvent(typ string, sub *Subscription) Event {
	sub.Derive()
	return NewEvent(typ, sub.ID, sub.AccountID, SubscriptionSummary{SubscriptionID: sub.ID,
		AccountID: sub.AccountID, UserID: sub.UserID, Status: sub.Status, Plan: sub.Plan, MRR: sub.MRR,
		Currency: sub.Plan.Currency, CurrentPeriodStart: sub.CurrentPeriodStart,
		CurrentPeriodEnd: sub.CurrentPeriodEnd, CancelAt: sub.CancelAt, CanceledAt: sub.CanceledAt})
}

// TypePaymentUnapplied announces money of a payment its invoice did not
// need; capture-payment reverses its settlement, so the money stays on the
// customer's account as a credit (docs/events.md).
const TypePaymentUnapplied = "billfn.invoice.payment_unapplied"

// UnappliedData is billfn.invoice.payment_unapplied.
type UnappliedData struct {
	PaymentID         string         `json:"payment_id"`
	InvoiceID         string         `json:"invoice_id"`
	AccountID         string         `json:"account_id"`
	UserID            string         `json:"user_id"`
	Amount            int64          `json:"amount"`
	Currency          money.Currency `json:"currency"`
	Reason            string         `json:"reason"`
	InvoiceStatus     string         `json:"invoice_status"`
	InvoiceTotal      int64          `json:"invoice_total"`
	InvoiceAmountPaid int64          `json:"invoice_amount_paid"`
	InvoiceCurrency   money.Currency `json:"invoice_currency"`
}

// PaymentData is what generate-invoice reads of payment events.
type PaymentData struct {
	PaymentID      string         `json:"payment_id"`
	AccountID      string         `json:"account_id"`
	InvoiceID      *string        `json:"invoice_id"`
	Amount         int64          `json:"amount"`
	AmountCaptured int64          `json:"amount_captured"`
	Currency       money.Currency `json:"currency"`
	Status         string         `json:"status"`
	DeclineCode    string         `json:"decline_code"`
	FailureReason  string         `json:"failure_reason"`
	Attempt        int            `json:"attempt"`
	UpdatedAt      *time.Time     `json:"updated_at"`
}

type RefundData struct {
	RefundID  string         `json:"refund_id"`
	PaymentID string         `json:"payment_id"`
	InvoiceID *string        `json:"invoice_id"`
	Amount    int64          `json:"amount"`
	Currency  money.Currency `json:"currency"`
}
