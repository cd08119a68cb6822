// Package webhooks is handle-webhook's domain: what a gateway's signed
// webhook must prove (VerifyStripe, VerifySandbox, over the raw body and
// the signature header's value), how a verified body becomes a normalized
// events.GatewayUpdate (Parse, Normalize), what becomes of a delivery
// (processed, parked until its payment is known, ignored), and which of
// capture-payment's events teach which billfn payment a gateway object is
// (RefOf). It knows neither HTTP nor SQL: package store keeps deliveries
// and the payment map, package api serves them.
package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
)

// Name is the function's name: its events' source and its outbox's owner.
const Name = "handle-webhook"

// Gateways this function receives webhooks from.
const (
	Stripe  = "stripe"
	Sandbox = "sandbox"
)

// Delivery statuses (webhook_events.status), and Duplicate for a
// redelivery (nothing stored).
const (
	Processed = "processed" // normalized and emitted
	Parked    = "parked"    // about a payment not known yet: emitted when it is
	Ignored   = "ignored"   // a type billfn does not act on: stored and acknowledged
	Duplicate = "duplicate"
)

// Error codes of handle-webhook. The api package maps each to its HTTP
// status.
const (
	CodeSignatureMissing   apperr.Code = "webhook_signature_missing"
	CodeSignatureMalformed apperr.Code = "webhook_signature_malformed"
	CodeSignatureInvalid   apperr.Code = "webhook_signature_invalid"
	CodeTimestamp          apperr.Code = "webhook_timestamp_outside_tolerance"
	CodePayload            apperr.Code = "webhook_payload_invalid"
	CodeNotConfigured      apperr.Code = "webhook_not_configured"
)

// ErrNoDelivery is the answer for a delivery id that names none.
var ErrNoDelivery = apperr.New(apperr.NotFound, "no such webhook delivery")

// StatusOf is what becomes of a delivery on arrival: ignored when billfn
// does not act on its type, parked while its payment is unknown, processed
// (emitted) otherwise.
func StatusOf(u *events.GatewayUpdate, handled bool) string {
	switch {
	case !handled:
		return Ignored
	case u.PaymentID == nil:
		return Parked
	}
	return Processed
}

// Delivery is a stored webhook as the admin API shows it.
type Delivery struct {
	ID               string          `json:"id"`
	Gateway          string          `json:"gateway"`
	GatewayEventID   string          `json:"gateway_event_id"`
	Type             string          `json:"type"`
	Status           string          `json:"status"`
	ObjectType       string          `json:"object_type"`
	GatewayObjectID  string          `json:"gateway_object_id"`
	GatewayPaymentID string          `json:"gateway_payment_id"`
	PaymentID        *string         `json:"payment_id"`
	OccurredAt       time.Time       `json:"occurred_at"`
	ReceivedAt       time.Time       `json:"received_at"`
	ProcessedAt      *time.Time      `json:"processed_at"`
	Replays          int             `json:"replays"`
	Body             json.RawMessage `json:"body,omitempty"`
}

// Filter selects a page of deliveries, newest first.
type Filter struct {
	Gateway, Type, Status string
	After                 string // the last id of the previous page
	Limit                 int
}

// updateNS namespaces the ids of normalized events: one gateway event
// always becomes the same CloudEvent id, so nothing downstream applies it
// twice even if it were emitted twice.
var updateNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/handle-webhook/gateway_updated"))

// UpdateEvent is the billfn.payment.gateway_updated event of u (subject =
// the payment id); id "" derives the CloudEvent id from the gateway event.
func UpdateEvent(ctx context.Context, u *events.GatewayUpdate, id string) (events.Event, error) {
	ev, err := events.New(ctx, Name, events.TypeGatewayUpdated, *u.PaymentID, u)
	if err != nil {
		return ev, err
	}
	if id == "" {
		id = uuid.NewSHA1(updateNS, []byte(u.Gateway+":"+u.GatewayEventID)).String()
	}
	ev.SetID(id)
	return ev, nil
}

// disabledNS namespaces the ids of billfn.webhook_endpoint.disabled: one
// per disabling (a delivery retried by hand may spend its schedule again).
var disabledNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/handle-webhook/webhook_endpoint.disabled"))

// DisabledEvent is the billfn.webhook_endpoint.disabled of n: subject the
// endpoint, id UUIDv5(disabledNS, "<delivery id>:<disabled_at>"), so one
// disabling names one event (store.Finish writes it once per disabling).
func DisabledEvent(ctx context.Context, n *events.WebhookEndpointDisabled) (events.Event, error) {
	ev, err := events.New(ctx, Name, events.TypeWebhookEndpointDisabled, n.EndpointID, n)
	if err != nil {
		return ev, err
	}
	ev.SetID(uuid.NewSHA1(disabledNS, []byte(n.DeliveryID+":"+n.DisabledAt.UTC().Format(time.RFC3339Nano))).String())
	return ev, nil
}

// LearnTypes are capture-payment's events that name a payment's gateway
// object: each teaches the payment map and releases parked webhooks.
var LearnTypes = []string{
	events.TypePaymentCreated, events.TypePaymentUpdated, events.TypePaymentAuthorized, events.TypePaymentCaptured,
	events.TypePaymentFailed, events.TypePaymentCanceled, events.TypePaymentDisputed,
	events.TypeRefundSucceeded, events.TypeRefundFailed,
}

// PaymentRef is what a capture-payment event teaches: which billfn payment
// a gateway object is, and the event type it was learned from.
type PaymentRef struct{ Gateway, GatewayPaymentID, PaymentID, From string }

// RefOf reads the reference an event teaches: the three fields that
// events.Payment and events.Refund share (the gateway is a pointer on one
// and not the other, so a projection reads both). ok is false when the event
// names no gateway object (yet) or one of a gateway this function does not
// receive webhooks from; a payment id that is not one is permanent.
func RefOf(ev events.Event) (ref PaymentRef, ok bool, err error) {
	var p struct {
		PaymentID        string  `json:"payment_id"`
		Gateway          *string `json:"gateway"`
		GatewayPaymentID *string `json:"gateway_payment_id"`
	}
	if err := events.Decode(ev, &p); err != nil {
		return ref, false, err
	}
	if p.Gateway == nil || p.GatewayPaymentID == nil || *p.GatewayPaymentID == "" {
		return ref, false, nil // not at a gateway yet
	}
	pid, valid := ids.Canonical(p.PaymentID)
	if !valid {
		return ref, false, events.Permanent(errors.New("event " + ev.ID() + ": payment_id is not a payment id"))
	}
	if *p.Gateway != Stripe && *p.Gateway != Sandbox {
		return ref, false, nil
	}
	return PaymentRef{*p.Gateway, *p.GatewayPaymentID, pid, ev.Type()}, true, nil
}
