package events

import (
	"encoding/json"
	"time"
)

// The event types of billfn, one constant each, and the data each carries
// as a Go type: a producer builds the type and a consumer decodes the same
// type, so the two cannot drift. docs/events.md documents every type and
// every field; TestDocsDescribeEveryEventType checks that it does, and that
// it names nothing that does not exist. The contract table below (Contract)
// says on which topic each type travels and who may emit it.
//
// Changing a field's name or meaning is a breaking change; adding an
// optional field is not (consumers ignore what they do not know).

// Types on transaction-events (process-transaction's aggregates: transfers
// and holds; transfer requests and hold resolutions come in).
const (
	TypeTransactionRequested = "billfn.transaction.requested"  // command: TransactionRequested
	TypeTransactionPosted    = "billfn.transaction.posted"     // Transfer
	TypeTransactionRejected  = "billfn.transaction.rejected"   // Transfer
	TypeHoldCreated          = "billfn.hold.created"           // Transfer
	TypeHoldCaptured         = "billfn.hold.captured"          // Transfer
	TypeHoldVoided           = "billfn.hold.voided"            // Transfer
	TypeHoldExpired          = "billfn.hold.expired"           // Transfer
	TypeHoldCaptureRequested = "billfn.hold.capture_requested" // HoldResolution, from capture-payment
	TypeHoldVoidRequested    = "billfn.hold.void_requested"    // HoldResolution, from capture-payment
)

// Types on user-events (process-transaction's accounts).
const (
	TypeAccountCreated = "billfn.account.created" // Account
	TypeAccountUpdated = "billfn.account.updated" // Account
)

// Types on billing-events (generate-invoice's invoices, subscriptions and
// notifications; invoice requests come in).
const (
	TypeInvoiceRequested             = "billfn.invoice.requested"               // command: InvoiceRequested
	TypeInvoiceCreated               = "billfn.invoice.created"                 // Invoice
	TypeInvoiceFinalized             = "billfn.invoice.finalized"               // Invoice
	TypeInvoicePaid                  = "billfn.invoice.paid"                    // Invoice
	TypeInvoiceVoided                = "billfn.invoice.voided"                  // Invoice
	TypeInvoiceOverdue               = "billfn.invoice.overdue"                 // Invoice
	TypeInvoiceUncollectible         = "billfn.invoice.uncollectible"           // Invoice
	TypeInvoicePaymentRetryRequested = "billfn.invoice.payment_retry_requested" // Invoice with Attempt
	TypeInvoicePaymentUnapplied      = "billfn.invoice.payment_unapplied"       // PaymentUnapplied
	TypeSubscriptionCreated          = "billfn.subscription.created"            // Subscription
	TypeSubscriptionUpdated          = "billfn.subscription.updated"            // Subscription
	TypeSubscriptionCanceled         = "billfn.subscription.canceled"           // Subscription
	TypeNotificationRequested        = "billfn.notification.requested"          // NotificationRequested
)

// Types on payment-events (capture-payment's payments and refunds;
// handle-webhook's normalized gateway updates, TypeGatewayUpdated).
const (
	TypePaymentCreated    = "billfn.payment.created"    // Payment
	TypePaymentUpdated    = "billfn.payment.updated"    // Payment
	TypePaymentAuthorized = "billfn.payment.authorized" // Payment
	TypePaymentCaptured   = "billfn.payment.captured"   // PaymentCaptured
	TypePaymentFailed     = "billfn.payment.failed"     // PaymentFailed
	TypePaymentCanceled   = "billfn.payment.canceled"   // Payment
	TypePaymentDisputed   = "billfn.payment.disputed"   // Payment
	TypeRefundSucceeded   = "billfn.refund.succeeded"   // Refund
	TypeRefundFailed      = "billfn.refund.failed"      // Refund
)

