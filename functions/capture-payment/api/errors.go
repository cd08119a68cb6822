package api

import (
	"net/http"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/problem"
)

// init registers capture-payment's problem codes with their HTTP statuses:
// the one table from the domain's codes to statuses.
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

func init() {
	problem.Register(payments.CodeInvoiceNotPayable, http.StatusConflict, "The invoice cannot be paid")
	problem.Register(payments.CodeInvoiceInProgress, http.StatusConflict, "Another payment of this invoice is in progress")
	problem.Register(payments.CodeExceedsInvoiceDue, http.StatusUnprocessableEntity, "Amount exceeds what remains to pay on the invoice")
	problem.Register(payments.CodeInvoiceLookupFailed, http.StatusServiceUnavailable, "The invoice could not be looked up")
}

func init() {
	problem.Register(payments.CodeInsufficientFunds, http.StatusUnprocessableEntity, "Insufficient funds")
	problem.Register(payments.CodeRefundNotReservable, http.StatusConflict, "Refund cannot be reserved in the ledger")
}
