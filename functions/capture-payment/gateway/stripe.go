package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v83"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/sandbox"
	"github.com/billfn/billfn/shared/telemetry"
)

// Stripe is Stripe's PaymentIntents and Refunds through stripe-go.
// Every call sends an idempotency key derived from our payment id (and the
// attempt, or the refund id), so stripe-go's own retries and our
// reconciliation repeat a call safely. STRIPE_API_BASE points it at
// stripe-mock (tests and the local stack).
type Stripe struct {
	key      *config.Live // the stripe-api-key secret, followed when rotated
	backends *stripe.Backends
	client   atomic.Pointer[keyedClient]
	now      func() time.Time
}

// keyedClient is stripe-go's client for one API key: stripe-go fixes the
// key at construction, so a rotated key gets a new client over the same
// backends (HTTP client, retries).
type keyedClient struct {
	key    string
	client *stripe.Client
}

// NewStripe builds the adapter; transport is nil but for tests that watch
// the requests.
func NewStripe(key *config.Live, base string, retries int64, timeout time.Duration, now func() time.Time, transport http.RoundTripper) *Stripe {
	cfg := &stripe.BackendConfig{
		// The HTTP timeout bounds one try; the caller's context bounds
		// the call with its retries.
		// Each call to Stripe is a client span of the payment's trace.
		HTTPClient:        &http.Client{Timeout: timeout, Transport: telemetry.Transport(transport)},
		MaxNetworkRetries: stripe.Int64(retries),
		LeveledLogger:     stripeLogger{},
	}
	if base != "" {
		cfg.URL = stripe.String(base)
	}
	return &Stripe{key: key, backends: stripe.NewBackendsWithConfig(cfg), now: now}
}

// api is the client for the key in force.
func (g *Stripe) api() *stripe.Client {
	key := g.key.Value()
	if c := g.client.Load(); c != nil && c.key == key {
		return c.client
	}
	c := &keyedClient{key: key, client: stripe.NewClient(key, stripe.WithBackends(g.backends))}
	g.client.Store(c)
	return c.client
}

func (g *Stripe) Name() string { return payments.GatewayStripe }

// Charge creates a PaymentIntent with confirm=true, or confirms an existing
// one again with a new payment method.
func (g *Stripe) Charge(ctx context.Context, req payments.ChargeRequest) (payments.GatewayState, error) {
	var (
		pi  *stripe.PaymentIntent
		err error
	)
	if req.GatewayPaymentID == "" {
		p := &stripe.PaymentIntentCreateParams{
			Amount:        stripe.Int64(req.Amount),
			Currency:      stripe.String(strings.ToLower(string(req.Currency))),
			PaymentMethod: stripe.String(req.PaymentMethod),
			Confirm:       stripe.Bool(true),
			CaptureMethod: stripe.String(req.CaptureMethod),
			Metadata:      map[string]string{sandbox.MetadataPaymentID: req.PaymentID},
			// A server-side confirmation cannot follow a redirect.
			AutomaticPaymentMethods: &stripe.PaymentIntentCreateAutomaticPaymentMethodsParams{
				Enabled: stripe.Bool(true), AllowRedirects: stripe.String("never")},
		}
		if req.Description != "" {
			p.Description = stripe.String(req.Description)
		}
		p.SetIdempotencyKey(req.Key)
		pi, err = g.api().V1PaymentIntents.Create(ctx, p)
	} else {
		p := &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String(req.PaymentMethod)}
		p.SetIdempotencyKey(req.Key)
		pi, err = g.api().V1PaymentIntents.Confirm(ctx, req.GatewayPaymentID, p)
	}
	return g.answer(pi, err)
}

// Capture captures amount_to_capture; Stripe releases the rest.
func (g *Stripe) Capture(ctx context.Context, req payments.CaptureRequest) (payments.GatewayState, error) {
	p := &stripe.PaymentIntentCaptureParams{AmountToCapture: stripe.Int64(req.Amount)}
	p.SetIdempotencyKey(req.Key)
	pi, err := g.api().V1PaymentIntents.Capture(ctx, req.GatewayPaymentID, p)
	return g.answer(pi, err)
}

// stripeCancelReasons are the cancellation reasons Stripe accepts.
var stripeCancelReasons = map[string]bool{"duplicate": true, "fraudulent": true, "requested_by_customer": true, "abandoned": true}

// Cancel cancels a PaymentIntent.
func (g *Stripe) Cancel(ctx context.Context, req payments.CancelRequest) (payments.GatewayState, error) {
	p := &stripe.PaymentIntentCancelParams{}
	if stripeCancelReasons[req.Reason] {
		p.CancellationReason = stripe.String(req.Reason)
	}
	p.SetIdempotencyKey(req.Key)
	pi, err := g.api().V1PaymentIntents.Cancel(ctx, req.GatewayPaymentID, p)
	return g.answer(pi, err)
}

// Retrieve reads a PaymentIntent.
func (g *Stripe) Retrieve(ctx context.Context, id string) (payments.GatewayState, error) {
	pi, err := g.api().V1PaymentIntents.Retrieve(ctx, id, &stripe.PaymentIntentRetrieveParams{})
	return g.answer(pi, err)
}

// stripeRefundReasons are the refund reasons Stripe accepts.
var stripeRefundReasons = map[string]bool{"duplicate": true, "fraudulent": true, "requested_by_customer": true}