// TransferRequest asks process-transaction to move money: the body of
// POST /transfers and, with TransferID, the data of
// billfn.transaction.requested. An account is named by id or by number
// (SYS-<ROLE>-<CUR> names a system account, created on first use).
type TransferRequest struct {
	FromAccountID     string          `json:"from_account_id,omitempty"`
	ToAccountID       string          `json:"to_account_id,omitempty"`
	FromAccountNumber string          `json:"from_account_number,omitempty"`
	ToAccountNumber   string          `json:"to_account_number,omitempty"`
	Amount            int64           `json:"amount"`
	Currency          string          `json:"currency"`
	Description       string          `json:"description,omitempty"`
	ReferenceID       string          `json:"reference_id,omitempty"`
	Metadata          json.RawMessage `json:"metadata,omitempty"` // a JSON object
	Pending           bool            `json:"pending,omitempty"`
	ExpiresAt         *time.Time      `json:"expires_at,omitempty"`
}

// TransactionRequested is the data of billfn.transaction.requested: a
// transfer request; the event id is its idempotency key. TransferID is
// set when process-transaction itself accepted the request (202) and
// names the transfer that will decide it.
type TransactionRequested struct {
	TransferRequest
	TransferID string `json:"transfer_id,omitempty"`
}

// The kinds of transfer billfn's own functions ask for, in a transfer's
// metadata.kind (docs/events.md, "Payments in the ledger"). Consumers read
// them as facts about a payment (aggregate-report's reconciliation), so
// they are a fact only capture-payment may state: process-transaction
// refuses a customer's transfer that claims one (metadata/kind).
const (
	KindPaymentCapture    = "payment_capture"    // SYS-CLEARING → the payment's account
	KindInvoiceSettlement = "invoice_settlement" // the payment's account → SYS-REVENUE
	KindRefund            = "refund"             // → SYS-CLEARING, a refund's hold or posting
	KindInvoiceRefund     = "invoice_refund"     // SYS-REVENUE → the account, before a gateway-made refund
	KindInvoiceUnapplied  = "invoice_unapplied"  // SYS-REVENUE → the account, what an invoice did not need
	KindRefundReversal    = "refund_reversal"    // SYS-CLEARING → what a refund drew on, when it failed after it succeeded
)

// TransferKinds lists the kinds above, every one of them
// (TestTransferKindsListEveryKind).
var TransferKinds = []string{KindPaymentCapture, KindInvoiceSettlement, KindRefund, KindInvoiceRefund, KindInvoiceUnapplied, KindRefundReversal}

// MetadataOf encodes string metadata for a TransferRequest.
func MetadataOf(m map[string]string) json.RawMessage {
	if m == nil {
		return nil
	}
	b, err := json.Marshal(m)
	if err != nil { // a map of strings always encodes
		panic(err)
	}
	return b
}

// Transfer is a transfer or a hold as process-transaction keeps it: the
// data of billfn.transaction.posted / rejected and billfn.hold.*.
type Transfer struct {
	ID             string          `json:"id"`
	FromAccountID  string          `json:"from_account_id"`
	ToAccountID    string          `json:"to_account_id"`
	Amount         int64           `json:"amount"`
	Currency       string          `json:"currency"`
	Status         string          `json:"status"` // posted, rejected, held, captured, voided, expired
	RejectReason   *string         `json:"reject_reason"`
	Description    string          `json:"description"`
	ReferenceID    string          `json:"reference_id"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	Pending        bool            `json:"pending"`
	CapturedAmount int64           `json:"captured_amount"`
	ExpiresAt      *time.Time      `json:"expires_at"`
	CreatedAt      time.Time       `json:"created_at"`
	PostedAt       *time.Time      `json:"posted_at"`
	FromBalance    *int64          `json:"from_balance,omitempty"`
	FromAvailable  *int64          `json:"from_available,omitempty"`
	ToBalance      *int64          `json:"to_balance,omitempty"`
	ToAvailable    *int64          `json:"to_available,omitempty"`
}

// HoldResolution is the data of billfn.hold.capture_requested and
// billfn.hold.void_requested: resolve a refund's hold.
type HoldResolution struct {
	TransferID string `json:"transfer_id"`
	Amount     int64  `json:"amount"` // capture only; 0 = the whole hold
}

// Account is an account as process-transaction keeps it: the data of
// billfn.account.created and billfn.account.updated.
type Account struct {
	ID            string          `json:"id"`
	UserID        string          `json:"user_id"`
	AccountNumber string          `json:"account_number"`
	Currency      string          `json:"currency"`
	Balance       int64           `json:"balance"`
	Available     int64           `json:"available"`
	Held          int64           `json:"held"`
	AllowNegative bool            `json:"allow_negative"`
	Status        string          `json:"status"` // active, frozen, closed
	Version       int64           `json:"version"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
}

