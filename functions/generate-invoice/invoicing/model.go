package invoicing

import (
	"time"

	"github.com/billfn/billfn/shared/money"
)

// Invoice statuses: draft → open → paid | void | uncollectible (and
// uncollectible → paid when money still arrives). Overdue is a flag on an
// open invoice, not a status.
const (
	StatusDraft         = "draft"
	StatusOpen          = "open"
	StatusPaid          = "paid"
	StatusVoid          = "void"
	StatusUncollectible = "uncollectible"
)

// Collection methods (docs/events.md).
const (
	ChargeAutomatically = "charge_automatically"
	SendInvoice         = "send_invoice"
)

// Billing reasons.
const (
	ReasonManual             = "manual"
	ReasonSubscriptionCycle  = "subscription_cycle"
	ReasonSubscriptionUpdate = "subscription_update"
)

// Subscription statuses.
const (
	SubTrialing = "trialing"
	SubActive   = "active"
	SubCanceled = "canceled"
)

// Date is a calendar date, written "2006-01-02".
type Date struct{ time.Time }

// MarshalJSON writes the date alone.
func (d Date) MarshalJSON() ([]byte, error) {
	return []byte(`"` + d.Format(time.DateOnly) + `"`), nil
}

// UnmarshalJSON reads what MarshalJSON wrote (cached invoices).
func (d *Date) UnmarshalJSON(b []byte) error {
	t, err := time.Parse(`"`+time.DateOnly+`"`, string(b))
	d.Time = t
	return err
}

// UTCDate is the calendar date of t in UTC, at midnight.
func UTCDate(t time.Time) time.Time {
	y, m, dd := t.UTC().Date()
	return time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)
}

// Address is a postal address.
type Address struct {
	Line1      string `json:"line1,omitempty"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city,omitempty"`
	PostalCode string `json:"postal_code,omitempty"`
	State      string `json:"state,omitempty"`
	Country    string `json:"country,omitempty"`
}

// Customer is the snapshot of who is billed, as it was when invoiced.
type Customer struct {
	Name    string   `json:"name,omitempty"`
	Email   string   `json:"email,omitempty"`
	Phone   string   `json:"phone,omitempty"`
	TaxID   string   `json:"tax_id,omitempty"`
	Address *Address `json:"address,omitempty"`
	// Locale is how the customer's emails write amounts and dates (a BCP
	// 47 tag such as "de-DE"; empty: "en").
	Locale string `json:"locale,omitempty"`
}

// Line is an invoice line item with its computed amounts.
type Line struct {
	ID             string            `json:"id"`
	Description    string            `json:"description"`
	Quantity       Quantity          `json:"quantity"`
	UnitAmount     int64             `json:"unit_amount"`
	Amount         int64             `json:"amount"`
	Discount       *Discount         `json:"discount,omitempty"`
	DiscountAmount int64             `json:"discount_amount"`
	TaxableAmount  int64             `json:"taxable_amount"`
	TaxAmount      int64             `json:"tax_amount"`
	Total          int64             `json:"total"`
	Taxes          []LineTax         `json:"taxes"`
	Proration      bool              `json:"proration"`
	PeriodStart    *time.Time        `json:"period_start,omitempty"`
	PeriodEnd      *time.Time        `json:"period_end,omitempty"`
	Metadata       map[string]string `json:"metadata"`
}