// Refund creates a Refund of the PaymentIntent.
func (g *Stripe) Refund(ctx context.Context, req payments.RefundRequest) (payments.RefundResult, error) {
	p := &stripe.RefundCreateParams{
		PaymentIntent: stripe.String(req.GatewayPaymentID),
		Amount:        stripe.Int64(req.Amount),
		Metadata:      map[string]string{sandbox.MetadataPaymentID: req.PaymentID, sandbox.MetadataRefundID: req.RefundID},
	}
	if stripeRefundReasons[req.Reason] {
		p.Reason = stripe.String(req.Reason)
	}
	p.SetIdempotencyKey(req.Key)
	r, err := g.api().V1Refunds.Create(ctx, p)
	return refundAnswer(r, err)
}

// RetrieveRefund reads a Refund.
func (g *Stripe) RetrieveRefund(ctx context.Context, id string) (payments.RefundResult, error) {
	r, err := g.api().V1Refunds.Retrieve(ctx, id, &stripe.RefundRetrieveParams{})
	return refundAnswer(r, err)
}

func refundAnswer(r *stripe.Refund, err error) (payments.RefundResult, error) {
	if err != nil {
		return payments.RefundResult{}, stripeError(err)
	}
	return payments.RefundResult{GatewayRefundID: r.ID, Status: string(r.Status), FailureReason: string(r.FailureReason)}, nil
}

// answer maps a PaymentIntent (or the error of the call) to a state. A card
// error is a decline: Stripe returns the PaymentIntent, back in
// requires_payment_method, inside the error.
func (g *Stripe) answer(pi *stripe.PaymentIntent, err error) (payments.GatewayState, error) {
	if err != nil {
		var se *stripe.Error
		if errors.As(err, &se) && se.Type == stripe.ErrorTypeCard {
			st := payments.GatewayState{Status: payments.RequiresPaymentMethod, At: payments.SyncTime(g.now()),
				Decline: &payments.Decline{Code: string(se.Code), DeclineCode: string(se.DeclineCode), Message: se.Msg}}
			if se.PaymentIntent != nil {
				st.GatewayPaymentID = se.PaymentIntent.ID
			}
			return st, nil
		}
		return payments.GatewayState{}, stripeError(err)
	}
	return stripeState(pi, g.now()), nil
}

// stripeState maps a PaymentIntent to a gateway state.
func stripeState(pi *stripe.PaymentIntent, now time.Time) payments.GatewayState {
	st := payments.GatewayState{GatewayPaymentID: pi.ID, AmountCapturable: pi.AmountCapturable, AmountReceived: pi.AmountReceived,
		At: payments.SyncTime(now)}
	switch pi.Status {
	case stripe.PaymentIntentStatusRequiresPaymentMethod:
		// After a confirmation this means the attempt failed;
		// last_payment_error says why.
		st.Status = payments.RequiresPaymentMethod
		d := &payments.Decline{Code: "payment_failed"}
		if e := pi.LastPaymentError; e != nil {
			d = &payments.Decline{Code: string(e.Code), DeclineCode: string(e.DeclineCode), Message: e.Msg}
			if d.Code == "" {
				d.Code = string(e.Type)
			}
			if e.Type != stripe.ErrorTypeCard && d.DeclineCode == "" {
				d.DeclineCode = "processing_error"
			}
		}
		st.Decline = d
	case stripe.PaymentIntentStatusRequiresConfirmation:
		st.Status = payments.RequiresConfirmation
	case stripe.PaymentIntentStatusRequiresAction:
		st.Status = payments.RequiresAction
	case stripe.PaymentIntentStatusProcessing:
		st.Status = payments.Processing
	case stripe.PaymentIntentStatusRequiresCapture:
		st.Status = payments.RequiresCapture
	case stripe.PaymentIntentStatusSucceeded:
		st.Status = payments.Succeeded
	case stripe.PaymentIntentStatusCanceled:
		st.Status = payments.Canceled
	default:
		st.Status = payments.Processing
	}
	return st
}

// stripeError classifies a failed call: whether Stripe certainly did
// nothing (the next gateway may be tried) or may have acted.
func stripeError(err error) error {
	ge := &payments.GatewayError{Gateway: payments.GatewayStripe, Err: err}
	var se *stripe.Error
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &se):
		ge.Code, ge.Message, ge.Err = string(se.Code), se.Msg, nil
		if ge.Code == "" {
			ge.Code = string(se.Type)
		}
		switch {
		case se.HTTPStatusCode >= 500 || se.HTTPStatusCode == 0:
			ge.Unknown = true // Stripe: the result of a 500 is indeterminate
		case se.HTTPStatusCode == http.StatusTooManyRequests || se.HTTPStatusCode == http.StatusUnauthorized ||
			se.HTTPStatusCode == http.StatusForbidden:
			// unavailable to us now: nothing was done
		default:
			ge.Rejected = true
		}
	case errors.As(err, &oe) && oe.Op == "dial":
		ge.Code = "unavailable" // never connected: nothing was sent
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), errors.As(err, &ne) && ne.Timeout():
		ge.Code, ge.Unknown = "timeout", true
	default:
		ge.Code, ge.Unknown = "network_error", true
	}
	return ge
}

// stripeLogger sends stripe-go's log lines to slog. stripe-go logs request
// outcomes, never request bodies.
type stripeLogger struct{}

func (stripeLogger) Debugf(string, ...any) {}
func (stripeLogger) Infof(string, ...any)  {}
func (stripeLogger) Warnf(format string, v ...any) {
	slog.Warn("stripe: " + fmt.Sprintf(format, v...))
}
func (stripeLogger) Errorf(format string, v ...any) {
	slog.Warn("stripe: " + fmt.Sprintf(format, v...))
}
