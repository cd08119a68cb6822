package invoicing

import "github.com/billfn/billfn/shared/problem"

// Problem codes of generate-invoice (docs/generate-invoice.md lists them).
const (
	CodeInvoiceNotDraft     = problem.Code("invoice_not_draft")
	CodeInvoiceNotOpen      = problem.Code("invoice_not_open")
	CodeInvoiceEmpty        = problem.Code("invoice_empty")
	CodeCurrencyMismatch    = problem.Code("currency_mismatch")
	CodeTaxRateUnknown      = problem.Code("tax_rate_unknown")
	CodeTaxInclusiveMixed   = problem.Code("tax_inclusive_mixed")
	CodeCouponUnknown       = problem.Code("coupon_unknown")
	CodeCouponNotRedeemable = problem.Code("coupon_not_redeemable")
	CodeCouponExists        = problem.Code("coupon_exists")
	CodeDueDateInPast       = problem.Code("due_date_in_past")
	CodeAmountExceedsDue    = problem.Code("amount_exceeds_due")
	CodeSubscriptionEnded   = problem.Code("subscription_canceled")
)
