package payments

import "github.com/billfn/billfn/shared/problem"

// Problem codes of capture-payment.
const (
	CodeInvalidState       problem.Code = "payment_invalid_state"
	CodeOpInProgress       problem.Code = "payment_operation_in_progress"
	CodeExceedsCapturable  problem.Code = "amount_exceeds_capturable"
	CodeExceedsRefundable  problem.Code = "amount_exceeds_refundable"
	CodeMethodRequired     problem.Code = "payment_method_required"
	CodeMethodInvalid      problem.Code = "payment_method_invalid"
	CodeGatewayUnavailable problem.Code = "gateway_unavailable"
	CodeGatewayRejected    problem.Code = "gateway_rejected"
	CodeNoRoute            problem.Code = "currency_not_supported"
	CodeCardNumber                      = problem.CardNumberRejected // shared/pan's
)

// ErrNotFound answers a payment that does not exist or is not the caller's.
var ErrNotFound = problem.New(problem.NotFound, "no such payment")

// ErrNoRefund answers a refund that does not exist or is not the caller's.
var ErrNoRefund = problem.New(problem.NotFound, "no such refund")

// ErrNoMethod answers a payment method that does not exist or is not on the account.
var ErrNoMethod = problem.New(problem.NotFound, "no such payment method")
