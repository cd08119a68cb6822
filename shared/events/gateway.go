package events

import "time"

// TypeGatewayUpdated is handle-webhook's normalized gateway webhook, on
// payment-events with the payment id as key; capture-payment applies it.
const TypeGatewayUpdated = "billfn.payment.gateway_updated"

// GatewayUpdate is the data of TypeGatewayUpdated: one gateway event,
// normalized (docs/events.md). It carries the gateway's object state and
// the gateway's own event time, so capture-payment applies it
// monotonically whatever the order of arrival. Producer and consumer share
// this one definition of the contract.
type GatewayUpdate struct {
	Gateway          string    `json:"gateway"`
	GatewayEventID   string    `json:"gateway_event_id"`
	GatewayEventType string    `json:"gateway_event_type"`
	ObjectType       string    `json:"object_type"` // payment_intent, charge, refund, dispute
	GatewayObjectID  string    `json:"gateway_object_id"`
	GatewayPaymentID string    `json:"gateway_payment_id"`
	PaymentID        *string   `json:"payment_id"`
	Status           string    `json:"status"`
	Amount           int64     `json:"amount"`
	AmountCapturable int64     `json:"amount_capturable"`
	AmountReceived   int64     `json:"amount_received"`
	AmountRefunded   int64     `json:"amount_refunded"`
	Currency         string    `json:"currency"`
	FailureCode      *string   `json:"failure_code"`
	FailureMessage   *string   `json:"failure_message"`
	DeclineCode      *string   `json:"decline_code"`
	RefundID         *string   `json:"refund_id"`
	BillfnRefundID   *string   `json:"billfn_refund_id"`
	RefundStatus     *string   `json:"refund_status"`
	RefundAmount     int64     `json:"refund_amount"`
	Livemode         bool      `json:"livemode"`
	OccurredAt       time.Time `json:"occurred_at"`
}
