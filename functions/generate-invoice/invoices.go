package main

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/problem"
)

// The invoice lifecycle inside a transaction: resolve a validated draft
// against the catalogue (tax rates, coupons), persist, finalize with a
// gap-free number, void, mark uncollectible, record payments. Each returns
// the outbox messages its change emits; the caller adds them in the same
// transaction.

// taxRates returns the rates of ids from the in-process cache or the
// database. Rates are immutable, so a cached rate is never stale.
func (s *service) taxRates(ctx context.Context, q querier, ids []string) (map[string]TaxRate, error) {
	out := make(map[string]TaxRate, len(ids))
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
	rows, err := getTaxRates(ctx, q, missing)
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

// resolver turns drafts into invoices inside one transaction, keeping the
// coupons it locked and the redemptions it owes.
type resolver struct {
	s       *service
	tx      pgx.Tx
	now     time.Time
	coupons map[string]*Coupon
	redeem  map[string]int
}

func (s *service) newResolver(tx pgx.Tx, now time.Time) *resolver {
	return &resolver{s: s, tx: tx, now: now, coupons: map[string]*Coupon{}, redeem: map[string]int{}}
}

// lines resolves the tax rates of line drafts.
func (r *resolver) lines(ctx context.Context, pointer string, drafts []lineDraft, firstIndex int) ([]Line, error) {
	var ids []string
	for _, d := range drafts {
		ids = append(ids, d.taxIDs...)
	}
	rates, err := r.s.taxRates(ctx, r.tx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]Line, len(drafts))
	for i, d := range drafts {
		l := d.line
		l.Taxes = make([]LineTax, 0, len(d.taxIDs))
		path := pointer + "line_items/" + strconv.Itoa(firstIndex+i) + "/tax_rate_ids"
		for j, id := range d.taxIDs {
			rate, ok := rates[id]
			if !ok {
				return nil, &problem.Error{Code: codeTaxRateUnknown, Detail: "no tax rate " + id,
					Errors: []problem.FieldError{problem.Field(path+"/"+strconv.Itoa(j), "is not a tax rate")}}
			}
			if j > 0 && rate.Inclusive != l.Taxes[0].Inclusive {
				return nil, &problem.Error{Code: codeTaxInclusiveMixed,
					Detail: "the tax rates of one line must be all inclusive or all exclusive",
					Errors: []problem.FieldError{problem.Field(path, "mixes inclusive and exclusive rates")}}
			}
			l.Taxes = append(l.Taxes, LineTax{TaxRateSnap: rate.snap()})
		}
		out[i] = l
	}
	return out, nil
}

// coupon locks and checks a coupon for an invoice in cur; the redemption
// is counted when the resolver's work is kept (flush).
func (r *resolver) coupon(ctx context.Context, pointer, id string, inv *Invoice) (Discount, error) {
	c, ok := r.coupons[id]
	if !ok {
		got, err := getCoupon(ctx, r.tx, id, true)
		if err == errNotFound {
			return Discount{}, &problem.Error{Code: codeCouponUnknown, Detail: "no coupon " + id,
				Errors: []problem.FieldError{problem.Field(pointer+"coupon", "is not a coupon")}}
		}
		if err != nil {
			return Discount{}, err
		}
		c = &got
		r.coupons[id] = c
	}
	probe := *c
	probe.TimesRedeemed += r.redeem[id]
	if !probe.redeemable(r.now) {
		return Discount{}, &problem.Error{Code: codeCouponNotRedeemable,
			Detail: "coupon " + id + " has expired or reached its maximum redemptions",
			Errors: []problem.FieldError{problem.Field(pointer+"coupon", "cannot be redeemed")}}
	}
	if c.Currency != nil && *c.Currency != inv.Currency {
		return Discount{}, currencyMismatch(pointer+"coupon", *c.Currency, inv.Currency)
	}
	return c.discount(), nil
}

