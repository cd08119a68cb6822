package main

import (
	"net/http"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/problem"
)

func init() {
	problem.Register(payments.CodeInvalidState, http.StatusConflict, "The payment's state does not allow this operation")
	problem.Register(payments.CodeOpInProgress, http.StatusConflict, "Another operation on this payment is in progress")
	problem.Register(payments.CodeExceedsCapturable, http.StatusUnprocessableEntity, "Amount exceeds the capturable amount")
	problem.Register(payments.CodeExceedsRefundable, http.StatusUnprocessableEntity, "Amount exceeds the refundable amount")
	problem.Register(payments.CodeMethodRequired, http.StatusUnprocessableEntity, "A payment method is required")
	problem.Register(payments.CodeMethodInvalid, http.StatusUnprocessableEntity, "The payment method cannot be used")
	problem.Register(payments.CodeGatewayUnavailable, http.StatusServiceUnavailable, "The payment gateway is unavailable")
	problem.Register(payments.CodeGatewayRejected, http.StatusConflict, "The payment gateway refused the operation")
	problem.Register(payments.CodeNoRoute, http.StatusUnprocessableEntity, "No gateway is configured for this currency")
}