// InvoiceRequested is the data of billfn.invoice.requested: the
// POST /invoices body; the event id is its idempotency key.
type InvoiceRequested struct {
	AccountID        string            `json:"account_id"`
	UserID           string            `json:"user_id"`
	Currency         string            `json:"currency"`
	Customer         *Customer         `json:"customer,omitempty"`
	LineItems        []LineItem        `json:"line_items"`
	Discounts        []Discount        `json:"discounts,omitempty"`
	Coupon           string            `json:"coupon,omitempty"`
	NetTermsDays     *int              `json:"net_terms_days,omitempty"`
	DueDate          *string           `json:"due_date,omitempty"` // YYYY-MM-DD
	Memo             string            `json:"memo,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	AutoFinalize     bool              `json:"auto_finalize,omitempty"`
	CollectionMethod string            `json:"collection_method,omitempty"`
	NumberPrefix     string            `json:"number_prefix,omitempty"`
}

// Customer is who an invoice bills.
type Customer struct {
	Name    string   `json:"name,omitempty"`
	Email   string   `json:"email,omitempty"`
	Phone   string   `json:"phone,omitempty"`
	TaxID   string   `json:"tax_id,omitempty"`
	Address *Address `json:"address,omitempty"`
}

// Address is a postal address.
type Address struct {
	Line1      string `json:"line1,omitempty"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city,omitempty"`
	PostalCode string `json:"postal_code,omitempty"`
	State      string `json:"state,omitempty"`
	Country    string `json:"country,omitempty"`
}