// draft resolves a creation draft into d.inv (lines, coupon, totals).
func (r *resolver) draft(ctx context.Context, d *invoiceDraft) error {
	inv := d.inv
	lines, err := r.lines(ctx, d.pointer, d.lines, 0)
	if err != nil {
		return err
	}
	inv.Lines = lines
	inv.Coupon = nil
	discounts := make([]Discount, 0, len(inv.Discounts)+1)
	for _, x := range inv.Discounts {
		if x.Coupon == "" {
			discounts = append(discounts, x)
		}
	}
	if d.coupon != "" {
		cd, err := r.coupon(ctx, d.pointer, d.coupon, inv)
		if err != nil {
			return err
		}
		discounts = append(discounts, cd)
		inv.Coupon = ptr(d.coupon)
	}
	inv.Discounts = discounts
	if err := inv.recompute(); err != nil {
		return err
	}
	if d.coupon != "" {
		r.redeem[d.coupon]++
	}
	return nil
}

// flush writes the coupon redemptions counted so far.
func (r *resolver) flush(ctx context.Context) error {
	for id, n := range r.redeem {
		if _, err := r.tx.Exec(ctx, `UPDATE coupons SET times_redeemed = times_redeemed + $2 WHERE id = $1`, id, n); err != nil {
			return err
		}
	}
	clear(r.redeem)
	return nil
}

// checkFinalize validates a draft for finalization at now and fixes its
// due date. It changes nothing else.
func (s *service) checkFinalize(inv *Invoice, now time.Time) error {
	if inv.Status != StatusDraft {
		return problem.New(codeInvoiceNotDraft, "invoice %s is %s; only a draft can be finalized", inv.ID, inv.Status)
	}
	if len(inv.Lines) == 0 {
		return problem.New(codeInvoiceEmpty, "invoice %s has no line items; add lines before finalizing", inv.ID)
	}
	today := utcDate(now)
	switch {
	case inv.DueDate != nil:
		if inv.DueDate.Before(today) {
			return &problem.Error{Code: codeDueDateInPast,
				Detail: "the invoice's due_date " + inv.DueDate.Format(time.DateOnly) + " has passed; PATCH a new one first",
				Errors: []problem.FieldError{problem.Field("due_date", "must be today or later")}}
		}
	case inv.NetTermsDays != nil:
		inv.DueDate = &Date{today.AddDate(0, 0, *inv.NetTermsDays)}
	default:
		inv.DueDate = &Date{today.AddDate(0, 0, s.cfg.DefaultNetDays)}
	}
	return nil
}

// finalize gives every invoice (drafts already checked) its number in one
// reservation per series, freezes it as open (or paid when nothing is
// due) and returns the events. The invoices are not written.
func (s *service) finalize(ctx context.Context, tx pgx.Tx, invs []*Invoice, now time.Time) ([]outbox.Message, error) {
	bySeries := map[string][]*Invoice{}
	for _, inv := range invs {
		k := seriesKey(inv.NumberPrefix, now.Year())
		bySeries[k] = append(bySeries[k], inv)
	}
	keys := make([]string, 0, len(bySeries))
	for k := range bySeries {
		keys = append(keys, k)
	}
	sort.Strings(keys) // one lock order for every transaction
	for _, k := range keys {
		group := bySeries[k]
		first, err := reserveNumbers(ctx, tx, k, len(group))
		if err != nil {
			return nil, err
		}
		for i, inv := range group {
			inv.Number = ptr(formatNumber(inv.NumberPrefix, now.Year(), first+int64(i)))
		}
	}
	var msgs []outbox.Message
	for _, inv := range invs {
		inv.Status = StatusOpen
		inv.FinalizedAt = ptr(now)
		inv.UpdatedAt = now
		inv.AmountDue = max(inv.Total-inv.AmountPaid, 0)
		msgs = append(msgs, s.invoiceEvent(ctx, typeInvoiceFinalized, inv, 0), s.notification(ctx, "invoice_finalized", inv))
		if inv.AmountDue == 0 {
			// Nothing to collect (a 100% discount, a free plan): paid at once.
			inv.Status, inv.PaidAt = StatusPaid, ptr(now)
			msgs = append(msgs, s.invoiceEvent(ctx, typeInvoicePaid, inv, 0))
		}
	}
	return msgs, nil
}

