package payments

import (
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/money"
)

// Status is a payment's state, with Stripe PaymentIntent semantics.
type Status string

// The payment states. "refunded" is not a state: it is derived from
// amount_refunded against amount_captured, and refunds are their own objects.
const (
	RequiresPaymentMethod Status = "requires_payment_method"
	RequiresConfirmation  Status = "requires_confirmation"
	RequiresAction        Status = "requires_action"
	Processing            Status = "processing"
	RequiresCapture       Status = "requires_capture"
	Succeeded             Status = "succeeded"
	Canceled              Status = "canceled"
)

// rank orders the states along the happy path. A gateway update moves a
// payment only to a higher rank; a decline, which returns a payment to
// requires_payment_method for a new attempt, is the one move down, and only
// for the attempt in flight.
func rank(s Status) int {
	switch s {
	case RequiresPaymentMethod:
		return 0
	case RequiresConfirmation:
		return 1
	case RequiresAction:
		return 2
	case Processing:
		return 3
	case RequiresCapture:
		return 4
	case Succeeded, Canceled:
		return 5
	}
	return -1
}

func (s Status) Terminal() bool { return s == Succeeded || s == Canceled }

// Capture methods.
const (
	CaptureAutomatic = "automatic"
	CaptureManual    = "manual"
)

// Pending gateway operations (payments.pending_op): set in the transaction
// before a gateway call, cleared by its answer (or by reconciliation).
const (
	OpConfirm = "confirm"
	OpCapture = "capture"
	OpCancel  = "cancel"
)

// PaymentError describes why the last attempt failed.
type PaymentError struct {
	Code        string `json:"code"`                   // the gateway's code (card_declined, expired_card, …)
	DeclineCode string `json:"decline_code,omitempty"` // the issuer's decline code, when the gateway gave one
	Reason      string `json:"reason"`                 // normalized reason (see DeclineReason)
	Message     string `json:"message,omitempty"`
	Attempt     int    `json:"attempt"`
	Gateway     string `json:"gateway"`
}

// NextAction tells the client what a payment in requires_action waits for.
type NextAction struct {
	Type string `json:"type"` // "authenticate"
}

// Payment is a payment as the API and the payment events show it.
type Payment struct {
	ID                  string            `json:"id"`
	AccountID           string            `json:"account_id"`
	UserID              string            `json:"user_id"`
	InvoiceID           *string           `json:"invoice_id"`
	Amount              int64             `json:"amount"`
	Currency            money.Currency    `json:"currency"`
	Status              Status            `json:"status"`
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

	RequestedGateway string     `json:"-"`
	Announced        bool       `json:"-"` // payment.created was emitted
	CaptureCount     int        `json:"-"`
	RefundCount      int        `json:"-"`
	OpStartedAt      *time.Time `json:"-"`
	GatewayUpdatedAt *time.Time `json:"-"`
}

// Op is the pending gateway operation ("" when none).
func (p *Payment) Op() string {
	if p.PendingOperation == nil {
		return ""
	}
	return *p.PendingOperation
}

// Touch stamps a change of p at now. Its updated_at is the version a
// guarded write compares (the store's finishing pipeline, the
// reconciliation), so it moves on by at least a microsecond, now or not:
// two writes in one microsecond (a clock standing still, or stepped back)
// would otherwise leave one version for both, and a writer racing from it
// would pass the guard as if nothing had moved.
func (p *Payment) Touch(now time.Time) {
	if now.After(p.UpdatedAt) {
		p.UpdatedAt = now
		return
	}
	p.UpdatedAt = p.UpdatedAt.Add(time.Microsecond)
}

// SetOp marks (or with "" clears) the pending gateway operation.
func (p *Payment) SetOp(op string, now time.Time) {
	if op == "" {
		p.PendingOperation, p.OpStartedAt = nil, nil
		return
	}
	p.PendingOperation, p.OpStartedAt = &op, &now
}

// GatewayName is the gateway of the current attempt ("" before one).
func (p *Payment) GatewayName() string {
	if p.Gateway == nil {
		return ""
	}
	return *p.Gateway
}

// GatewayObject is the gateway's id of the payment object ("" when unknown).
func (p *Payment) GatewayObject() string {
	if p.GatewayPaymentID == nil {
		return ""
	}
	return *p.GatewayPaymentID
}

// Invoice is the id of the invoice p pays ("" when none).
func (p *Payment) Invoice() string {
	if p.InvoiceID == nil {
		return ""
	}
	return *p.InvoiceID
}

// Method is the payment method p was given ("" when none).
func (p *Payment) Method() string {
	if p.PaymentMethod == nil {
		return ""
	}
	return *p.PaymentMethod
}

