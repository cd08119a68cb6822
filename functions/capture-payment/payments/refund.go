package payments

import (
	"context"
	"time"

	"github.com/billfn/billfn/shared/apperr"
)

// Refund is a refund as the API and the refund events show it.
type Refund struct {
	ID               string  `json:"id"`
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
	// Withheld is what the report of money its invoice did not need left
	// out of the account's credit while this refund, pending, was to take
	// it from revenue (Tx.Withhold), or what a refund made at the gateway,
	// recorded on revenue, took of that credit: credited after all if it
	// fails, before or after it succeeded.
	Withheld int64 `json:"-"`
	// FailedAt is when the refund stopped counting at its gateway (failed
	// or canceled): the gateway's time of that news when it said, else
	// when billfn learned it. A gateway's total refunded as of a time at
	// or before it still counts the refund (Tx.FailedSince).
	FailedAt *time.Time `json:"-"`
}

// HoldSource decides what a new refund of amount on payment p draws on
// in the ledger. A payment without an invoice stays in its account. For an
// invoice payment, the part its invoice did not need was credited to the
// account (amount_unapplied), the rest went to revenue; a refund takes
// the credited part first, from the account, then the rest from revenue.
// One refund draws on one of them: a refund that would straddle both is
// refused, naming the amount that can be refunded from the account alone.
func HoldSource(ctx context.Context, tx Tx, p *Payment, amount int64) (string, error) {
	if p.InvoiceID == nil {
		return "account", nil
	}
	unapplied, fromAccount, err := tx.Credit(ctx, p.ID)
	if err != nil {
		return "", err
	}
	credit := max(unapplied-fromAccount, 0)
	switch {
	case credit == 0:
		return "revenue", nil
	case amount <= credit:
		return "account", nil
	}
	return "", apperr.New(apperr.Conflict, "%d of this payment was credited to the account (its invoice did not need it): refund that part on its own first", credit).
		With("amount_credited", credit)
}
