package payments

import "time"

// Refund is a refund as the API and the refund events show it.
type Refund struct {
	ID               string  `json:"refund_id"`
	PaymentID        string  `json:"payment_id"`
	AccountID        string  `json:"account_id"`
	UserID           string  `json:"user_id"`
	InvoiceID        *string `json:"invoice_id"`
	Amount           int64   `json:"amount"`
	Currency         string  `json:"currency"`
	Gateway          string  `json:"gateway"`
	GatewayRefundID  *string `json:"gateway_refund_id"`
	GatewayPaymentID *string `json:"gateway_payment_id"`
	Status           string  `json:"status"`
	Reason           string  `json:"reason"`
	FailureReason    *string `json:"failure_reason"`
	// LedgerHoldID is the hold that reserves the refund's amount in the
	// ledger before the gateway is asked (nil for a refund the gateway
	// reported on its own, e.g. one made in Stripe's dashboard).
	LedgerHoldID *string `json:"ledger_hold_id"`
	// HoldSource is what the hold draws on: "account" (the payment's
	// account) or "revenue" (SYS-REVENUE, for what an invoice kept).
	HoldSource *string   `json:"-"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	N          int       `json:"-"` // the payment's n-th refund (ledger reference)
}
