package billing

import (
	"context"
	"strings"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
)

// Tax rates and coupons: the catalogue invoices and subscriptions use.
// Admins create them; tax rates are immutable once created.

// TaxRateIn is the body of POST /tax-rates.
type TaxRateIn struct {
	DisplayName  string                `json:"display_name"`
	Jurisdiction string                `json:"jurisdiction"`
	Country      string                `json:"country"`
	State        string                `json:"state"`
	Description  string                `json:"description"`
	Percentage   invoicing.DecimalText `json:"percentage"`
	Inclusive    *bool                 `json:"inclusive"`
	Compound     bool                  `json:"compound"`
	Metadata     map[string]string     `json:"metadata"`
}

// CreateTaxRate validates and stores a new tax rate, with the answer done
// makes of it.
func (s *Service) CreateTaxRate(ctx context.Context, in *TaxRateIn, done Answer) (*invoicing.TaxRate, error) {
	var v apperr.Validator
	rate := invoicing.TaxRate{Object: "tax_rate", ID: ids.New(), DisplayName: strings.TrimSpace(in.DisplayName),
		Jurisdiction: in.Jurisdiction, Country: strings.ToUpper(in.Country), State: in.State, Description: in.Description,
		Compound: in.Compound, Metadata: in.Metadata, CreatedAt: s.Clock()}
	v.Check(rate.DisplayName != "" && invoicing.TextOK(rate.DisplayName, 100), "display_name", "is required, at most 100 characters (e.g. VAT)")
	v.Check(invoicing.TextOK(in.Jurisdiction, invoicing.MaxName), "jurisdiction", "must be at most 200 characters")
	v.Check(rate.Country == "" || (len(rate.Country) == 2 && invoicing.AllUpper(rate.Country)), "country", "must be an ISO 3166-1 alpha-2 code")
	v.Check(invoicing.TextOK(in.State, invoicing.MaxName), "state", "must be at most 200 characters")
	v.Check(invoicing.TextOK(in.Description, invoicing.MaxDescription), "description", "must be at most 500 characters")
	if !in.Percentage.Set {
		v.Check(false, "percentage", "is required: a decimal such as \"20\" or \"8.875\"")
	} else {
		pct, msg := in.Percentage.Parse(invoicing.PercentDecimals)
		if msg == "" && (pct < 0 || pct > invoicing.RateDen) {
			msg = "must be from 0 to 100"
		}
		v.Check(msg == "", "percentage", msg)
		rate.Percentage = invoicing.Percent(pct)
	}
	v.Check(in.Inclusive != nil, "inclusive", "is required: whether prices already include this tax")
	if in.Inclusive != nil {
		rate.Inclusive = *in.Inclusive
	}
	invoicing.CheckMetadata(&v, "metadata", in.Metadata)
	if rate.Metadata == nil {
		rate.Metadata = map[string]string{}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	err := s.store.InTx(ctx, func(tx Tx) error {
		if err := tx.InsertTaxRate(ctx, rate); err != nil {
			return err
		}
		return complete(ctx, tx, done, rate)
	})
	if err != nil {
		return nil, err
	}
	return &rate, nil
}

// TaxRatePage lists tax rates after the id after.
func (s *Service) TaxRatePage(ctx context.Context, after string, limit int) ([]invoicing.TaxRate, error) {
	return s.store.TaxRatePage(ctx, after, limit)
}

// CouponIn is the body of POST /coupons.
type CouponIn struct {
	ID               string                `json:"id"`
	Name             string                `json:"name"`
	PercentOff       invoicing.DecimalText `json:"percent_off"`
	AmountOff        *int64                `json:"amount_off"`
	Currency         string                `json:"currency"`
	Duration         string                `json:"duration"`
	DurationInMonths *int                  `json:"duration_in_months"`
	MaxRedemptions   *int                  `json:"max_redemptions"`
	RedeemBy         *string               `json:"redeem_by"`
	Metadata         map[string]string     `json:"metadata"`
}

// CreateCoupon validates and stores a new coupon, with the answer done
// makes of it.
func (s *Service) CreateCoupon(ctx context.Context, in *CouponIn, done Answer) (*invoicing.Coupon, error) {
	now := s.Clock()
	var v apperr.Validator
	c := invoicing.Coupon{Object: "coupon", ID: in.ID, Name: in.Name, Duration: in.Duration, DurationInMonths: in.DurationInMonths,
		MaxRedemptions: in.MaxRedemptions, Metadata: in.Metadata, CreatedAt: now}
	if c.ID == "" {
		c.ID = strings.ToUpper(strings.ReplaceAll(uuid.NewString(), "-", "")[:12])
	}
	v.Check(invoicing.ValidCouponID(c.ID), "id", "must be 1-64 letters, digits, _ or -")
	v.Check(invoicing.TextOK(c.Name, invoicing.MaxName), "name", "must be at most 200 characters")
	switch {
	case in.PercentOff.Set == (in.AmountOff != nil):
		v.Check(false, "percent_off", "give exactly one of percent_off and amount_off")
	case in.PercentOff.Set:
		pct, msg := in.PercentOff.Parse(invoicing.PercentDecimals)
		if msg == "" && (pct <= 0 || pct > invoicing.RateDen) {
			msg = "must be more than 0 and at most 100"
		}
		v.Check(msg == "", "percent_off", msg)
		c.PercentOff = ptr(invoicing.Percent(pct))
		v.Check(in.Currency == "", "currency", "applies to amount_off only")
	default:
		v.Check(*in.AmountOff > 0, "amount_off", "must be a positive amount in minor units")
		c.AmountOff = in.AmountOff
		cur, err := money.ParseCurrency(in.Currency)
		v.Check(err == nil, "currency", "is required with amount_off: an ISO 4217 code")
		c.Currency = &cur
	}
	if c.Duration == "" {
		c.Duration = invoicing.DurationOnce
	}
	v.Check(c.Duration == invoicing.DurationOnce || c.Duration == invoicing.DurationRepeating || c.Duration == invoicing.DurationForever, "duration",
		"must be once, repeating or forever")
	v.Check((c.Duration == invoicing.DurationRepeating) == (c.DurationInMonths != nil), "duration_in_months",
		"is required with duration repeating, and only then")
	v.Check(c.DurationInMonths == nil || (*c.DurationInMonths >= 1 && *c.DurationInMonths <= 1200), "duration_in_months", "must be from 1 to 1200")
	v.Check(c.MaxRedemptions == nil || *c.MaxRedemptions > 0, "max_redemptions", "must be positive")
	if in.RedeemBy != nil {
		c.RedeemBy = invoicing.ParseTime(&v, "redeem_by", in.RedeemBy)
		v.Check(c.RedeemBy == nil || c.RedeemBy.After(now), "redeem_by", "must be in the future")
	}
	invoicing.CheckMetadata(&v, "metadata", in.Metadata)
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	c.Valid = true
	err := s.store.InTx(ctx, func(tx Tx) error {
		if err := tx.InsertCoupon(ctx, c); err != nil {
			return err
		}
		return complete(ctx, tx, done, c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Coupon is coupon id, valid when it can be redeemed now.
func (s *Service) Coupon(ctx context.Context, id string) (*invoicing.Coupon, error) {
	c, err := s.store.Coupon(ctx, id)
	if apperr.CodeOf(err) == apperr.NotFound || (err == nil && !invoicing.ValidCouponID(id)) {
		err = invoicing.NotFound("coupon", id)
	}
	if err != nil {
		return nil, err
	}
	c.Valid = c.Redeemable(s.Clock())
	return &c, nil
}

// CouponPage lists coupons after the id after, each valid when it can be
// redeemed now.
func (s *Service) CouponPage(ctx context.Context, after string, limit int) ([]invoicing.Coupon, error) {
	cs, err := s.store.CouponPage(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	now := s.Clock()
	for i := range cs {
		cs[i].Valid = cs[i].Redeemable(now)
	}
	return cs, nil
}