// Refundable is what refunds may still take.
func (p *Payment) Refundable() int64 {
	return p.AmountCaptured - p.AmountRefunded - p.AmountRefundPending
}

func invalidState(p *Payment, action string) error {
	return apperr.New(CodeInvalidState, "a payment in status %s cannot be %s", p.Status, action).With("payment_status", string(p.Status))
}

func inProgress(p *Payment) error {
	return (&apperr.Error{Code: CodeOpInProgress, RetryAfter: time.Second,
		Detail: "a " + p.Op() + " of this payment is waiting for the gateway; retry shortly"}).With("pending_operation", p.Op())
}

// CheckConfirm says whether p may be confirmed (with method, when given).
func CheckConfirm(p *Payment, method string) error {
	if p.Op() != "" {
		return inProgress(p)
	}
	if p.Amount > MaxAmount {
		return errAmountTooLarge(p.Amount)
	}
	switch p.Status {
	case RequiresPaymentMethod:
		if method == "" {
			return apperr.New(CodeMethodRequired, "the payment has no usable payment method: send payment_method")
		}
	case RequiresConfirmation, RequiresAction:
	default:
		return invalidState(p, "confirmed")
	}
	return nil
}

// CheckCapture returns the amount to capture: all that is capturable unless
// amount (>0) asks for less; the rest is released.
func CheckCapture(p *Payment, amount int64) (int64, error) {
	if p.Op() != "" {
		return 0, inProgress(p)
	}
	if p.Status != RequiresCapture {
		return 0, invalidState(p, "captured")
	}
	if amount == 0 {
		return p.AmountCapturable, nil
	}
	if amount > p.AmountCapturable {
		return 0, apperr.New(CodeExceedsCapturable, "amount %d exceeds the capturable %d", amount, p.AmountCapturable).
			With("amount_capturable", p.AmountCapturable)
	}
	return amount, nil
}

// CheckCancel says whether p may be canceled (Stripe: from every state
// before processing, and from requires_capture, which releases the hold).
func CheckCancel(p *Payment) error {
	if p.Op() != "" {
		return inProgress(p)
	}
	switch p.Status {
	case RequiresPaymentMethod, RequiresConfirmation, RequiresAction, RequiresCapture:
		return nil
	}
	return invalidState(p, "canceled")
}

// CheckRefund returns the amount to refund: all that is refundable unless
// amount (>0) asks for less. A disputed payment is not refunded: its money
// goes back through the dispute (Stripe answers charge_disputed), and a
// refund as well would pay the payer back twice.
func CheckRefund(p *Payment, amount int64) (int64, error) {
	if p.AmountCaptured == 0 {
		return 0, invalidState(p, "refunded")
	}
	if p.DisputedAt != nil {
		return 0, apperr.New(CodeChargeDisputed, "the payment is disputed: its money goes back through the dispute, not a refund").
			With("disputed_at", p.DisputedAt.UTC())
	}
	left := p.Refundable()
	if amount == 0 {
		amount = left
	}
	if left == 0 || amount > left {
		return 0, apperr.New(CodeExceedsRefundable, "amount %d exceeds the refundable %d", amount, left).
			With("amount_refundable", left)
	}
	return amount, nil
}

// GatewayState is what a gateway says about a payment object: the answer
// to a call, a retrieval, or a webhook.
type GatewayState struct {
	GatewayPaymentID string
	Status           Status // requires_payment_method means the attempt failed (Decline says why)
	AmountCapturable int64
	AmountReceived   int64
	Decline          *Decline
	At               time.Time // the gateway's time of this state
}

// Decline is a failed attempt's cause.
type Decline struct {
	Code        string // the gateway's code
	DeclineCode string
	Message     string
}

// Change is what applying a gateway state did, for the events and postings.
type Change struct {
	Authorized bool
	Captured   int64 // amount captured by this change
	Failed     bool
	Canceled   bool
	Updated    bool // another visible change (processing, requires_action)
}

func (c Change) Any() bool {
	return c.Authorized || c.Captured > 0 || c.Failed || c.Canceled || c.Updated
}

