package main

import (
	"net/http"
	"time"

	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
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

func (s Status) terminal() bool { return s == Succeeded || s == Canceled }

// Capture methods.
const (
	CaptureAutomatic = "automatic"
	CaptureManual    = "manual"
)

// Pending gateway operations (payments.pending_op): set in the transaction
// before a gateway call, cleared by its answer (or by reconciliation).
const (
	opConfirm = "confirm"
	opCapture = "capture"
	opCancel  = "cancel"
)

// Problem codes of capture-payment.
const (
	codeInvalidState       problem.Code = "payment_invalid_state"
	codeOpInProgress       problem.Code = "payment_operation_in_progress"
	codeExceedsCapturable  problem.Code = "amount_exceeds_capturable"
	codeExceedsRefundable  problem.Code = "amount_exceeds_refundable"
	codeMethodRequired     problem.Code = "payment_method_required"
	codeMethodInvalid      problem.Code = "payment_method_invalid"
	codeGatewayUnavailable problem.Code = "gateway_unavailable"
	codeGatewayRejected    problem.Code = "gateway_rejected"
	codeNoRoute            problem.Code = "currency_not_supported"
	codeCardNumber                      = problem.CardNumberRejected // shared/pan's
)

func init() {
	problem.Register(codeInvalidState, http.StatusConflict, "The payment's state does not allow this operation")
	problem.Register(codeOpInProgress, http.StatusConflict, "Another operation on this payment is in progress")
	problem.Register(codeExceedsCapturable, http.StatusUnprocessableEntity, "Amount exceeds the capturable amount")
	problem.Register(codeExceedsRefundable, http.StatusUnprocessableEntity, "Amount exceeds the refundable amount")
	problem.Register(codeMethodRequired, http.StatusUnprocessableEntity, "A payment method is required")
	problem.Register(codeMethodInvalid, http.StatusUnprocessableEntity, "The payment method cannot be used")
	problem.Register(codeGatewayUnavailable, http.StatusServiceUnavailable, "The payment gateway is unavailable")
	problem.Register(codeGatewayRejected, http.StatusConflict, "The payment gateway refused the operation")
	problem.Register(codeNoRoute, http.StatusUnprocessableEntity, "No gateway is configured for this currency")
}

// PaymentError describes why the last attempt failed.
type PaymentError struct {
	Code        string `json:"code"`                   // the gateway's code (card_declined, expired_card, …)
	DeclineCode string `json:"decline_code,omitempty"` // the issuer's decline code, when the gateway gave one
	Reason      string `json:"reason"`                 // normalized reason (see declineReason)
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
	ID                  string            `json:"payment_id"`
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

	requestedGateway string
	announced        bool // payment.created was emitted
	captureCount     int
	refundCount      int
	opStartedAt      *time.Time
	gatewayUpdatedAt *time.Time
}

func (p *Payment) op() string {
	if p.PendingOperation == nil {
		return ""
	}
	return *p.PendingOperation
}

func (p *Payment) setOp(op string, now time.Time) {
	if op == "" {
		p.PendingOperation, p.opStartedAt = nil, nil
		return
	}
	p.PendingOperation, p.opStartedAt = &op, &now
}

func (p *Payment) gateway() string {
	if p.Gateway == nil {
		return ""
	}
	return *p.Gateway
}

func (p *Payment) gatewayPaymentID() string {
	if p.GatewayPaymentID == nil {
		return ""
	}
	return *p.GatewayPaymentID
}

func (p *Payment) invoiceID() string {
	if p.InvoiceID == nil {
		return ""
	}
	return *p.InvoiceID
}

func (p *Payment) method() string {
	if p.PaymentMethod == nil {
		return ""
	}
	return *p.PaymentMethod
}

// refundable is what refunds may still take.
func (p *Payment) refundable() int64 {
	return p.AmountCaptured - p.AmountRefunded - p.AmountRefundPending
}

func invalidState(p *Payment, action string) error {
	return problem.New(codeInvalidState, "a payment in status %s cannot be %s", p.Status, action).With("status", string(p.Status))
}

func inProgress(p *Payment) error {
	return (&problem.Error{Code: codeOpInProgress, RetryAfter: time.Second,
		Detail: "a " + p.op() + " of this payment is waiting for the gateway; retry shortly"}).With("pending_operation", p.op())
}

// checkConfirm says whether p may be confirmed (with method, when given).
func checkConfirm(p *Payment, method string) error {
	if p.op() != "" {
		return inProgress(p)
	}
	switch p.Status {
	case RequiresPaymentMethod:
		if method == "" {
			return problem.New(codeMethodRequired, "the payment has no usable payment method: send payment_method")
		}
	case RequiresConfirmation, RequiresAction:
	default:
		return invalidState(p, "confirmed")
	}
	return nil
}

// checkCapture returns the amount to capture: all that is capturable unless
// amount (>0) asks for less; the rest is released.
func checkCapture(p *Payment, amount int64) (int64, error) {
	if p.op() != "" {
		return 0, inProgress(p)
	}
	if p.Status != RequiresCapture {
		return 0, invalidState(p, "captured")
	}
	if amount == 0 {
		return p.AmountCapturable, nil
	}
	if amount > p.AmountCapturable {
		return 0, problem.New(codeExceedsCapturable, "amount %d exceeds the capturable %d", amount, p.AmountCapturable).
			With("amount_capturable", p.AmountCapturable)
	}
	return amount, nil
}

// checkCancel says whether p may be canceled (Stripe: from every state
// before processing, and from requires_capture, which releases the hold).
func checkCancel(p *Payment) error {
	if p.op() != "" {
		return inProgress(p)
	}
	switch p.Status {
	case RequiresPaymentMethod, RequiresConfirmation, RequiresAction, RequiresCapture:
		return nil
	}
	return invalidState(p, "canceled")
}

// checkRefund returns the amount to refund: all that is refundable unless
// amount (>0) asks for less.
func checkRefund(p *Payment, amount int64) (int64, error) {
	if p.AmountCaptured == 0 {
		return 0, invalidState(p, "refunded")
	}
	left := p.refundable()
	if amount == 0 {
		amount = left
	}
	if left == 0 || amount > left {
		return 0, problem.New(codeExceedsRefundable, "amount %d exceeds the refundable %d", amount, left).
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

// change is what applying a gateway state did, for the events and postings.
type change struct {
	authorized bool
	captured   int64 // amount captured by this change
	failed     bool
	canceled   bool
	updated    bool // another visible change (processing, requires_action)
}

func (c change) any() bool {
	return c.authorized || c.captured > 0 || c.failed || c.canceled || c.updated
}

// applyGateway moves p according to a gateway state. answer is true when st
// answers the operation p is marked as waiting for: that answer is
// authoritative for the attempt. Otherwise st comes from a webhook or a
// later look-up and only moves p forward, so duplicates, late and reordered
// deliveries change nothing.
func applyGateway(p *Payment, st GatewayState, answer bool, attempt int, now time.Time) change {
	var c change
	if p.Status.terminal() {
		return c
	}
	stale := p.gatewayUpdatedAt != nil && st.At.Before(*p.gatewayUpdatedAt)
	// While our own call is in flight only its answer may fail the attempt
	// or ask for an action; a webhook may still move the payment forward.
	mine := answer || (p.op() == "" && !stale)
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
			c.captured = received - p.AmountCaptured
			p.AmountCaptured = received
			p.captureCount++
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
		c.authorized = true
	case Canceled:
		p.Status, p.AmountCapturable = Canceled, 0
		p.CanceledAt = &now
		if p.CancellationReason == nil {
			r := "gateway"
			p.CancellationReason = &r
		}
		c.canceled = true
	case Processing:
		switch {
		case p.Status == Processing:
			// processing is also our own in-flight marker: the answer to
			// our confirmation "still processing" is news (the gateway
			// object is known now); a later look-up saying so is not.
			c.updated = answer && p.op() == opConfirm
		case rank(p.Status) < rank(Processing):
			p.Status = Processing
			c.updated = true
		default:
			return c
		}
	case RequiresAction:
		if p.Status == RequiresAction || !(rank(p.Status) < rank(RequiresAction) || (p.Status == Processing && mine)) {
			return c
		}
		p.Status = RequiresAction
		c.updated = true
	case RequiresPaymentMethod:
		if !mine || !(p.Status == Processing || p.Status == RequiresAction || p.Status == RequiresConfirmation) {
			return c
		}
		p.Status, p.AmountCapturable = RequiresPaymentMethod, 0
		d := st.Decline
		if d == nil {
			d = &Decline{Code: "payment_failed"}
		}
		p.LastPaymentError = &PaymentError{Code: d.Code, DeclineCode: d.DeclineCode, Reason: declineReason(d),
			Message: d.Message, Attempt: attempt, Gateway: p.gateway()}
		c.failed = true
	default:
		return c
	}
	if st.GatewayPaymentID != "" && p.GatewayPaymentID == nil {
		id := st.GatewayPaymentID
		p.GatewayPaymentID = &id
	}
	if p.gatewayUpdatedAt == nil || st.At.After(*p.gatewayUpdatedAt) {
		at := st.At
		p.gatewayUpdatedAt = &at
	}
	p.UpdatedAt = now
	return c
}

// declineReason normalizes a gateway's decline into billfn's reasons.
func declineReason(d *Decline) string {
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
