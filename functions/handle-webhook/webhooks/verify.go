package webhooks

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v83/webhook"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
)

// StripeSignatureHeader is Stripe's signature header.
const StripeSignatureHeader = "Stripe-Signature"

// VerifyStripe checks a Stripe-Signature header exactly as Stripe
// specifies, with stripe-go's webhook package on the raw body: HMAC-SHA256
// of "<t>.<body>", every v1 value compared in constant time, any of the
// endpoint's active secrets. The timestamp is checked first against the
// injected clock in both directions (stripe-go only rejects old ones).
func VerifyStripe(secrets []string, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if header == "" {
		return apperr.New(CodeSignatureMissing, "the request has no %s header", StripeSignatureHeader)
	}
	t, ok := signatureTime(header)
	if !ok {
		return apperr.New(CodeSignatureMalformed, "%s must be t=<unix seconds>,v1=<hex signature>[,v1=…]", StripeSignatureHeader)
	}
	if d := now.Sub(t); d > tolerance || d < -tolerance {
		return apperr.New(CodeTimestamp, "the signature's timestamp is %s from now; the tolerance is %s", d.Round(time.Second), tolerance)
	}
	var last error
	for _, secret := range secrets {
		err := webhook.ValidatePayloadIgnoringTolerance(body, header, secret)
		if err == nil {
			return nil
		}
		last = err
	}
	switch {
	case errors.Is(last, webhook.ErrNotSigned):
		return apperr.New(CodeSignatureMissing, "the request has no %s header", StripeSignatureHeader)
	case errors.Is(last, webhook.ErrInvalidHeader):
		return apperr.New(CodeSignatureMalformed, "%s is malformed", StripeSignatureHeader)
	}
	return apperr.New(CodeSignatureInvalid, "no v1 signature matches the body with an active secret")
}

// signatureTime reads t= of a "t=…,v1=…" header; false when the header is
// not of that shape (no t, or no v1).
func signatureTime(header string) (time.Time, bool) {
	var (
		t      int64
		hasT   bool
		hasSig bool
	)
	for len(header) > 0 {
		var part string
		part, header, _ = strings.Cut(header, ",")
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return time.Time{}, false
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			t, hasT = n, true
		case "v1":
			hasSig = true
		}
	}
	return time.Unix(t, 0), hasT && hasSig
}

// VerifySandbox checks the sandbox gateway's Billfn-Sandbox-Signature
// (the same scheme, billfn's shared events.VerifySignature).
func VerifySandbox(secrets [][]byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	err := events.VerifySignature(secrets, header, body, now, tolerance)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, events.ErrNoSignature):
		return apperr.New(CodeSignatureMissing, "the request has no Billfn-Sandbox-Signature header")
	case errors.Is(err, events.ErrMalformedSigHead):
		return apperr.New(CodeSignatureMalformed, "Billfn-Sandbox-Signature must be t=<unix seconds>,v1=<hex signature>")
	case errors.Is(err, events.ErrStaleSignature):
		return apperr.New(CodeTimestamp, "the signature's timestamp is outside the tolerance of %s", tolerance)
	}
	return apperr.New(CodeSignatureInvalid, "no v1 signature matches the body with an active secret")
}