// ApplyGateway moves p according to a gateway state. answer is true when st
// answers the operation p is marked as waiting for: that answer is
// authoritative for the attempt. Otherwise st comes from a webhook or a
// later look-up and only moves p forward, so duplicates, late and reordered
// deliveries change nothing.
func ApplyGateway(p *Payment, st GatewayState, answer bool, attempt int, now time.Time) Change {
	var c Change
	if p.Status.Terminal() {
		return c
	}
	stale := p.GatewayUpdatedAt != nil && st.At.Before(*p.GatewayUpdatedAt)
	// While our own call is in flight only its answer may fail the attempt
	// or ask for an action; a webhook may still move the payment forward.
	mine := answer || (p.Op() == "" && !stale)
	switch st.Status {
	case Succeeded:
		received := st.AmountReceived
		if received <= 0 { // a gateway that does not say: all that was capturable
			received = p.Amount
			if p.AmountCapturable > 0 {
				received = p.AmountCapturable
			}
		}
		received = min(received, p.Amount)
		if received > p.AmountCaptured {
			c.Captured = received - p.AmountCaptured
			p.AmountCaptured = received
			p.CaptureCount++
		}
		p.Status, p.AmountCapturable, p.LastPaymentError = Succeeded, 0, nil
		p.CapturedAt = &now
		if p.AuthorizedAt == nil {
			p.AuthorizedAt = &now
		}
	case RequiresCapture:
		if rank(p.Status) >= rank(RequiresCapture) {
			return c
		}
		capturable := st.AmountCapturable
		if capturable <= 0 || capturable > p.Amount {
			capturable = p.Amount
		}
		p.Status, p.AmountCapturable, p.LastPaymentError = RequiresCapture, capturable, nil
		p.AuthorizedAt = &now
		c.Authorized = true
	case Canceled:
		p.Status, p.AmountCapturable = Canceled, 0
		p.CanceledAt = &now
		if p.CancellationReason == nil {
			r := "gateway"
			p.CancellationReason = &r
		}
		c.Canceled = true
	case Processing:
		switch {
		case p.Status == Processing:
			// processing is also our own in-flight marker: the answer to
			// our confirmation "still processing" is news (the gateway
			// object is known now); a later look-up saying so is not.
			c.Updated = answer && p.Op() == OpConfirm
		case rank(p.Status) < rank(Processing):
			p.Status = Processing
			c.Updated = true
		default:
			return c
		}
	case RequiresAction:
		if p.Status == RequiresAction || !(rank(p.Status) < rank(RequiresAction) || (p.Status == Processing && mine)) {
			return c
		}
		p.Status = RequiresAction
		c.Updated = true
	case RequiresPaymentMethod:
		if !mine || !(p.Status == Processing || p.Status == RequiresAction || p.Status == RequiresConfirmation) {
			return c
		}
		p.Status, p.AmountCapturable = RequiresPaymentMethod, 0
		d := st.Decline
		if d == nil {
			d = &Decline{Code: "payment_failed"}
		}
		p.LastPaymentError = &PaymentError{Code: d.Code, DeclineCode: d.DeclineCode, Reason: DeclineReason(d),
			Message: d.Message, Attempt: attempt, Gateway: p.GatewayName()}
		c.Failed = true
	default:
		return c
	}
	if st.GatewayPaymentID != "" && p.GatewayPaymentID == nil {
		id := st.GatewayPaymentID
		p.GatewayPaymentID = &id
	}
	if p.GatewayUpdatedAt == nil || st.At.After(*p.GatewayUpdatedAt) {
		at := st.At
		p.GatewayUpdatedAt = &at
	}
	p.Touch(now)
	return c
}

// DeclineReason normalizes a gateway's decline into billfn's reasons.
func DeclineReason(d *Decline) string {
	code := d.DeclineCode
	if code == "" {
		code = d.Code
	}
	switch code {
	case "insufficient_funds", "balance_insufficient":
		return "insufficient_funds"
	case "expired_card":
		return "expired_card"
	case "fraudulent", "merchant_blacklist", "security_violation":
		return "fraudulent"
	case "lost_card", "stolen_card", "pickup_card", "restricted_card":
		return "lost_or_stolen"
	case "incorrect_cvc", "invalid_cvc":
		return "incorrect_cvc"
	case "incorrect_number", "invalid_number":
		return "incorrect_number"
	case "authentication_required", "payment_intent_authentication_failure":
		return "authentication_required"
	case "processing_error", "try_again_later", "issuer_not_available", "reenter_transaction":
		return "processing_error"
	case "card_velocity_exceeded", "withdrawal_count_limit_exceeded":
		return "velocity_exceeded"
	case "gateway_unavailable":
		return "gateway_unavailable"
	case "resource_missing", "payment_method_invalid":
		return "invalid_payment_method"
	}
	return "generic_decline"
}

// Finish fills the derived members of the API view.
func (p *Payment) Finish() {
	if p.Metadata == nil {
		p.Metadata = map[string]string{}
	}
	p.NextAction = nil
	if p.Status == RequiresAction {
		p.NextAction = &NextAction{Type: "authenticate"}
	}
}
