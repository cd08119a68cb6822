package payments

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/money"
)

// Gateway is a payment gateway: Stripe or the built-in sandbox. Every call
// carries an idempotency key derived from the payment id (and attempt, or
// refund id), so repeating a call after a crash or a timeout never charges,
// captures or refunds twice.
//
// A call returns the gateway's state of the payment object, or a
// *GatewayError when no state came back. A decline is a state (status
// requires_payment_method with Decline set), not an error.
type Gateway interface {
	Name() string
	// Charge creates the payment object when gatewayPaymentID is empty,
	// and confirms it with the payment method.
	Charge(ctx context.Context, req ChargeRequest) (GatewayState, error)
	Capture(ctx context.Context, req CaptureRequest) (GatewayState, error)
	Cancel(ctx context.Context, req CancelRequest) (GatewayState, error)
	// Retrieve asks for the current state of a payment object.
	Retrieve(ctx context.Context, gatewayPaymentID string) (GatewayState, error)
	Refund(ctx context.Context, req RefundRequest) (RefundResult, error)
	RetrieveRefund(ctx context.Context, gatewayRefundID string) (RefundResult, error)
}

// ChargeRequest asks a gateway to create and confirm, or to confirm again.
type ChargeRequest struct {
	PaymentID        string
	Key              string // idempotency key
	GatewayPaymentID string // the existing object, or "" to create one
	Amount           int64
	Currency         money.Currency
	PaymentMethod    string // a gateway token
	CaptureMethod    string
	Description      string
}

// CaptureRequest captures amount of an authorization (the rest is released).
type CaptureRequest struct {
	PaymentID, GatewayPaymentID, Key string
	Amount                           int64
}

// CancelRequest cancels a payment object.
type CancelRequest struct {
	PaymentID, GatewayPaymentID, Key, Reason string
}

// RefundRequest refunds part or all of a captured payment.
type RefundRequest struct {
	PaymentID, RefundID, GatewayPaymentID, Key string
	Amount                                     int64
	Currency                                   money.Currency
	Reason                                     string
}

// RefundResult is a gateway's refund.
type RefundResult struct {
	GatewayRefundID string
	Status          string // pending, requires_action, succeeded, failed, canceled
	FailureReason   string
}

// GatewayError is a call that brought back no state of the payment object.
type GatewayError struct {
	Gateway string
	Code    string // the gateway's error code, or timeout / unavailable
	Message string
	// Unknown: the gateway may have acted (a timeout, a 5xx). The outcome
	// is settled later by reconciliation; no failover.
	Unknown bool
	// Rejected: the gateway refused the request (4xx), so it did nothing.
	Rejected bool
	Err      error
}

func (e *GatewayError) Error() string {
	s := e.Gateway + ": " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *GatewayError) Unwrap() error { return e.Err }

// Definite reports whether err is a gateway failure after which the
// gateway certainly did nothing: the next gateway may be tried.
func Definite(err error) bool {
	var ge *GatewayError
	return errors.As(err, &ge) && !ge.Unknown
}

// UnknownOutcome reports whether err leaves the outcome of a call unknown.
func UnknownOutcome(err error) bool {
	var ge *GatewayError
	return err != nil && (!errors.As(err, &ge) || ge.Unknown)
}

// Gateway names.
const (
	GatewayStripe  = "stripe"
	GatewaySandbox = "sandbox"
)

// Routes maps a currency to the gateways that take it, in priority order;
// "*" is every other currency.
type Routes map[string][]string

// ParseRoutes reads GATEWAY_ROUTES: entries separated by ";", each
// "<CURRENCY or *>=<gateway>[,<gateway>…]", gateways in priority order, for
// example "EUR=stripe,sandbox;USD=stripe;*=sandbox". Currency codes are
// case-insensitive; a currency without an entry uses "*"; without "*" it has
// no route.
func ParseRoutes(s string, known map[string]bool) (Routes, error) {
	r := Routes{}
	for _, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		cur, list, ok := strings.Cut(entry, "=")
		if !ok {
			return nil, fmt.Errorf("GATEWAY_ROUTES: %q is not <CURRENCY>=<gateway>[,<gateway>…]", entry)
		}
		cur = strings.TrimSpace(cur)
		if cur != "*" {
			c, err := money.ParseCurrency(cur)
			if err != nil {
				return nil, fmt.Errorf("GATEWAY_ROUTES: %q is not an ISO 4217 currency", cur)
			}
			cur = string(c)
		}
		if _, dup := r[cur]; dup {
			return nil, fmt.Errorf("GATEWAY_ROUTES: %s is routed twice", cur)
		}
		var gws []string
		for _, g := range strings.Split(list, ",") {
			g = strings.ToLower(strings.TrimSpace(g))
			if !known[g] {
				return nil, fmt.Errorf("GATEWAY_ROUTES: gateway %q of %s is not configured (configured: %s)", g, cur, names(known))
			}
			for _, seen := range gws {
				if seen == g {
					return nil, fmt.Errorf("GATEWAY_ROUTES: gateway %q listed twice for %s", g, cur)
				}
			}
			gws = append(gws, g)
		}
		r[cur] = gws
	}
	if len(r) == 0 {
		return nil, errors.New("GATEWAY_ROUTES routes no currency")
	}
	return r, nil
}

func names(m map[string]bool) string {
	var out []string
	for _, n := range []string{GatewayStripe, GatewaySandbox} {
		if m[n] {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}

// For returns the gateways of currency c in priority order.
func (r Routes) For(c money.Currency) []string {
	if g, ok := r[string(c)]; ok {
		return g
	}
	return r["*"]
}

// GatewayKey derives the idempotency key of a gateway call.
func GatewayKey(paymentID, op string) string { return "billfn-" + paymentID + "-" + op }

// SyncTime is the time of a gateway's synchronous answer, at the one-second
// resolution of gateways' event times so the two compare fairly.
func SyncTime(now time.Time) time.Time { return now.Truncate(time.Second) }

// SandboxObjectID is the sandbox's object id of a payment: deterministic, so
// the id is known before the first call and a retry finds the same object.
func SandboxObjectID(paymentID string) string {
	return "pi_sbx_" + strings.ReplaceAll(paymentID, "-", "")
}
