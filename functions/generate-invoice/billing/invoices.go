package billing

import (
	"context"
	"strconv"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
)

// The invoice lifecycle inside a transaction: resolve a validated draft
// against the catalogue (tax rates, coupons), persist, finalize with a
// gap-free number, void, mark uncollectible, record payments. Each returns
// the outbox messages its change emits; the caller adds them in the same
// transaction.

// TaxRates returns the rates of ids from the in-process cache or the
// store, read in tx (nil: outside a transaction). Rates are immutable, so
// a cached rate is never stale.
func (s *Service) TaxRates(ctx context.Context, tx Tx, ids []string) (map[string]invoicing.TaxRate, error) {
	out := make(map[string]invoicing.TaxRate, len(ids))
	var missing []string
	s.ratesMu.RLock()
	for _, id := range ids {
		if r, ok := s.rates[id]; ok {
			out[id] = r
		} else {
			missing = append(missing, id)
		}
	}
	s.ratesMu.RUnlock()
	if len(missing) == 0 {
		return out, nil
	}
	var rows []invoicing.TaxRate
	var err error
	if tx != nil {
		rows, err = tx.TaxRates(ctx, missing)
	} else {
		rows, err = s.store.TaxRates(ctx, missing)
	}
	if err != nil {
		return nil, err
	}
	s.ratesMu.Lock()
	for _, r := range rows {
		if len(s.rates) < 100_000 {
			s.rates[r.ID] = r
		}
		out[r.ID] = r
	}
	s.ratesMu.Unlock()
	return out, nil
}

// Resolver turns drafts into invoices inside one transaction, keeping the
// coupons it locked and the redemptions it owes.
type Resolver struct {
	s       *Service
	tx      Tx
	now     time.Time
	coupons map[string]*invoicing.Coupon
	redeem  map[string]int
}

// NewResolver starts resolving drafts in tx at now.
func (s *Service) NewResolver(tx Tx, now time.Time) *Resolver {
	return &Resolver{s: s, tx: tx, now: now, coupons: map[string]*invoicing.Coupon{}, redeem: map[string]int{}}
}

// Lines resolves the tax rates of line drafts.
func (r *Resolver) Lines(ctx context.Context, pointer string, drafts []invoicing.LineDraft, firstIndex int) ([]invoicing.Line, error) {
	var ids []string
	for _, d := range drafts {
		ids = append(ids, d.TaxIDs...)
	}
	rates, err := r.s.TaxRates(ctx, r.tx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]invoicing.Line, len(drafts))
	for i, d := range drafts {
		l := d.Line
		l.Taxes = make([]invoicing.LineTax, 0, len(d.TaxIDs))
		path := pointer + "line_items/" + strconv.Itoa(firstIndex+i) + "/tax_rate_ids"
		for j, id := range d.TaxIDs {
			rate, ok := rates[id]
			if !ok {
				return nil, &apperr.Error{Code: invoicing.CodeTaxRateUnknown, Detail: "no tax rate " + id,
					Errors: []apperr.FieldError{apperr.Field(path+"/"+strconv.Itoa(j), "is not a tax rate")}}
			}
			if j > 0 && rate.Inclusive != l.Taxes[0].Inclusive {
				return nil, &apperr.Error{Code: invoicing.CodeTaxInclusiveMixed,
					Detail: "the tax rates of one line must be all inclusive or all exclusive",
					Errors: []apperr.FieldError{apperr.Field(path, "mixes inclusive and exclusive rates")}}
			}
			l.Taxes = append(l.Taxes, invoicing.LineTax{TaxRateSnap: rate.Snap()})
		}
		out[i] = l
	}
	return out, nil
}

