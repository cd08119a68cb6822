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
	CodeCardNumber                     = apperr.CardNumberRejected // shared/pan's
)

// ErrNotFound answers a payment that does not exist or is not the caller's.
var ErrNotFound = apperr.New(apperr.NotFound, "no such payment")

// ErrNoRefund answers a refund that does not exist or is not the caller's.
var ErrNoRefund = apperr.New(apperr.NotFound, "no such refund")

// ErrNoMethod answers a payment method that does not exist or is not on the account.
var ErrNoMethod = apperr.New(apperr.NotFound, "no such payment method")