// persistNew inserts resolved invoices, finalizing those marked, with
// their events (created, then finalized…).
func (s *service) persistNew(ctx context.Context, tx pgx.Tx, invs []*Invoice, finalize []bool, now time.Time) ([]outbox.Message, error) {
	var toFinal []*Invoice
	for i, inv := range invs {
		if finalize[i] {
			if err := s.checkFinalize(inv, now); err != nil {
				return nil, err
			}
			toFinal = append(toFinal, inv)
		}
	}
	msgs := make([]outbox.Message, 0, 3*len(invs))
	for _, inv := range invs {
		// "created" describes the invoice as created: a draft.
		msgs = append(msgs, s.invoiceEvent(ctx, typeInvoiceCreated, inv, 0))
	}
	fin, err := s.finalize(ctx, tx, toFinal, now)
	if err != nil {
		return nil, err
	}
	if err := insertInvoices(ctx, tx, invs); err != nil {
		return nil, err
	}
	return append(msgs, fin...), nil
}

// authorizeOwner hides someone else's resource behind a 404, exactly like
// a missing one.
func authorizeOwner(canAccess bool, what, id string) error {
	if !canAccess {
		return notFound(what, id)
	}
	return nil
}

// void: open → void. Nothing is due any more.
func (s *service) void(ctx context.Context, inv *Invoice, now time.Time) ([]outbox.Message, error) {
	if inv.Status != StatusOpen {
		return nil, problem.New(codeInvoiceNotOpen, "invoice %s is %s; only an open invoice can be voided", inv.ID, inv.Status)
	}
	inv.Status, inv.VoidedAt, inv.UpdatedAt, inv.AmountDue = StatusVoid, ptr(now), now, 0
	inv.NextPaymentAttemptAt = nil
	return []outbox.Message{s.invoiceEvent(ctx, typeInvoiceVoided, inv, 0)}, nil
}

// markUncollectible: open → uncollectible. The amount stays due: money
// that still arrives pays the invoice.
func (s *service) markUncollectible(ctx context.Context, inv *Invoice, now time.Time) ([]outbox.Message, error) {
	if inv.Status != StatusOpen {
		return nil, problem.New(codeInvoiceNotOpen, "invoice %s is %s; only an open invoice can be marked uncollectible", inv.ID, inv.Status)
	}
	inv.Status, inv.MarkedUncollectibleAt, inv.UpdatedAt = StatusUncollectible, ptr(now), now
	inv.NextPaymentAttemptAt = nil
	return []outbox.Message{s.invoiceEvent(ctx, typeInvoiceUncollectible, inv, 0)}, nil
}

// settle recomputes amount_due after amount_paid changed and marks the
// invoice paid when it is covered. A paid invoice never goes back.
func (s *service) settle(ctx context.Context, inv *Invoice, at, now time.Time) []outbox.Message {
	inv.UpdatedAt = now
	if inv.Status == StatusVoid {
		return nil // money reaching a void invoice is recorded; nothing becomes due
	}
	inv.AmountDue = max(inv.Total-inv.AmountPaid, 0)
	if inv.AmountDue > 0 || (inv.Status != StatusOpen && inv.Status != StatusUncollectible) {
		return nil
	}
	inv.Status, inv.PaidAt, inv.NextPaymentAttemptAt = StatusPaid, ptr(at), nil
	return []outbox.Message{s.invoiceEvent(ctx, typeInvoicePaid, inv, 0)}
}
