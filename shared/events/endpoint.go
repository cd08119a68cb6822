package events

import "time"

// TypeWebhookEndpointDisabled is handle-webhook's notice that it disabled a
// merchant's outgoing-webhook endpoint because a delivery spent its retry
// schedule (about three days): written through handle-webhook's outbox in
// the transaction that disables the endpoint, on payment-events (the one
// topic handle-webhook may write) with the endpoint id as key.
// generate-invoice emails it to the merchant's operator; the merchant's
// other endpoints subscribed to it receive it as any other fact.
const TypeWebhookEndpointDisabled = "billfn.webhook_endpoint.disabled"

// WebhookEndpointDisabled is the data of TypeWebhookEndpointDisabled.
type WebhookEndpointDisabled struct {
	EndpointID string    `json:"endpoint_id"`
	URL        string    `json:"url"`
	Reason     string    `json:"reason"` // the endpoint's disabled_reason
	DisabledAt time.Time `json:"disabled_at"`
	// The delivery whose schedule was spent: its id (the webhook-id header
	// it was sent with), its event's type, how many attempts it had, and
	// when it was first due — since when the endpoint has been failing.
	DeliveryID   string    `json:"delivery_id"`
	EventType    string    `json:"event_type"`
	Attempts     int       `json:"attempts"`
	FailingSince time.Time `json:"failing_since"`
	// LastStatus is the endpoint's last HTTP answer (null when none came:
	// a timeout, a refused connection), LastError the error then.
	LastStatus *int    `json:"last_status"`
	LastError  *string `json:"last_error"`
}