// Invoice is the API's invoice.
type Invoice struct {
	Object                string            `json:"object"`
	ID                    string            `json:"id"`
	Number                *string           `json:"number"`
	NumberPrefix          string            `json:"number_prefix"`
	AccountID             string            `json:"account_id"`
	UserID                string            `json:"user_id"`
	SubscriptionID        *string           `json:"subscription_id"`
	PeriodStart           *time.Time        `json:"period_start"`
	PeriodEnd             *time.Time        `json:"period_end"`
	BillingReason         string            `json:"billing_reason"`
	Status                string            `json:"status"`
	Overdue               bool              `json:"overdue"`
	Currency              money.Currency    `json:"currency"`
	Customer              Customer          `json:"customer"`
	Memo                  string            `json:"memo"`
	Metadata              map[string]string `json:"metadata"`
	CollectionMethod      string            `json:"collection_method"`
	NetTermsDays          *int              `json:"net_terms_days"`
	DueDate               *Date             `json:"due_date"`
	Coupon                *string           `json:"coupon"`
	Discounts             []Discount        `json:"discounts"`
	Lines                 []Line            `json:"lines,omitzero"` // omitted in lists
	LineCount             int               `json:"line_count"`
	TaxBreakdown          []TaxAmount       `json:"tax_breakdown"`
	Subtotal              int64             `json:"subtotal"`
	Discount              int64             `json:"discount"`
	Tax                   int64             `json:"tax"`
	TaxExclusive          int64             `json:"tax_exclusive"`
	TaxInclusive          int64             `json:"tax_inclusive"`
	TotalExcludingTax     int64             `json:"total_excluding_tax"`
	Total                 int64             `json:"total"`
	AmountPaid            int64             `json:"amount_paid"`
	AmountRefunded        int64             `json:"amount_refunded"`
	AmountDue             int64             `json:"amount_due"`
	DunningAttempts       int               `json:"dunning_attempts"`
	NextPaymentAttemptAt  *time.Time        `json:"next_dunning_at"`
	PaymentFailures       int               `json:"payment_failures"`
	LastPaymentError      *string           `json:"last_payment_error"`
	LastPaymentFailedAt   *time.Time        `json:"last_payment_failed_at"`
	CreatedAt             time.Time         `json:"created_at"`
	UpdatedAt             time.Time         `json:"updated_at"`
	FinalizedAt           *time.Time        `json:"finalized_at"`
	PaidAt                *time.Time        `json:"paid_at"`
	VoidedAt              *time.Time        `json:"voided_at"`
	MarkedUncollectibleAt *time.Time        `json:"marked_uncollectible_at"`
	OverdueAt             *time.Time        `json:"overdue_at"`
	// DraftedByCustomer: the account's owner made this invoice with its
	// own token. A customer changes and finalizes only such drafts; one an
	// administrator or a service made is the merchant's bill.
	DraftedByCustomer bool `json:"-"`
}

// Recompute recalculates every line and the totals from the lines' inputs
// and the invoice discounts. Only drafts are recomputed; finalizing
// freezes the amounts.
func (inv *Invoice) Recompute() error {
	in := make([]calcLine, len(inv.Lines))
	for i, l := range inv.Lines {
		snaps := make([]TaxRateSnap, len(l.Taxes))
		for j, t := range l.Taxes {
			snaps[j] = t.TaxRateSnap
		}
		in[i] = calcLine{Quantity: l.Quantity, UnitAmount: l.UnitAmount, Discount: l.Discount, Taxes: snaps}
	}
	res, err := compute(in, inv.Discounts)
	if err != nil {
		return err
	}
	for i := range inv.Lines {
		l, r := &inv.Lines[i], res.Lines[i]
		l.Amount, l.DiscountAmount, l.TaxableAmount, l.TaxAmount, l.Total, l.Taxes =
			r.Amount, r.DiscountAmount, r.TaxableAmount, r.TaxAmount, r.Total, r.Taxes
		if l.Discount != nil {
			l.Discount.Amount = r.LineDiscount
		}
	}
	inv.Discounts = res.Discounts
	inv.Subtotal, inv.Discount, inv.Tax, inv.TaxExclusive, inv.TaxInclusive =
		res.Subtotal, res.Discount, res.Tax, res.TaxExclusive, res.TaxInclusive
	inv.TotalExcludingTax, inv.Total = res.TotalExcludingTax, res.Total
	inv.TaxBreakdown = res.Breakdown
	if inv.TaxBreakdown == nil {
		inv.TaxBreakdown = []TaxAmount{}
	}
	inv.LineCount = len(inv.Lines)
	inv.AmountDue = max(inv.Total-inv.AmountPaid, 0)
	return nil
}

// TaxRate is a tax rate resource. Rates are immutable once created (as in
// Stripe, a changed rate is a new rate), so invoices can trust snapshots.
type TaxRate struct {
	Object       string            `json:"object"`
	ID           string            `json:"id"`
	DisplayName  string            `json:"display_name"`
	Jurisdiction string            `json:"jurisdiction"`
	Country      string            `json:"country"`
	State        string            `json:"state"`
	Description  string            `json:"description"`
	Percentage   Percent           `json:"percentage"`
	Inclusive    bool              `json:"inclusive"`
	Compound     bool              `json:"compound"`
	Metadata     map[string]string `json:"metadata"`
	CreatedAt    time.Time         `json:"created_at"`
}

func (r TaxRate) Snap() TaxRateSnap {
	return TaxRateSnap{TaxRateID: r.ID, DisplayName: r.DisplayName, Jurisdiction: r.Jurisdiction,
		Percentage: r.Percentage, Inclusive: r.Inclusive, Compound: r.Compound}
}

