package webhooks

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/sandbox"
)

// Parsed is a verified webhook body: the envelope of a Stripe-shaped
// event (sandbox.Event) with its data.object decoded in the same pass.
type Parsed struct {
	ev struct {
		ID       string `json:"id"`
		Object   string `json:"object"`
		Type     string `json:"type"`
		Created  int64  `json:"created"`
		Livemode bool   `json:"livemode"`
		Data     struct {
			Object *sandbox.Object `json:"object"`
		} `json:"data"`
	}
	obj sandbox.Object
}

// maxCreated is 9999-12-31T23:59:59Z, the last second JSON can encode.
const maxCreated = 253402300799

// Parse reads a verified body as a Stripe-shaped event.
func Parse(body []byte) (Parsed, error) {
	var p Parsed
	p.ev.Data.Object = &p.obj
	if err := json.Unmarshal(body, &p.ev); err != nil {
		return p, apperr.New(CodePayload, "the body is not a JSON event: %v", err)
	}
	if p.ev.Object != "event" || p.ev.ID == "" || p.ev.Type == "" || p.ev.Data.Object == nil || p.obj.Object == "" {
		return p, apperr.New(CodePayload, `the body is not an event: it needs "object":"event", an id, a type and data.object`)
	}
	// created becomes occurred_at and the update's occurred_at: a time
	// JSON (years 0 to 9999) and Postgres can hold, or the delivery could
	// never be stored and the gateway would retry it for days.
	if p.ev.Created < 0 || p.ev.Created > maxCreated {
		return p, apperr.New(CodePayload, "created %d is not a Unix time from 1970 to 9999", p.ev.Created)
	}
	// What is stored and matched on goes to Postgres text, which cannot hold
	// U+0000: such an event is malformed, not a reason to answer 503 (the
	// gateway would retry it for days).
	o := p.obj
	fields := []string{p.ev.ID, p.ev.Type, o.ID, o.Object, o.Currency, o.Status, string(o.PaymentIntent), string(o.Charge),
		o.Reason, o.FailureCode, o.FailureMessage, o.FailureReason}
	if o.LastPaymentError != nil {
		e := o.LastPaymentError
		fields = append(fields, e.Type, e.Code, e.DeclineCode, e.Message)
	}
	for k, v := range o.Metadata {
		fields = append(fields, k, v)
	}
	for _, f := range fields {
		if strings.ContainsRune(f, 0) {
			return p, apperr.New(CodePayload, "the event holds U+0000 in a field billfn reads")
		}
	}
	return p, nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Normalize turns a gateway event into an update; handled is false for
// event types billfn does not act on (stored and acknowledged only).
func Normalize(gateway string, p Parsed) (u events.GatewayUpdate, handled bool) {
	o := p.obj
	u = events.GatewayUpdate{Gateway: gateway, GatewayEventID: p.ev.ID, GatewayEventType: p.ev.Type, ObjectType: o.Object,
		GatewayObjectID: o.ID, Amount: o.Amount, Currency: strings.ToUpper(o.Currency), Livemode: p.ev.Livemode,
		OccurredAt: time.Unix(p.ev.Created, 0).UTC()}
	if id := o.Metadata[sandbox.MetadataPaymentID]; id != "" {
		u.PaymentID = &id
	}
	switch o.Object {
	case "payment_intent":
		u.GatewayPaymentID = o.ID
		u.AmountCapturable, u.AmountReceived = o.AmountCapturable, o.AmountReceived
		switch p.ev.Type {
		case "payment_intent.succeeded":
			u.Status = "succeeded"
		case "payment_intent.amount_capturable_updated":
			u.Status = "requires_capture"
		case "payment_intent.payment_failed":
			u.Status = "failed"
			if e := o.LastPaymentError; e != nil {
				code := e.Code
				if code == "" {
					code = e.Type
				}
				u.FailureCode, u.DeclineCode, u.FailureMessage = nonEmpty(code), nonEmpty(e.DeclineCode), nonEmpty(e.Message)
			}
		case "payment_intent.canceled":
			u.Status = "canceled"
		case "payment_intent.processing":
			u.Status = "processing"
		case "payment_intent.requires_action":
			u.Status = "requires_action"
		default:
			return u, false
		}
	case "charge":
		u.GatewayPaymentID = string(o.PaymentIntent)
		u.AmountReceived, u.AmountRefunded = o.AmountCaptured, o.AmountRefunded
		if p.ev.Type != "charge.refunded" {
			return u, false
		}
		u.Status = "refunded"
	case "refund":
		u.GatewayPaymentID = string(o.PaymentIntent)
		u.RefundID, u.RefundStatus, u.RefundAmount = nonEmpty(o.ID), nonEmpty(o.Status), o.Amount
		u.BillfnRefundID = nonEmpty(o.Metadata[sandbox.MetadataRefundID])
		switch p.ev.Type {
		case "charge.refund.updated", "refund.created", "refund.updated", "refund.failed":
		default:
			return u, false
		}
		switch o.Status {
		case "succeeded":
			u.Status = "refunded"
		case "failed", "canceled":
			u.Status = "failed"
			u.FailureCode = nonEmpty(o.FailureReason)
		default:
			u.Status = "processing"
		}
	case "dispute":
		u.GatewayPaymentID = string(o.PaymentIntent)
		if p.ev.Type != "charge.dispute.created" {
			return u, false
		}
		u.Status = "disputed"
	default:
		return u, false
	}
	return u, true
}

// CheckPaymentID drops a metadata payment id that is not a UUID (it can
// name no billfn payment) and writes one in canonical form: uuid.Parse
// also reads braces and urn:uuid:, which the uuid column refuses (the
// delivery could never be stored, a 503 the gateway retries for days).
func CheckPaymentID(u *events.GatewayUpdate) {
	if u.PaymentID != nil {
		id, err := uuid.Parse(*u.PaymentID)
		if err != nil {
			u.PaymentID = nil
			return
		}
		s := id.String()
		u.PaymentID = &s
	}
}
