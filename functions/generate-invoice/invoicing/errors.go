package invoicing

import "github.com/billfn/billfn/shared/apperr"

// Problem codes of generate-invoice (docs/generate-invoice.md lists them).
const (
	CodeInvoiceNotDraft      = apperr.Code("invoice_not_draft")
	CodeInvoiceNotOpen       = apperr.Code("invoice_not_open")
	CodeInvoicePartiallyPaid = apperr.Code("invoice_partially_paid")
	CodeInvoiceEmpty         = apperr.Code("invoice_empty")
	CodeCurrencyMismatch     = apperr.Code("currency_mismatch")
	CodeTaxRateUnknown       = apperr.Code("tax_rate_unknown")
	CodeTaxInclusiveMixed    = apperr.Code("tax_inclusive_mixed")
	CodeCouponUnknown        = apperr.Code("coupon_unknown")
	CodeCouponNotRedeemable  = apperr.Code("coupon_not_redeemable")
	CodeCouponExists         = apperr.Code("coupon_exists")
	CodeDueDateInPast        = apperr.Code("due_date_in_past")
	CodeAmountExceedsDue     = apperr.Code("amount_exceeds_due")
	CodeSubscriptionEnded    = apperr.Code("subscription_canceled")
)
