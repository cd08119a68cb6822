package api

import (
	"net/http"
	"strings"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// Tax rates and coupons: the catalogue invoices and subscriptions use.
// Admins create them; tax rates are immutable once created.

func (s *Service) createTaxRate(w http.ResponseWriter, r *http.Request) {
	var in billing.TaxRateIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	rate, err := s.b.CreateTaxRate(ctx, &in, func(body any) any {
		rate := body.(invoicing.TaxRate)
		return idempotency.Response{Status: http.StatusCreated, Body: rate, Location: "/tax-rates/" + rate.ID}
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
	rates, err := s.b.TaxRatePage(r.Context(), after, limit+1)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(rates, limit, func(t invoicing.TaxRate) any { return httpx.IDCursor{ID: t.ID} }))
}

func (s *Service) createCoupon(w http.ResponseWriter, r *http.Request) {
	var in billing.CouponIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	c, err := s.b.CreateCoupon(ctx, &in, func(body any) any {
		c := body.(invoicing.Coupon)
		return idempotency.Response{Status: http.StatusCreated, Body: c, Location: "/coupons/" + c.ID}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	w.Header().Set("Location", "/coupons/"+c.ID)
	httpx.WriteJSON(w, http.StatusCreated, c)
}

func (s *Service) getCoupon(w http.ResponseWriter, r *http.Request) {
	c, err := s.b.Coupon(r.Context(), r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
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
	cs, err := s.b.CouponPage(r.Context(), cur.ID, limit+1)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(cs, limit, func(c invoicing.Coupon) any { return couponCursor{ID: c.ID} }))
}
