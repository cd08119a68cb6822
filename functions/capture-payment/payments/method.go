package payments

import "time"

// Method is a saved payment method: a gateway token and what the card
// shows (brand, last 4 digits, expiry), never a card number.
type Method struct {
	ID        string    `json:"id"`
	AccountID string    `json:"account_id"`
	UserID    string    `json:"user_id"`
	Gateway   *string   `json:"gateway"`
	Token     string    `json:"token"`
	Brand     string    `json:"brand"`
	Last4     string    `json:"last4"`
	ExpMonth  *int      `json:"exp_month"`
	ExpYear   *int      `json:"exp_year"`
	Default   bool      `json:"default"`
	CreatedAt time.Time `json:"created_at"`
}
