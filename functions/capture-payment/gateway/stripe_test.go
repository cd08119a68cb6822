package gateway

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/stripe/stripe-go/v83"
)

func TestStripeErrorsAreClassified(t *testing.T) {
	cases := []struct {
		err               error
		unknown, rejected bool
		code              string
	}{
		{&stripe.Error{HTTPStatusCode: 500, Type: stripe.ErrorTypeAPI}, true, false, "api_error"},
		{&stripe.Error{HTTPStatusCode: 429, Code: stripe.ErrorCodeRateLimit}, false, false, "rate_limit"},
		{&stripe.Error{HTTPStatusCode: 400, Type: stripe.ErrorTypeInvalidRequest, Code: stripe.ErrorCodeResourceMissing}, false, true, "resource_missing"},
		{&stripe.Error{HTTPStatusCode: 409, Type: stripe.ErrorTypeIdempotency}, false, true, "idempotency_error"},
		{context.DeadlineExceeded, true, false, "timeout"},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false, false, "unavailable"},
		{&net.OpError{Op: "read", Err: errors.New("connection reset")}, true, false, "network_error"},
	}
	for _, c := range cases {
		var ge *payments.GatewayError
		if !errors.As(stripeError(c.err), &ge) || ge.Unknown != c.unknown || ge.Rejected != c.rejected || ge.Code != c.code {
			t.Errorf("%v: got %+v", c.err, ge)
		}
	}
	// A card error is a decline, not an error, with Stripe's codes.
	g := &Stripe{now: time.Now}
	st, err := g.answer(nil, &stripe.Error{HTTPStatusCode: 402, Type: stripe.ErrorTypeCard, Code: stripe.ErrorCodeCardDeclined,
		DeclineCode: stripe.DeclineCodeInsufficientFunds, Msg: "Your card has insufficient funds.", PaymentIntent: &stripe.PaymentIntent{ID: "pi_x"}})
	if err != nil || st.Status != payments.RequiresPaymentMethod || st.GatewayPaymentID != "pi_x" || payments.DeclineReason(st.Decline) != "insufficient_funds" {
		t.Fatalf("card error: %+v %v", st, err)
	}
	// Every PaymentIntent status maps.
	for in, want := range map[stripe.PaymentIntentStatus]payments.Status{
		stripe.PaymentIntentStatusRequiresCapture: payments.RequiresCapture, stripe.PaymentIntentStatusSucceeded: payments.Succeeded,
		stripe.PaymentIntentStatusProcessing: payments.Processing, stripe.PaymentIntentStatusRequiresAction: payments.RequiresAction,
		stripe.PaymentIntentStatusCanceled: payments.Canceled, stripe.PaymentIntentStatusRequiresConfirmation: payments.RequiresConfirmation,
		stripe.PaymentIntentStatusRequiresPaymentMethod: payments.RequiresPaymentMethod,
	} {
		if got := stripeState(&stripe.PaymentIntent{ID: "pi_1", Status: in}, time.Now()); got.Status != want {
			t.Errorf("%s → %s, want %s", in, got.Status, want)
		}
	}
}