// Coupon durations (on subscriptions; on a one-off invoice a coupon applies once).
const (
	DurationOnce      = "once"
	DurationRepeating = "repeating"
	DurationForever   = "forever"
)

// Coupon is a reusable discount.
type Coupon struct {
	Object           string            `json:"object"`
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	PercentOff       *Percent          `json:"percent_off"`
	AmountOff        *int64            `json:"amount_off"`
	Currency         *money.Currency   `json:"currency"`
	Duration         string            `json:"duration"`
	DurationInMonths *int              `json:"duration_in_months"`
	MaxRedemptions   *int              `json:"max_redemptions"`
	TimesRedeemed    int               `json:"times_redeemed"`
	RedeemBy         *time.Time        `json:"redeem_by"`
	Valid            bool              `json:"valid"`
	Metadata         map[string]string `json:"metadata"`
	CreatedAt        time.Time         `json:"created_at"`
}

// Redeemable reports whether the coupon can be applied at now.
func (c Coupon) Redeemable(now time.Time) bool {
	return (c.RedeemBy == nil || now.Before(*c.RedeemBy)) &&
		(c.MaxRedemptions == nil || c.TimesRedeemed < *c.MaxRedemptions)
}

func (c Coupon) Discount() Discount {
	d := Discount{Coupon: c.ID, Description: c.Name}
	if c.PercentOff != nil {
		d.PercentOff = *c.PercentOff
	} else if c.AmountOff != nil {
		d.AmountOff = *c.AmountOff
	}
	return d
}

// Plan is what a subscription bills each period.
type Plan struct {
	Name          string         `json:"name"`
	Amount        int64          `json:"amount"`
	Currency      money.Currency `json:"currency"`
	Interval      string         `json:"interval"`
	IntervalCount int            `json:"interval_count"`
}

// Subscription is the API's subscription.
type Subscription struct {
	Object             string            `json:"object"`
	ID                 string            `json:"id"`
	AccountID          string            `json:"account_id"`
	UserID             string            `json:"user_id"`
	Status             string            `json:"status"`
	Plan               Plan              `json:"plan"`
	MRR                int64             `json:"mrr"`
	Currency           money.Currency    `json:"currency"`
	Start              time.Time         `json:"start"`
	TrialEnd           *time.Time        `json:"trial_end"`
	AnchorDay          int               `json:"anchor_day"`
	BillingStart       time.Time         `json:"billing_start"`
	CycleAnchor        time.Time         `json:"cycle_anchor"`
	PeriodsBilled      int               `json:"periods_billed"`
	NextBillingAt      *time.Time        `json:"next_billing_at"`
	CurrentPeriodStart *time.Time        `json:"current_period_start"`
	CurrentPeriodEnd   *time.Time        `json:"current_period_end"`
	TaxRateIDs         []string          `json:"tax_rate_ids"`
	Coupon             *string           `json:"coupon"`
	CouponStart        *time.Time        `json:"coupon_start"`
	CouponUses         int               `json:"coupon_uses"`
	CollectionMethod   string            `json:"collection_method"`
	NetTermsDays       int               `json:"net_terms_days"`
	Customer           Customer          `json:"customer"`
	Metadata           map[string]string `json:"metadata"`
	PendingLines       []Line            `json:"pending_lines"`
	CancelAt           *time.Time        `json:"cancel_at"`
	CancelAtPeriodEnd  bool              `json:"cancel_at_period_end"`
	CanceledAt         *time.Time        `json:"canceled_at"`
	LatestInvoiceID    *string           `json:"latest_invoice_id"`
	CreatedAt          time.Time         `json:"created_at"`
	UpdatedAt          time.Time         `json:"updated_at"`
}

func (s *Subscription) Cycle() Cycle {
	c := Cycle{Interval: s.Plan.Interval, Count: s.Plan.IntervalCount, AnchorDay: s.AnchorDay,
		Start: s.BillingStart.UTC(), Anchor: s.CycleAnchor.UTC()}
	return c
}

// Derive fills the computed fields.
func (s *Subscription) Derive() {
	s.Object = "subscription"
	s.Currency = s.Plan.Currency
	s.MRR = mrr(s.Plan.Amount, s.Plan.Interval, s.Plan.IntervalCount)
	s.CancelAtPeriodEnd = s.CancelAt != nil && s.Status != SubCanceled
	if s.TaxRateIDs == nil {
		s.TaxRateIDs = []string{}
	}
	if s.PendingLines == nil {
		s.PendingLines = []Line{}
	}
	if s.Metadata == nil {
		s.Metadata = map[string]string{}
	}
}