// Coupon locks and checks a coupon for an invoice in cur; the redemption
// is counted when the resolver's work is kept (flush).
func (r *Resolver) Coupon(ctx context.Context, pointer, id string, inv *invoicing.Invoice) (invoicing.Discount, error) {
	c, ok := r.coupons[id]
	if !ok {
		got, err := r.tx.Coupon(ctx, id, true)
		if apperr.CodeOf(err) == apperr.NotFound {
			return invoicing.Discount{}, &apperr.Error{Code: invoicing.CodeCouponUnknown, Detail: "no coupon " + id,
				Errors: []apperr.FieldError{apperr.Field(pointer+"coupon", "is not a coupon")}}
		}
		if err != nil {
			return invoicing.Discount{}, err
		}
		c = &got
		r.coupons[id] = c
	}
	probe := *c
	probe.TimesRedeemed += r.redeem[id]
	if !probe.Redeemable(r.now) {
		return invoicing.Discount{}, &apperr.Error{Code: invoicing.CodeCouponNotRedeemable,
			Detail: "coupon " + id + " has expired or reached its maximum redemptions",
			Errors: []apperr.FieldError{apperr.Field(pointer+"coupon", "cannot be redeemed")}}
	}
	if c.Currency != nil && *c.Currency != inv.Currency {
		return invoicing.Discount{}, invoicing.CurrencyMismatch(pointer+"coupon", *c.Currency, inv.Currency)
	}
	return c.Discount(), nil
}

// Draft resolves a creation draft into d.Inv (lines, coupon, totals).
func (r *Resolver) Draft(ctx context.Context, d *invoicing.InvoiceDraft) error {
	inv := d.Inv
	lines, err := r.Lines(ctx, d.Pointer, d.Lines, 0)
	if err != nil {
		return err
	}
	inv.Lines = lines
	inv.Coupon = nil
	discounts := make([]invoicing.Discount, 0, len(inv.Discounts)+1)
	for _, x := range inv.Discounts {
		if x.Coupon == "" {
			discounts = append(discounts, x)
		}
	}
	if d.Coupon != "" {
		cd, err := r.Coupon(ctx, d.Pointer, d.Coupon, inv)
		if err != nil {
			return err
		}
		discounts = append(discounts, cd)
		inv.Coupon = ptr(d.Coupon)
	}
	inv.Discounts = discounts
	if err := inv.Recompute(); err != nil {
		return err
	}
	if d.Coupon != "" && (HoldsRedemption(inv) || d.AutoFinalize) {
		r.redeem[d.Coupon]++
	}
	return nil
}

// HoldsRedemption: a draft the merchant made holds a redemption of its
// coupon from the moment the coupon is applied. A draft its customer made
// holds none until it is finalized (FinalizeInvoice counts it then, or
// refuses the coupon used up): such drafts cost the customer nothing and
// it cannot delete them, so one customer's drafts would otherwise use up
// a limited promotion for every other customer.
func HoldsRedemption(inv *invoicing.Invoice) bool {
	return !inv.DraftedByCustomer || inv.Status != invoicing.StatusDraft
}

// Redeem counts a redemption of coupon id, written by Flush.
func (r *Resolver) Redeem(id string) { r.redeem[id]++ }

// Release gives back the redemption of coupon id a draft held (the coupon
// removed or replaced), written by Flush.
func (r *Resolver) Release(id string) { r.redeem[id]-- }

// Flush writes the coupon redemptions counted so far (released ones
// subtract).
func (r *Resolver) Flush(ctx context.Context) error {
	for id, n := range r.redeem {
		if n == 0 {
			continue
		}
		if err := r.tx.RedeemCoupon(ctx, id, n); err != nil {
			return err
		}
	}
	clear(r.redeem)
	return nil
}

// PersistNew inserts resolved invoices, finalizing those marked, with
// their events (created, then finalized…).
func (s *Service) PersistNew(ctx context.Context, tx Tx, invs []*invoicing.Invoice, final []bool, now time.Time) ([]invoicing.Event, error) {
	var toFinal []*invoicing.Invoice
	for i, inv := range invs {
		if final[i] {
			if err := invoicing.CheckFinalize(inv, now, s.cfg.DefaultNetDays); err != nil {
				return nil, err
			}
			toFinal = append(toFinal, inv)
		}
	}
	msgs := make([]invoicing.Event, 0, 3*len(invs))
	for _, inv := range invs {
		// "created" describes the invoice as created: a draft.
		msgs = append(msgs, invoicing.InvoiceEvent(events.TypeInvoiceCreated, inv, 0))
	}
	fin, err := invoicing.Finalize(ctx, tx, toFinal, now)
	if err != nil {
		return nil, err
	}
	if err := tx.InsertInvoices(ctx, invs); err != nil {
		return nil, err
	}
	return append(msgs, fin...), nil
}

// authorizeOwner hides someone else's resource behind a 404, exactly like
// a missing one.
func authorizeOwner(canAccess bool, what, id string) error {
	if !canAccess {
		return invoicing.NotFound(what, id)
	}
	return nil
}
