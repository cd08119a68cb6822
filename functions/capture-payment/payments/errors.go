package payments

import "github.com/billfn/billfn/shared/apperr"

// Problem codes of capture-payment.
const (
	CodeInvalidState       apperr.Code = "payment_invalid_state"
	CodeOpInProgress       apperr.Code = "payment_operation_in_progress"
	CodeExceedsCapturable  apperr.Code = "amount_exceeds_capturable"
	CodeExceedsRefundable  apperr.Code = "amount_exceeds_refundable"
	CodeChargeDisputed     apperr.Code = "charge_disputed"
	CodeMethodRequired     apperr.Code = "payment_method_required"
	CodeMethodInvalid      apperr.Code = "payment_method_invalid"
	CodeGatewayUnavailable apperr.Code = "gateway_unavailable"
	CodeGatewayRejected    apperr.Code = "gateway_rejected"
	CodeNoRoute            apperr.Code = "currency_not_supported"
	CodeAmountTooLarge     apperr.Code = "amount_too_large"
	CodeAmountPrecision    apperr.Code = "amount_precision_unsupported"
	CodeAmountTooSmall     apperr.Code = "amount_too_small"
	CodeCardNumber                     = apperr.CardNumberRejected // shared/pan's
)

// MaxAmount bounds what billfn charges at once, in minor units: the bound
// of POST /payments, and of an invoice's automatic collection and dunning
// retries (an invoice's total is bounded only by int64). Stripe's own limit
// is lower for most currencies; the gateway says so when it is.
const MaxAmount = 999_999_999_999

func errAmountTooLarge(amount int64) *apperr.Error {
	return apperr.New(CodeAmountTooLarge, "%d minor units is more than billfn charges at once (at most %d)", amount, int64(MaxAmount))
}

// ErrNotFound answers a payment that does not exist or is not the caller's.
var ErrNotFound = apperr.New(apperr.NotFound, "no such payment")

// ErrNoRefund answers a refund that does not exist or is not the caller's.
var ErrNoRefund = apperr.New(apperr.NotFound, "no such refund")

// ErrNoMethod answers a payment method that does not exist or is not on the account.
var ErrNoMethod = apperr.New(apperr.NotFound, "no such payment method")