// LineItem is one line of an invoice request. Quantity is a decimal as
// written: a JSON number or a string ("1.5").
type LineItem struct {
	Description string            `json:"description"`
	Quantity    json.RawMessage   `json:"quantity,omitempty"`
	UnitAmount  *int64            `json:"unit_amount"`
	Currency    string            `json:"currency,omitempty"`
	TaxRateIDs  []string          `json:"tax_rate_ids,omitempty"`
	Discount    *Discount         `json:"discount,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// Discount is a percentage (a decimal as written) or an amount off.
type Discount struct {
	PercentOff  json.RawMessage `json:"percent_off,omitempty"`
	AmountOff   *int64          `json:"amount_off,omitempty"`
	Currency    string          `json:"currency,omitempty"`
	Description string          `json:"description,omitempty"`
}

// Invoice is an invoice's summary: the data of every billfn.invoice.* fact
// but payment_unapplied.
type Invoice struct {
	InvoiceID        string     `json:"invoice_id"`
	Number           *string    `json:"number"` // null while a draft
	AccountID        string     `json:"account_id"`
	UserID           string     `json:"user_id"`
	SubscriptionID   *string    `json:"subscription_id"`
	Currency         string     `json:"currency"`
	Subtotal         int64      `json:"subtotal"`
	Discount         int64      `json:"discount"`
	Tax              int64      `json:"tax"`
	Total            int64      `json:"total"`
	AmountPaid       int64      `json:"amount_paid"`
	AmountDue        int64      `json:"amount_due"`
	AmountRefunded   int64      `json:"amount_refunded"`
	Status           string     `json:"status"` // draft, open, paid, void, uncollectible
	Overdue          bool       `json:"overdue"`
	DueDate          *string    `json:"due_date"` // YYYY-MM-DD
	CollectionMethod string     `json:"collection_method"`
	BillingReason    string     `json:"billing_reason"`
	PeriodStart      *time.Time `json:"period_start"`
	PeriodEnd        *time.Time `json:"period_end"`
	FinalizedAt      *time.Time `json:"finalized_at"`
	PaidAt           *time.Time `json:"paid_at"`
	Attempt          int        `json:"attempt,omitempty"` // payment_retry_requested only
}

// PaymentUnapplied is the data of billfn.invoice.payment_unapplied: money
// of a payment its invoice did not need.
type PaymentUnapplied struct {
	PaymentID         string `json:"payment_id"`
	InvoiceID         string `json:"invoice_id"`
	AccountID         string `json:"account_id"`
	UserID            string `json:"user_id"`
	Amount            int64  `json:"amount"`
	Currency          string `json:"currency"`
	Reason            string `json:"reason"` // invoice_paid, invoice_void, overpayment, currency_mismatch
	InvoiceStatus     string `json:"invoice_status"`
	InvoiceTotal      int64  `json:"invoice_total"`
	InvoiceAmountPaid int64  `json:"invoice_amount_paid"`
	InvoiceCurrency   string `json:"invoice_currency"`
}

// Subscription is a subscription's summary: the data of every
// billfn.subscription.* fact.
type Subscription struct {
	SubscriptionID     string     `json:"subscription_id"`
	AccountID          string     `json:"account_id"`
	UserID             string     `json:"user_id"`
	Status             string     `json:"status"`
	Plan               Plan       `json:"plan"`
	MRR                int64      `json:"mrr"`
	Currency           string     `json:"currency"`
	CurrentPeriodStart *time.Time `json:"current_period_start"`
	CurrentPeriodEnd   *time.Time `json:"current_period_end"`
	CancelAt           *time.Time `json:"cancel_at"`
	CanceledAt         *time.Time `json:"canceled_at"`
}

// Plan is what a subscription bills each period.
type Plan struct {
	Name          string `json:"name"`
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	Interval      string `json:"interval"` // day, week, month, year
	IntervalCount int    `json:"interval_count"`
}

// NotificationRequested is the data of billfn.notification.requested: a
// message to the customer about an invoice, or about a subscription
// (subscription_changed, subscription_canceled: SubscriptionID set,
// InvoiceID empty).
type NotificationRequested struct {
	Kind      string  `json:"kind"` // invoice_finalized, invoice_paid, payment_failed, invoice_overdue, invoice_reminder, subscription_changed, subscription_canceled
	AccountID string  `json:"account_id"`
	UserID    string  `json:"user_id"`
	InvoiceID string  `json:"invoice_id"`
	Number    *string `json:"number"`
	AmountDue int64   `json:"amount_due"`
	Currency  string  `json:"currency"`
	DueDate   *string `json:"due_date"` // YYYY-MM-DD
	Email     string  `json:"email,omitempty"`
	// AmountPaid is what the invoice has received (invoice_paid: its total).
	AmountPaid int64 `json:"amount_paid,omitempty"`
	// Attempt is the dunning step of an invoice_reminder (1, 2, …).
	Attempt int `json:"attempt,omitempty"`
	// Reason is why a payment failed (payment_failed): decline code and reason.
	Reason string `json:"reason,omitempty"`
	// SubscriptionID names the subscription of a subscription_* notice.
	SubscriptionID string `json:"subscription_id,omitempty"`
	// Plan is the subscription's plan: the new one (subscription_changed),
	// the one that ended (subscription_canceled).
	Plan *Plan `json:"plan,omitempty"`
	// PreviousPlan is the plan before a subscription_changed.
	PreviousPlan *Plan `json:"previous_plan,omitempty"`
	// EndedAt is when a canceled subscription ended (subscription_canceled).
	EndedAt *time.Time `json:"ended_at,omitempty"`
}

// Notification kinds (NotificationRequested.Kind).
const (
	NotifyInvoiceFinalized = "invoice_finalized"
	NotifyInvoicePaid      = "invoice_paid"
	NotifyPaymentFailed    = "payment_failed"
	NotifyInvoiceOverdue   = "invoice_overdue"
	NotifyInvoiceReminder  = "invoice_reminder"
	// A subscription's plan changed (name, price or interval).
	NotifySubscriptionChanged = "subscription_changed"
	// A subscription ended (canceled at once, or its scheduled end came).
	NotifySubscriptionCanceled = "subscription_canceled"
)

// Payment is a payment as capture-payment keeps it: the data of
// billfn.payment.created, updated, authorized, canceled and disputed, and
// the base of PaymentCaptured and PaymentFailed.
type Payment struct {
	PaymentID           string            `json:"payment_id"`
	AccountID           string            `json:"account_id"`
	UserID              string            `json:"user_id"`
	InvoiceID           *string           `json:"invoice_id"`
	Amount              int64             `json:"amount"`
	Currency            string            `json:"currency"`
	Status              string            `json:"status"`
	Gateway             *string           `json:"gateway"`
	GatewayPaymentID    *string           `json:"gateway_payment_id"`
	CaptureMethod       string            `json:"capture_method"`
	PaymentMethod       *string           `json:"payment_method"`
	AmountCapturable    int64             `json:"amount_capturable"`
	AmountCaptured      int64             `json:"amount_captured"`
	AmountRefunded      int64             `json:"amount_refunded"`
	AmountRefundPending int64             `json:"amount_refund_pending"`
	Attempts            int               `json:"attempts"`
	PendingOperation    *string           `json:"pending_operation"`
	Description         string            `json:"description"`
	Metadata            map[string]string `json:"metadata"`
	LastPaymentError    *PaymentError     `json:"last_payment_error"`
	NextAction          *NextAction       `json:"next_action"`
	CancellationReason  *string           `json:"cancellation_reason"`
	DisputedAt          *time.Time        `json:"disputed_at"`
	AuthorizedAt        *time.Time        `json:"authorized_at"`
	CapturedAt          *time.Time        `json:"captured_at"`
	CanceledAt          *time.Time        `json:"canceled_at"`
	CreatedAt           time.Time         `json:"created_at"`
	UpdatedAt           time.Time         `json:"updated_at"`
}

// PaymentError is why a payment's last attempt failed.
type PaymentError struct {
	Code        string `json:"code"`
	DeclineCode string `json:"decline_code,omitempty"`
	Reason      string `json:"reason"`
	Message     string `json:"message,omitempty"`
	Attempt     int    `json:"attempt"`
	Gateway     string `json:"gateway"`
}

// NextAction is what the customer must do before the payment proceeds.
type NextAction struct {
	Type string `json:"type"` // authenticate
}

// PaymentCaptured is the data of billfn.payment.captured: the payment with
// Amount = this capture (the payment's own amount is PaymentAmount).
type PaymentCaptured struct {
	Payment
	Amount        int64 `json:"amount"`
	PaymentAmount int64 `json:"payment_amount"`
}

// PaymentFailed is the data of billfn.payment.failed: the payment and why
// its attempt failed.
type PaymentFailed struct {
	Payment
	DeclineCode    string `json:"decline_code"`
	FailureCode    string `json:"failure_code"`
	FailureReason  string `json:"failure_reason"`
	FailureMessage string `json:"failure_message"`
	Attempt        int    `json:"attempt"`
}

// Refund is a refund as capture-payment keeps it: the data of
// billfn.refund.succeeded and billfn.refund.failed.
type Refund struct {
	RefundID         string  `json:"refund_id"`
	PaymentID        string  `json:"payment_id"`
	AccountID        string  `json:"account_id"`
	UserID           string  `json:"user_id"`
	InvoiceID        *string `json:"invoice_id"`
	Amount           int64   `json:"amount"`
	Currency         string  `json:"currency"`
	Gateway          string  `json:"gateway"`
	GatewayRefundID  *string `json:"gateway_refund_id"`
	GatewayPaymentID *string `json:"gateway_payment_id"`
	Status           string  `json:"status"` // pending, succeeded, failed, canceled
	Reason           string  `json:"reason"`
	FailureReason    *string `json:"failure_reason"`
	LedgerHoldID     *string `json:"ledger_hold_id"`
	// Reversed is set on the billfn.refund.failed of a refund that had
	// succeeded: the money came back (a refund_reversal posting goes with
	// it). Its success may never have been announced under this id: a
	// refund the gateway first reported inside a charge's running total
	// was announced as part of that total's refund.
	Reversed  bool      `json:"reversed,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Spec is one row of the contract: an event type, the topic it travels
// on, who may emit it, and the Go type of its data.
type Spec struct {
	Type  string
	Topic string
	// Emitter is the function that owns the fact: consumers accept it only
	// from Source(Emitter). Empty for a command, which any source may emit
	// (who may write its topic is the broker's ACLs' business).
	Emitter string
	// Data is a zero value of the type of the event's data.
	Data any
}

// Command reports whether any source may emit the type.
func (s Spec) Command() bool { return s.Emitter == "" }

// contract is every event type of billfn. docs/events.md documents each
// row (TestDocsDescribeEveryEventType).
var contract = []Spec{
	{TypeTransactionRequested, TopicTransaction, "", TransactionRequested{}},
	{TypeTransactionPosted, TopicTransaction, "process-transaction", Transfer{}},
	{TypeTransactionRejected, TopicTransaction, "process-transaction", Transfer{}},
	{TypeHoldCreated, TopicTransaction, "process-transaction", Transfer{}},
	{TypeHoldCaptured, TopicTransaction, "process-transaction", Transfer{}},
	{TypeHoldVoided, TopicTransaction, "process-transaction", Transfer{}},
	{TypeHoldExpired, TopicTransaction, "process-transaction", Transfer{}},
	// Refund holds are resolved by capture-payment.
	{TypeHoldCaptureRequested, TopicTransaction, "capture-payment", HoldResolution{}},
	{TypeHoldVoidRequested, TopicTransaction, "capture-payment", HoldResolution{}},

	{TypeAccountCreated, TopicUser, "process-transaction", Account{}},
	{TypeAccountUpdated, TopicUser, "process-transaction", Account{}},

	{TypeInvoiceRequested, TopicBilling, "", InvoiceRequested{}},
	{TypeInvoiceCreated, TopicBilling, "generate-invoice", Invoice{}},
	{TypeInvoiceFinalized, TopicBilling, "generate-invoice", Invoice{}},
	{TypeInvoicePaid, TopicBilling, "generate-invoice", Invoice{}},
	{TypeInvoiceVoided, TopicBilling, "generate-invoice", Invoice{}},
	{TypeInvoiceOverdue, TopicBilling, "generate-invoice", Invoice{}},
	{TypeInvoiceUncollectible, TopicBilling, "generate-invoice", Invoice{}},
	{TypeInvoicePaymentRetryRequested, TopicBilling, "generate-invoice", Invoice{}},
	{TypeInvoicePaymentUnapplied, TopicBilling, "generate-invoice", PaymentUnapplied{}},
	{TypeSubscriptionCreated, TopicBilling, "generate-invoice", Subscription{}},
	{TypeSubscriptionUpdated, TopicBilling, "generate-invoice", Subscription{}},
	{TypeSubscriptionCanceled, TopicBilling, "generate-invoice", Subscription{}},
	{TypeNotificationRequested, TopicBilling, "generate-invoice", NotificationRequested{}},

	{TypePaymentCreated, TopicPayment, "capture-payment", Payment{}},
	{TypePaymentUpdated, TopicPayment, "capture-payment", Payment{}},
	{TypePaymentAuthorized, TopicPayment, "capture-payment", Payment{}},
	{TypePaymentCaptured, TopicPayment, "capture-payment", PaymentCaptured{}},
	{TypePaymentFailed, TopicPayment, "capture-payment", PaymentFailed{}},
	{TypePaymentCanceled, TopicPayment, "capture-payment", Payment{}},
	{TypePaymentDisputed, TopicPayment, "capture-payment", Payment{}},
	{TypeRefundSucceeded, TopicPayment, "capture-payment", Refund{}},
	{TypeRefundFailed, TopicPayment, "capture-payment", Refund{}},
	// Gateway updates come from handle-webhook.
	{TypeGatewayUpdated, TopicPayment, "handle-webhook", GatewayUpdate{}},
	// An outgoing-webhook endpoint disabled by handle-webhook (endpoint.go).
	{TypeWebhookEndpointDisabled, TopicPayment, "handle-webhook", WebhookEndpointDisabled{}},
}

var specs = func() map[string]Spec {
	m := make(map[string]Spec, len(contract))
	for _, s := range contract {
		if _, dup := m[s.Type]; dup {
			panic("events: " + s.Type + " twice in the contract")
		}
		m[s.Type] = s
	}
	return m
}()

// Contract returns every row of the contract, in docs/events.md's order.
func Contract() []Spec { return append([]Spec(nil), contract...) }

// SpecOf returns the contract's row for typ; false for a type it does not
// list.
func SpecOf(typ string) (Spec, bool) {
	s, ok := specs[typ]
	return s, ok
}
