package api

import (
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// Tax rates and coupons: the catalogue invoices and subscriptions use.
// Admins create them; tax rates are immutable once created.

type taxRateIn struct {
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

func (s *Service) createTaxRate(w http.ResponseWriter, r *http.Request) {
	var in taxRateIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	var v problem.Validator
	rate := invoicing.TaxRate{Object: "tax_rate", ID: ids.New(), DisplayName: strings.TrimSpace(in.DisplayName),
		Jurisdiction: in.Jurisdiction, Country: strings.ToUpper(in.Country), State: in.State, Description: in.Description,
		Compound: in.Compound, Metadata: in.Metadata, CreatedAt: s.clock()}
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
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		if err := store.InsertTaxRate(ctx, tx, rate); err != nil {
			return err
		}
		return tx.Complete(ctx, idempotency.Response{Status: http.StatusCreated, Body: rate, Location: "/tax-rates/" + rate.ID})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	w.Header().Set("Location", "/tax-rates/"+rate.ID)
	httpx.WriteJSON(w, http.StatusCreated, rate)
}

func (s *Service) getTaxRate(w http.ResponseWriter, r *http.Request) {
	id := strings.ToLower(r.PathValue("id"))
	if !ids.Valid(id) {
		problem.Write(w, r, invoicing.NotFound("tax rate", id))
		return
	}
	rates, err := s.b.TaxRates(r.Context(), nil, []string{id})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rate, ok := rates[id]
	if !ok {
		problem.Write(w, r, invoicing.NotFound("tax rate", id))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, rate)
}

func (s *Service) listTaxRates(w http.ResponseWriter, r *http.Request) {
	limit, after, err := httpx.PagingByID(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rates, err := store.ListTaxRates(r.Context(), s.d.Pool, after, limit+1)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(rates, limit, func(t invoicing.TaxRate) any { return httpx.IDCursor{ID: t.ID} }))
}

type couponIn struct {
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

func (s *Service) createCoupon(w http.ResponseWriter, r *http.Request) {
	var in couponIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	now := s.clock()
	var v problem.Validator
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
		problem.Write(w, r, err)
		return
	}
	c.Valid = true
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		if err := store.InsertCoupon(ctx, tx, c); err != nil {
			return err
		}
		return tx.Complete(ctx, idempotency.Response{Status: http.StatusCreated, Body: c, Location: "/coupons/" + c.ID})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	w.Header().Set("Location", "/coupons/"+c.ID)
	httpx.WriteJSON(w, http.StatusCreated, c)
}

func (s *Service) getCoupon(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, err := store.GetCoupon(r.Context(), s.d.Pool, id, false)
	if err == store.ErrNotFound || (err == nil && !invoicing.ValidCouponID(id)) {
		err = invoicing.NotFound("coupon", id)
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	c.Valid = c.Redeemable(s.clock())
	httpx.WriteJSON(w, http.StatusOK, c)
}

type couponCursor struct {
	ID string `json:"id"`
}

func (s *Service) listCoupons(w http.ResponseWriter, r *http.Request) {
	var cur couponCursor
	limit, _, err := httpx.Paging(r, 20, 100, &cur)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	cs, err := store.ListCoupons(r.Context(), s.d.Pool, cur.ID, limit+1)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	now := s.clock()
	for i := range cs {
		cs[i].Valid = cs[i].Redeemable(now)
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(cs, limit, func(c invoicing.Coupon) any { return couponCursor{ID: c.ID} }))
}
