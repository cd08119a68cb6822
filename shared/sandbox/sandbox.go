// Package sandbox is the contract between capture-payment's built-in
// sandbox gateway and handle-webhook: the webhook body format and its
// signature.
//
// The body is Stripe's event JSON, exactly (a subset of its fields), so one
// normalizer in handle-webhook reads Stripe's and the sandbox's webhooks:
//
//	{"id":"evt_…","object":"event","type":"payment_intent.succeeded","created":<unix>,
//	 "data":{"object":{"id":"pi_…","object":"payment_intent","amount":1050,"amount_capturable":0,
//	   "amount_received":1050,"currency":"usd","status":"succeeded",
//	   "metadata":{"billfn_payment_id":"…"},"last_payment_error":null}}}
//
// Deliveries are signed like billfn's own event deliveries (events.Sign):
//
//	Billfn-Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// with the secret SANDBOX_WEBHOOK_SECRET (secret file sandbox-webhook-secret);
// several v1 values are accepted while the secret rotates.
package sandbox

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/events"
)

// SignatureHeader carries the sandbox's webhook signature.
const SignatureHeader = "Billfn-Sandbox-Signature"

// MetadataPaymentID is the metadata key holding billfn's payment id on a
// gateway's payment object (Stripe PaymentIntent metadata and the sandbox's).
const MetadataPaymentID = "billfn_payment_id"

// MetadataRefundID is the metadata key holding billfn's refund id on a
// gateway's refund object.
const MetadataRefundID = "billfn_refund_id"

// DefaultTolerance is how far a signature's timestamp may be from now.
const DefaultTolerance = 5 * time.Minute

// Sign returns the header value signing body at t with secret.
func Sign(secret []byte, t time.Time, body []byte) string { return events.Sign(secret, t, body) }

// Verify checks a signature header against body with any of secrets; the
// errors are events.ErrNoSignature, ErrMalformedSigHead, ErrStaleSignature
// and ErrBadSignature.
func Verify(secrets [][]byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	return events.VerifySignature(secrets, header, body, now, tolerance)
}

// Secrets splits a comma-separated secret list (rotation) into keys.
func Secrets(list string) [][]byte {
	var out [][]byte
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, []byte(s))
		}
	}
	return out
}

// Event is a Stripe-shaped webhook event.
type Event struct {
	ID         string    `json:"id"`
	Object     string    `json:"object"` // "event"
	Type       string    `json:"type"`
	Created    int64     `json:"created"`
	APIVersion string    `json:"api_version,omitempty"`
	Livemode   bool      `json:"livemode"`
	Data       EventData `json:"data"`
}

// EventData holds the event's object as raw JSON (a PaymentIntent, a
// Charge, a Refund or a Dispute, told apart by its "object" member).
type EventData struct {
	Object json.RawMessage `json:"object"`
}

// Object is the union of the members billfn reads from a payment_intent,
// charge, refund or dispute object. Members a type lacks stay zero.
type Object struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Amount           int64             `json:"amount"`
	AmountCapturable int64             `json:"amount_capturable"`
	AmountReceived   int64             `json:"amount_received"`
	AmountCaptured   int64             `json:"amount_captured"`
	AmountRefunded   int64             `json:"amount_refunded"`
	Currency         string            `json:"currency"`
	Status           string            `json:"status"`
	Metadata         map[string]string `json:"metadata"`
	LastPaymentError *PaymentError     `json:"last_payment_error"`
	// PaymentIntent is the PaymentIntent a charge, refund or dispute
	// belongs to (an id, or an expanded object whose id is kept).
	PaymentIntent ID `json:"payment_intent"`
	// Charge is the charge a refund or dispute belongs to.
	Charge         ID     `json:"charge"`
	Reason         string `json:"reason"`
	FailureCode    string `json:"failure_code"`
	FailureMessage string `json:"failure_message"`
	FailureReason  string `json:"failure_reason"`
	Created        int64  `json:"created"`
}

// PaymentError is Stripe's last_payment_error (a subset).
type PaymentError struct {
	Type        string `json:"type,omitempty"`
	Code        string `json:"code,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
	Message     string `json:"message,omitempty"`
}

// ID is an expandable reference: Stripe sends either "pi_…" or the
// expanded object {"id":"pi_…",…}; both decode to the id.
type ID string

// UnmarshalJSON accepts a string, null or an object with an "id".
func (id *ID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || bytes.Equal(b, []byte("null")):
		*id = ""
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*id = ID(s)
		return nil
	}
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*id = ID(o.ID)
	return nil
}

// PaymentIntent is the payment_intent object the sandbox sends: exactly the
// members of the contract, in Stripe's names.
type PaymentIntent struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"` // "payment_intent"
	Amount           int64             `json:"amount"`
	AmountCapturable int64             `json:"amount_capturable"`
	AmountReceived   int64             `json:"amount_received"`
	Currency         string            `json:"currency"` // lower case, as Stripe
	Status           string            `json:"status"`
	CaptureMethod    string            `json:"capture_method,omitempty"`
	Metadata         map[string]string `json:"metadata"`
	LastPaymentError *PaymentError     `json:"last_payment_error"`
	Created          int64             `json:"created,omitempty"`
}

// Refund is the refund object the sandbox sends with charge.refund.updated.
type Refund struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"` // "refund"
	Amount        int64             `json:"amount"`
	Currency      string            `json:"currency"`
	Status        string            `json:"status"`
	PaymentIntent string            `json:"payment_intent"`
	Reason        string            `json:"reason,omitempty"`
	FailureReason string            `json:"failure_reason,omitempty"`
	Metadata      map[string]string `json:"metadata"`
	Created       int64             `json:"created,omitempty"`
}

// NewEvent wraps object (a PaymentIntent or Refund) in an event envelope.
func NewEvent(id, typ string, created time.Time, object any) ([]byte, error) {
	raw, err := json.Marshal(object)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Event{ID: id, Object: "event", Type: typ, Created: created.Unix(), Data: EventData{Object: raw}})
}
