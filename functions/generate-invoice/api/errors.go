package api

import (
	"net/http"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/problem"
)

// Statuses is generate-invoice's one table from its domain's error codes
// to HTTP (the shared codes are problem.Common's). Every rule the invoice
// and subscription domain enforces answers 422.
var Statuses = problem.Statuses{
	invoicing.CodeInvoiceNotDraft:      {Status: http.StatusUnprocessableEntity, Title: "Only a draft invoice can be changed"},
	invoicing.CodeInvoiceNotOpen:       {Status: http.StatusUnprocessableEntity, Title: "The invoice is not open"},
	invoicing.CodeInvoicePartiallyPaid: {Status: http.StatusUnprocessableEntity, Title: "The invoice has money paid against it"},
	invoicing.CodeInvoiceEmpty:         {Status: http.StatusUnprocessableEntity, Title: "The invoice has no line items"},
	invoicing.CodeCurrencyMismatch:     {Status: http.StatusUnprocessableEntity, Title: "Currency mismatch"},
	invoicing.CodeTaxRateUnknown:       {Status: http.StatusUnprocessableEntity, Title: "Unknown tax rate"},
	invoicing.CodeTaxInclusiveMixed:    {Status: http.StatusUnprocessableEntity, Title: "Inclusive and exclusive tax rates on one line"},
	invoicing.CodeCouponUnknown:        {Status: http.StatusUnprocessableEntity, Title: "Unknown coupon"},
	invoicing.CodeCouponNotRedeemable:  {Status: http.StatusUnprocessableEntity, Title: "The coupon cannot be redeemed"},
	invoicing.CodeCouponExists:         {Status: http.StatusUnprocessableEntity, Title: "The coupon already exists"},
	invoicing.CodeDueDateInPast:        {Status: http.StatusUnprocessableEntity, Title: "The due date is in the past"},
	invoicing.CodeTotalNegative:        {Status: http.StatusUnprocessableEntity, Title: "The invoice total would be negative"},
	invoicing.CodeAmountExceedsDue:     {Status: http.StatusUnprocessableEntity, Title: "The amount exceeds the amount due"},
	invoicing.CodeSubscriptionEnded:    {Status: http.StatusUnprocessableEntity, Title: "The subscription is canceled"},
	notify.CodeNotResendable:           {Status: http.StatusUnprocessableEntity, Title: "The notification cannot be sent again"},
}
