package payments

import "time"

// PaymentFilter selects a page of payments.
type PaymentFilter struct {
	UserID, AccountID, InvoiceID, Status string
	Limit                                int
	After                                *PageKey
}

// PageKey is the keyset position of a list: newest first.
type PageKey struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"id"`
}

// MethodKey is the keyset position of the methods list (oldest first).
type MethodKey struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"id"`
}
