package payments

import (
	"errors"
	"time"
)

// Attempt is one try of one gateway.
type Attempt struct {
	N                int        `json:"attempt"`
	Gateway          string     `json:"gateway"`
	PaymentMethod    string     `json:"payment_method"`
	Status           string     `json:"status"`
	GatewayPaymentID *string    `json:"gateway_payment_id"`
	FailureCode      *string    `json:"failure_code"`
	DeclineCode      *string    `json:"decline_code"`
	FailureReason    *string    `json:"failure_reason"`
	FailureMessage   *string    `json:"failure_message"`
	GatewayError     bool       `json:"gateway_error"`
	StartedAt        time.Time  `json:"started_at"`
	FinishedAt       *time.Time `json:"finished_at"`
}

// StartAttempt marks p as confirming at gateway with a new attempt.
func StartAttempt(p *Payment, gateway string, now time.Time) Attempt {
	p.Status = Processing
	p.Attempts++
	p.SetOp(OpConfirm, now)
	if p.GatewayName() != gateway {
		p.Gateway, p.GatewayPaymentID = &gateway, nil
	}
	if gateway == GatewaySandbox && p.GatewayPaymentID == nil {
		id := SandboxObjectID(p.ID)
		p.GatewayPaymentID = &id
	}
	p.Touch(now)
	return Attempt{N: p.Attempts, Gateway: gateway, Status: "pending", StartedAt: now}
}

func FailedAttempt(p *Payment, now time.Time, cause error) Attempt {
	a := Attempt{N: p.Attempts, Status: "failed", GatewayPaymentID: p.GatewayPaymentID, GatewayError: true, FinishedAt: &now}
	var ge *GatewayError
	if errors.As(cause, &ge) {
		a.FailureCode, a.FailureMessage = &ge.Code, Nullable(ge.Message)
	}
	reason := "gateway_unavailable"
	a.FailureReason = &reason
	return a
}

// AttemptStatus is an attempt's status after a gateway state.
func AttemptStatus(s Status) string {
	switch s {
	case Succeeded, RequiresCapture, RequiresAction, Processing, Canceled:
		return string(s)
	case RequiresPaymentMethod:
		return "failed"
	}
	return "processing"
}
