package api

import (
	"net/http"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/problem"
)

// Statuses is capture-payment's one table from the domain's error codes to
// HTTP statuses (the codes every function shares are problem.Common's).
// Handler installs it in front of every route, the event receiver's too.
var Statuses = problem.Statuses{
	payments.CodeInvalidState:        {Status: http.StatusConflict, Title: "The payment's state does not allow this operation"},
	payments.CodeOpInProgress:        {Status: http.StatusConflict, Title: "Another operation on this payment is in progress"},
	payments.CodeExceedsCapturable:   {Status: http.StatusUnprocessableEntity, Title: "Amount exceeds the capturable amount"},
	payments.CodeExceedsRefundable:   {Status: http.StatusUnprocessableEntity, Title: "Amount exceeds the refundable amount"},
	payments.CodeChargeDisputed:      {Status: http.StatusConflict, Title: "Payment disputed"},
	payments.CodeMethodRequired:      {Status: http.StatusUnprocessableEntity, Title: "A payment method is required"},
	payments.CodeMethodInvalid:       {Status: http.StatusUnprocessableEntity, Title: "The payment method cannot be used"},
	payments.CodeGatewayUnavailable:  {Status: http.StatusServiceUnavailable, Title: "The payment gateway is unavailable"},
	payments.CodeGatewayRejected:     {Status: http.StatusConflict, Title: "The payment gateway refused the operation"},
	payments.CodeNoRoute:             {Status: http.StatusUnprocessableEntity, Title: "No gateway is configured for this currency"},
	payments.CodeAmountTooLarge:      {Status: http.StatusUnprocessableEntity, Title: "Amount too large"},
	payments.CodeAmountPrecision:     {Status: http.StatusUnprocessableEntity, Title: "The gateway cannot take this amount's precision"},
	payments.CodeAmountTooSmall:      {Status: http.StatusUnprocessableEntity, Title: "Amount below the gateway's minimum charge"},
	payments.CodeInvoiceNotPayable:   {Status: http.StatusConflict, Title: "The invoice cannot be paid"},
	payments.CodeInvoiceInProgress:   {Status: http.StatusConflict, Title: "Another payment of this invoice is in progress"},
	payments.CodeExceedsInvoiceDue:   {Status: http.StatusUnprocessableEntity, Title: "Amount exceeds what remains to pay on the invoice"},
	payments.CodeInvoiceLookupFailed: {Status: http.StatusServiceUnavailable, Title: "The invoice could not be looked up"},
	payments.CodeInsufficientFunds:   {Status: http.StatusUnprocessableEntity, Title: "Insufficient funds"},
	payments.CodeRefundNotReservable: {Status: http.StatusConflict, Title: "Refund cannot be reserved in the ledger"},
}

// refused reports whether err refuses a request (a 4xx by Statuses) rather
// than failing it.
func refused(err error) bool { return Statuses.Status(err) < 500 }
