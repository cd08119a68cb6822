package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
)

// Subscriptions bill in advance: the invoice of a period is generated,
// finalized and announced when the period starts. docs/generate-invoice.md
// describes periods, anchors, trials, proration and catch-up.

// PlanIn is the plan of a subscription as callers send it.
type PlanIn struct {
	Name          string `json:"name"`
	Amount        *int64 `json:"amount"`
	Currency      string `json:"currency"`
	Interval      string `json:"interval"`
	IntervalCount *int   `json:"interval_count"`
}

// CreateSubscriptionIn is the body of POST /subscriptions.
type CreateSubscriptionIn struct {
	AccountID        string                `json:"account_id"`
	UserID           string                `json:"user_id"`
	Plan             *PlanIn               `json:"plan"`
	Start            *string               `json:"start"`
	AnchorDay        *int                  `json:"anchor_day"`
	TrialEnd         *string               `json:"trial_end"`
	TaxRateIDs       []string              `json:"tax_rate_ids"`
	Coupon           string                `json:"coupon"`
	CollectionMethod string                `json:"collection_method"`
	NetTermsDays     *int                  `json:"net_terms_days"`
	Customer         *invoicing.CustomerIn `json:"customer"`
	Metadata         map[string]string     `json:"metadata"`
}

// Proration behaviours of a plan change.
const (
	ProrateCreate  = "create_prorations" // pending lines on the next invoice
	ProrateInvoice = "always_invoice"    // an invoice now
	ProrateNone    = "none"
)

// PatchSubscriptionIn is the body of PATCH /subscriptions/{id}.
type PatchSubscriptionIn struct {
	Plan              *PlanIn               `json:"plan"`
	ProrationBehavior string                `json:"proration_behavior"`
	TaxRateIDs        *[]string             `json:"tax_rate_ids"`
	CollectionMethod  *string               `json:"collection_method"`
	NetTermsDays      *int                  `json:"net_terms_days"`
	Customer          *invoicing.CustomerIn `json:"customer"`
	Metadata          *map[string]string    `json:"metadata"`
	CancelAtPeriodEnd *bool                 `json:"cancel_at_period_end"`
}

// CancelSubscriptionIn is the body of POST /subscriptions/{id}/cancel.
type CancelSubscriptionIn struct {
	AtPeriodEnd *bool `json:"at_period_end"`
}

var maxIntervalCount = map[string]int{invoicing.IntervalDay: 365, invoicing.IntervalWeek: 52, invoicing.IntervalMonth: 12, invoicing.IntervalYear: 3}

func parsePlan(v *apperr.Validator, in *PlanIn) invoicing.Plan {
	if in == nil {
		v.Check(false, "plan", "is required: {name, amount, currency, interval, interval_count}")
		return invoicing.Plan{}
	}
	p := invoicing.Plan{Name: strings.TrimSpace(in.Name), Interval: in.Interval, IntervalCount: 1}
	v.Check(p.Name != "" && invoicing.TextOK(p.Name, invoicing.MaxName), "plan/name", "is required, at most 200 characters")
	if in.Amount == nil || *in.Amount < 0 {
		v.Check(false, "plan/amount", "is required: the price of one period in minor units, 0 or more")
	} else {
		p.Amount = *in.Amount
	}
	cur, err := money.ParseCurrency(in.Currency)
	v.Check(err == nil, "plan/currency", "is required: an ISO 4217 code")
	p.Currency = cur
	maxCount, ok := maxIntervalCount[in.Interval]
	v.Check(ok, "plan/interval", "must be day, week, month or year")
	if in.IntervalCount != nil {
		p.IntervalCount = *in.IntervalCount
		v.Check(!ok || (p.IntervalCount >= 1 && p.IntervalCount <= maxCount), "plan/interval_count",
			"must be from 1 to "+strconv.Itoa(maxCount)+" for this interval")
	}
	if ok && p.IntervalCount >= 1 {
		// The plan's mrr (its amount normalised to a month) must fit too,
		// or it would read 0 everywhere it is reported.
		_, err := invoicing.MRR(p.Amount, p.Interval, p.IntervalCount)
		v.Check(err == nil, "plan/amount", "is too large: its monthly equivalent (mrr) does not fit in 64-bit minor units")
	}
	return p
}

// subRates resolves a subscription's tax rates to snapshots.
func (s *Service) subRates(ctx context.Context, q Tx, ids []string, path string) ([]invoicing.TaxRateSnap, error) {
	rates, err := s.TaxRates(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	out := make([]invoicing.TaxRateSnap, 0, len(ids))
	for j, id := range ids {
		r, ok := rates[id]
		if !ok {
			return nil, &apperr.Error{Code: invoicing.CodeTaxRateUnknown, Detail: "no tax rate " + id,
				Errors: []apperr.FieldError{apperr.Field(path+"/"+strconv.Itoa(j), "is not a tax rate")}}
		}
		if j > 0 && r.Inclusive != out[0].Inclusive {
			return nil, &apperr.Error{Code: invoicing.CodeTaxInclusiveMixed, Detail: "the tax rates must be all inclusive or all exclusive",
				Errors: []apperr.FieldError{apperr.Field(path, "mixes inclusive and exclusive rates")}}
		}
		out = append(out, r.Snap())
	}
	return out, nil
}

func parseRateIDs(v *apperr.Validator, path string, in []string) []string {
	v.Check(len(in) <= invoicing.MaxRatesLine, path, "at most 5 tax rates")
	seen := map[string]bool{}
	out := make([]string, 0, len(in))
	for j, id := range in {
		id = strings.ToLower(id)
		v.Check(ids.Valid(id) && !seen[id], path+"/"+strconv.Itoa(j), "must be a tax rate id, listed once")
		seen[id] = true
		out = append(out, id)
	}
	return out
}

// newSubscription validates a creation body into a subscription (not yet
// billed) and its coupon id.
// The subscription belongs to the owner of its account (billable).
func (s *Service) newSubscription(ctx context.Context, p auth.Principal, in *CreateSubscriptionIn, now time.Time) (*invoicing.Subscription, error) {
	var v apperr.Validator
	account := strings.ToLower(in.AccountID)
	v.Check(ids.Valid(account), "account_id", "is required: the id of the account billed (a UUID)")
	v.Check(in.UserID == "" || ids.Valid(in.UserID), "user_id", "must be a UUID: the account's owner, or left out")
	plan := parsePlan(&v, in.Plan)
	start := now
	if t := invoicing.ParseTime(&v, "start", in.Start); t != nil {
		start = *t
		v.Check(!start.Before(now.AddDate(-1, 0, 0)), "start", "may be at most one year in the past")
	}
	// Periods, events and e-mails write dates of years 0 to 9999: a start
	// in 9999 made a first period ending in 10000, whose event panicked.
	latest := now.AddDate(5, 0, 0)
	v.Check(!start.After(latest), "start", "may be at most five years in the future")
	trial := invoicing.ParseTime(&v, "trial_end", in.TrialEnd)
	v.Check(trial == nil || trial.After(start), "trial_end", "must be after start")
	v.Check(trial == nil || !trial.After(latest), "trial_end", "may be at most five years in the future")
	anchor := 0
	if in.AnchorDay != nil {
		anchor = *in.AnchorDay
		v.Check(anchor >= 1 && anchor <= 31, "anchor_day", "must be from 1 to 31")
		v.Check(plan.Interval == invoicing.IntervalMonth || plan.Interval == invoicing.IntervalYear, "anchor_day", "applies to month and year intervals only")
	}
	sub := &invoicing.Subscription{Object: "subscription", ID: ids.New(), AccountID: account, Plan: plan,
		Start: start, TrialEnd: trial, CollectionMethod: invoicing.ChargeAutomatically, Metadata: in.Metadata,
		PendingLines: []invoicing.Line{}, CreatedAt: now, UpdatedAt: now}
	sub.TaxRateIDs = parseRateIDs(&v, "tax_rate_ids", in.TaxRateIDs)
	if in.CollectionMethod != "" {
		v.Check(in.CollectionMethod == invoicing.ChargeAutomatically || in.CollectionMethod == invoicing.SendInvoice, "collection_method",
			"must be charge_automatically or send_invoice")
		sub.CollectionMethod = in.CollectionMethod
	}
	if in.NetTermsDays != nil {
		v.Check(*in.NetTermsDays >= 0 && *in.NetTermsDays <= 365, "net_terms_days", "must be from 0 to 365 days")
		sub.NetTermsDays = *in.NetTermsDays
	}
	sub.Customer = invoicing.ParseCustomer(&v, "customer", in.Customer)
	invoicing.CheckMetadata(&v, "metadata", in.Metadata)
	if in.Coupon != "" {
		v.Check(invoicing.ValidCouponID(in.Coupon), "coupon", "must be a coupon id")
		sub.Coupon = ptr(in.Coupon)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	f, err := s.billable(ctx, nil, p, nil, account, in.UserID, string(plan.Currency), "", "plan/currency")
	if err != nil {
		return nil, err
	}
	sub.UserID = f.UserID
	sub.BillingStart = start
	if trial != nil {
		sub.BillingStart = *trial
	}
	c := invoicing.NewCycle(plan.Interval, plan.IntervalCount, anchor, sub.BillingStart)
	sub.CycleAnchor, sub.AnchorDay = c.Anchor, c.AnchorDay
	sub.NextBillingAt = ptr(sub.BillingStart)
	if trial != nil {
		sub.Status = invoicing.SubTrialing
		sub.CurrentPeriodStart, sub.CurrentPeriodEnd = ptr(start), ptr(*trial)
	} else {
		sub.Status = invoicing.SubActive
		ps, pe, _ := c.Period(0)
		sub.CurrentPeriodStart, sub.CurrentPeriodEnd = &ps, &pe
	}
	if sub.Metadata == nil {
		sub.Metadata = map[string]string{}
	}
	sub.Derive()
	return sub, nil
}

// redeemSubCoupon checks and redeems a subscription's coupon.
func (s *Service) redeemSubCoupon(ctx context.Context, tx Tx, sub *invoicing.Subscription, now time.Time) error {
	res := s.NewResolver(tx, now)
	if _, err := res.Coupon(ctx, "", *sub.Coupon, &invoicing.Invoice{Currency: sub.Plan.Currency}); err != nil {
		return err
	}
	sub.CouponStart, sub.CouponUses = ptr(sub.BillingStart), 0
	return tx.RedeemCoupon(ctx, *sub.Coupon, 1)
}

// couponFor returns the coupon discount a subscription's invoice for the
// period starting at ps gets, if any.
func (s *Service) couponFor(ctx context.Context, tx Tx, sub *invoicing.Subscription, ps time.Time) (*invoicing.Discount, error) {
	if sub.Coupon == nil {
		return nil, nil
	}
	c, err := tx.Coupon(ctx, *sub.Coupon, false)
	if err != nil {
		return nil, err
	}
	switch c.Duration {
	case invoicing.DurationOnce:
		if sub.CouponUses > 0 {
			return nil, nil
		}
	case invoicing.DurationRepeating:
		if sub.CouponStart == nil || c.DurationInMonths == nil || !ps.Before(invoicing.AddMonths(*sub.CouponStart, *c.DurationInMonths)) {
			return nil, nil
		}
	}
	d := c.Discount()
	return &d, nil
}

// checkPeriodFits refuses (amount_overflow) a subscription whose next
// period's invoice — a full period of its plan with its taxes, and the
// lines pending for it — does not fit in int64. Such a subscription was
// accepted (with a trial, or by a plan change whose proration waits) and
// then never billed: bill refused it at every tick, and a cancellation
// could not invoice its pending lines.
func (s *Service) checkPeriodFits(sub *invoicing.Subscription, snaps []invoicing.TaxRateSnap) error {
	inv := s.SubscriptionInvoice(sub, invoicing.ReasonSubscriptionCycle, sub.UpdatedAt)
	inv.Lines = append([]invoicing.Line{{Description: sub.Plan.Name, Quantity: invoicing.QuantityScale, UnitAmount: sub.Plan.Amount,
		Taxes: invoicing.TaxesOf(snaps), Metadata: map[string]string{}}}, sub.PendingLines...)
	if err := inv.Recompute(); apperr.HasCode(err, invoicing.CodeAmountOverflow) {
		return err
	}
	return nil
}

// SubscriptionInvoice is a new draft invoice of sub, for reason, without lines.
func (s *Service) SubscriptionInvoice(sub *invoicing.Subscription, reason string, now time.Time) *invoicing.Invoice {
	return &invoicing.Invoice{Object: "invoice", ID: ids.New(), AccountID: sub.AccountID, UserID: sub.UserID,
		SubscriptionID: ptr(sub.ID), BillingReason: reason, Status: invoicing.StatusDraft, Currency: sub.Plan.Currency,
		Customer: sub.Customer, Metadata: map[string]string{}, NumberPrefix: s.cfg.NumberPrefix,
		CollectionMethod: sub.CollectionMethod, NetTermsDays: ptr(sub.NetTermsDays), Discounts: []invoicing.Discount{},
		CreatedAt: now, UpdatedAt: now}
}

// bill generates, finalizes and announces the invoice of every period of
// sub that has started by now (catch-up included, at most MaxCatchUp
// periods per call), each exactly once (the unique (subscription_id,
// period_start) constraint backs the counter). It updates sub in memory;
// the caller writes it.
func (s *Service) bill(ctx context.Context, tx Tx, sub *invoicing.Subscription, now time.Time) ([]invoicing.Event, []string, error) {
	return s.billUntil(ctx, tx, sub, now, now)
}

// billUntil is bill of the periods that started by until (≤ now), issued
// at now.
func (s *Service) billUntil(ctx context.Context, tx Tx, sub *invoicing.Subscription, now, until time.Time) ([]invoicing.Event, []string, error) {
	if sub.Status == invoicing.SubCanceled || sub.NextBillingAt == nil || sub.NextBillingAt.After(until) {
		return nil, nil, nil
	}
	snaps, err := s.subRates(ctx, tx, sub.TaxRateIDs, "tax_rate_ids")
	if err != nil {
		return nil, nil, err
	}
	c := sub.Cycle()
	var invs []*invoicing.Invoice
	for n := 0; sub.NextBillingAt != nil && !sub.NextBillingAt.After(until) && n < s.cfg.MaxCatchUp; n++ {
		k := sub.PeriodsBilled
		ps, pe, full := c.Period(k)
		if sub.CancelAt != nil && !ps.Before(*sub.CancelAt) {
			sub.NextBillingAt = nil
			break
		}
		amount, desc := sub.Plan.Amount, sub.Plan.Name
		if pe.Sub(ps) != full {
			if amount, err = invoicing.Prorate(amount, pe.Sub(ps), full); err != nil {
				return nil, nil, invoicing.OverflowProblem()
			}
			desc += " (prorated)"
		}
		inv := s.SubscriptionInvoice(sub, invoicing.ReasonSubscriptionCycle, now)
		inv.PeriodStart, inv.PeriodEnd = ptr(ps), ptr(pe)
		inv.Lines = []invoicing.Line{{ID: ids.New(), Description: fmt.Sprintf("%s, %s to %s", desc, ps.Format(time.DateOnly), pe.Format(time.DateOnly)),
			Quantity: invoicing.QuantityScale, UnitAmount: amount, Taxes: invoicing.TaxesOf(snaps), PeriodStart: ptr(ps), PeriodEnd: ptr(pe),
			Metadata: map[string]string{}}}
		d, err := s.couponFor(ctx, tx, sub, ps)
		if err != nil {
			return nil, nil, err
		}
		if d != nil {
			inv.Discounts, inv.Coupon = []invoicing.Discount{*d}, ptr(d.Coupon)
		}
		base := len(inv.Lines)
		inv.Lines = append(inv.Lines, sub.PendingLines...)
		if err := inv.Recompute(); err != nil {
			var pe *apperr.Error
			if !errors.As(err, &pe) || pe.Code != invoicing.CodeTotalNegative || base == len(inv.Lines) {
				return nil, nil, err
			}
			// The pending credits exceed this period's charge: they wait
			// for a later invoice.
			inv.Lines = inv.Lines[:base]
			if err := inv.Recompute(); err != nil {
				return nil, nil, err
			}
		} else {
			sub.PendingLines = []invoicing.Line{}
		}
		if d != nil {
			sub.CouponUses++
		}
		invs = append(invs, inv)
		sub.PeriodsBilled++
		sub.CurrentPeriodStart, sub.CurrentPeriodEnd = ptr(ps), ptr(pe)
		sub.NextBillingAt = ptr(c.At(k + 1))
		sub.LatestInvoiceID = ptr(inv.ID)
		sub.Status = invoicing.SubActive // a trial ends when its first period is billed
	}
	if len(invs) == 0 {
		return nil, nil, nil
	}
	sub.UpdatedAt = now
	final := make([]bool, len(invs))
	ids := make([]string, len(invs))
	for i, inv := range invs {
		final[i], ids[i] = true, inv.ID
	}
	msgs, err := s.PersistNew(ctx, tx, invs, final, now)
	return msgs, ids, err
}

// billDue bills every period of sub that has started by until (≤ now), in
// as many bounded runs of bill as it takes: a request that changes or ends
// the subscription (PATCH, cancel) bills them all first at the plan they
// ran under, where one run stops at MaxCatchUp periods.
func (s *Service) billDue(ctx context.Context, tx Tx, sub *invoicing.Subscription, now, until time.Time) ([]invoicing.Event, []string, error) {
	var msgs []invoicing.Event
	var invIDs []string
	for {
		m, ids, err := s.billUntil(ctx, tx, sub, now, until)
		if err != nil || len(ids) == 0 {
			return msgs, invIDs, err
		}
		msgs, invIDs = append(msgs, m...), append(invIDs, ids...)
	}
}

// BillDueSubscriptions is the tick's recurring billing: every due
// subscription, 50 per transaction, each in a savepoint so one failing
// subscription does not hold the others back.
func (s *Service) BillDueSubscriptions(ctx context.Context, now time.Time) (int, error) {
	total := 0
	failed := []string{}
	for {
		var invIDs, subIDs []string
		picked := 0
		err := s.store.InTx(ctx, func(tx Tx) error {
			invIDs, subIDs = invIDs[:0], subIDs[:0]
			subs, err := tx.LockBillable(ctx, now, failed, 50)
			if err != nil {
				return err
			}
			picked = len(subs)
			for _, sub := range subs {
				// A frozen or closed account is not billed: its periods
				// wait (next_billing_at stays) and are caught up once the
				// account is active again. An account nobody knows any
				// more, or a read-through that is down, waits the same way.
				if f, err := s.facts(ctx, tx, sub.AccountID); err != nil || f.Active() != nil {
					var pe *apperr.Error
					if err != nil && !errors.As(err, &pe) {
						return err
					}
					if err != nil {
						slog.WarnContext(ctx, "subscription's account cannot be looked up: not billed", "subscription", sub.ID, "err", err.Error())
					} else {
						s.skipInactive(ctx, "recurring billing", "subscription", sub.ID, f)
					}
					failed = append(failed, sub.ID)
					continue
				}
				var ids []string
				err := tx.Savepoint(ctx, func(sp Tx) error {
					var msgs []invoicing.Event
					var err error
					msgs, ids, err = s.bill(ctx, sp, sub, now)
					if err == nil {
						err = sp.SaveSub(ctx, sub)
					}
					if err == nil && len(ids) > 0 {
						msgs = append(msgs, invoicing.SubscriptionEvent(events.TypeSubscriptionUpdated, sub))
						err = sp.Emit(ctx, msgs)
					}
					return err
				})
				if err != nil {
					if !s.refused(err) {
						return err
					}
					slog.ErrorContext(ctx, "subscription cannot be billed", "subscription", sub.ID, "err", err.Error())
					failed = append(failed, sub.ID)
					continue
				}
				invIDs = append(invIDs, ids...)
				subIDs = append(subIDs, sub.ID)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(invIDs)
		s.changed(nil, subIDs)
		if picked == 0 {
			return total, nil
		}
	}
}

// CancelDueSubscriptions ends subscriptions whose cancel_at has come.
func (s *Service) CancelDueSubscriptions(ctx context.Context, now time.Time) (int, error) {
	var ids, invIDs []string
	err := s.store.InTx(ctx, func(tx Tx) error {
		ids, invIDs = ids[:0], invIDs[:0]
		subs, err := tx.LockCancelDue(ctx, now, 500)
		if err != nil {
			return err
		}
		var msgs []invoicing.Event
		for _, sub := range subs {
			m, inv, err := s.endSubscription(ctx, tx, sub, *sub.CancelAt, now)
			if err != nil {
				return err
			}
			if err := tx.SaveSub(ctx, sub); err != nil {
				return err
			}
			msgs = append(append(msgs, m...), invoicing.SubscriptionEvent(events.TypeSubscriptionCanceled, sub), invoicing.CanceledNotice(sub))
			ids, invIDs = append(ids, sub.ID), append(invIDs, inv...)
		}
		return tx.Emit(ctx, msgs)
	})
	s.changed(invIDs, ids)
	return len(ids), err
}

// endSubscription ends sub at at. What a plan change left pending for the
// next period's invoice (a proration's charge and credit) is invoiced
// now, since no next period will carry it; a net credit cannot be an
// invoice of its own and stays in the ended subscription's pending_lines,
// where an operator sees it (and a warning says so). So do lines whose
// invoice would not fit in int64 (a plan change computes no invoice, so
// its pending proration may be beyond one): the subscription still ends,
// and neither the customer's cancellation nor the tick's other
// cancellations are held back by it (invoiceNow writes nothing before
// its totals are computed).
func (s *Service) endSubscription(ctx context.Context, tx Tx, sub *invoicing.Subscription, at, now time.Time) ([]invoicing.Event, []string, error) {
	var msgs []invoicing.Event
	var ids []string
	if len(sub.PendingLines) > 0 {
		var credit bool
		var err error
		msgs, ids, credit, err = s.invoiceNow(ctx, tx, sub, sub.PendingLines, nil, now)
		switch {
		case apperr.HasCode(err, invoicing.CodeAmountOverflow):
			slog.ErrorContext(ctx, "subscription ended with pending lines whose invoice overflows int64: kept in its pending_lines",
				"subscription", sub.ID)
		case err != nil:
			return nil, nil, err
		case credit:
			slog.WarnContext(ctx, "subscription ended with a net credit pending: kept in its pending_lines", "subscription", sub.ID)
		default:
			sub.PendingLines = []invoicing.Line{}
		}
	}
	invoicing.EndSubscription(sub, at, now)
	return msgs, ids, nil
}

// changePlan applies a plan change at now with proration of the current
// period. It returns the events of an immediate proration invoice, if any.
func (s *Service) changePlan(ctx context.Context, tx Tx, sub *invoicing.Subscription, plan invoicing.Plan, behavior string, now time.Time) ([]invoicing.Event, []string, error) {
	old := sub.Plan
	intervalChanged := plan.Interval != old.Interval || plan.IntervalCount != old.IntervalCount
	sub.Plan = plan
	if sub.Status == invoicing.SubTrialing || sub.PeriodsBilled == 0 {
		// Nothing billed yet: the new plan simply applies from the first period.
		if intervalChanged {
			anchor := 0
			if plan.Interval == invoicing.IntervalMonth || plan.Interval == invoicing.IntervalYear {
				anchor = sub.AnchorDay
			}
			c := invoicing.NewCycle(plan.Interval, plan.IntervalCount, anchor, sub.BillingStart)
			sub.CycleAnchor, sub.AnchorDay = c.Anchor, c.AnchorDay
			if sub.Status != invoicing.SubTrialing {
				ps, pe, _ := c.Period(0)
				sub.CurrentPeriodStart, sub.CurrentPeriodEnd = &ps, &pe
			}
		}
		return nil, nil, nil
	}
	var lines []invoicing.Line
	if behavior != ProrateNone && sub.CurrentPeriodEnd != nil && now.Before(*sub.CurrentPeriodEnd) {
		_, _, full := sub.CycleWith(old).Period(sub.PeriodsBilled - 1)
		rem := sub.CurrentPeriodEnd.Sub(now)
		snaps, err := s.subRates(ctx, tx, sub.TaxRateIDs, "tax_rate_ids")
		if err != nil {
			return nil, nil, err
		}
		debit, err := invoicing.Prorate(plan.Amount, rem, full)
		if err != nil {
			return nil, nil, invoicing.OverflowProblem()
		}
		from, to := now.Format(time.DateOnly), sub.CurrentPeriodEnd.Format(time.DateOnly)
		mk := func(desc string, amount int64, taxes []invoicing.LineTax) invoicing.Line {
			return invoicing.Line{ID: ids.New(), Description: desc, Quantity: invoicing.QuantityScale, UnitAmount: amount, Taxes: taxes,
				Proration: true, PeriodStart: ptr(now), PeriodEnd: ptr(*sub.CurrentPeriodEnd), Metadata: map[string]string{}}
		}
		credit, creditTaxes, err := s.unusedCredit(ctx, tx, sub, old, rem, full, now, snaps)
		if err != nil {
			return nil, nil, err
		}
		if credit > 0 {
			lines = append(lines, mk(fmt.Sprintf("Unused time on %s, %s to %s", old.Name, from, to), -credit, creditTaxes))
		}
		if debit > 0 && !intervalChanged {
			lines = append(lines, mk(fmt.Sprintf("Remaining time on %s, %s to %s", plan.Name, from, to), debit, invoicing.TaxesOf(snaps)))
		}
	}
	if intervalChanged {
		// A new interval restarts the cycle now; the new period is billed
		// at once (bill), with the credit for the unused old period.
		c := invoicing.NewCycle(plan.Interval, plan.IntervalCount, 0, now)
		endsAtPeriodEnd := sub.CancelAt != nil && sub.CancelAt.After(now)
		sub.BillingStart, sub.CycleAnchor, sub.AnchorDay, sub.PeriodsBilled = now, c.Anchor, c.AnchorDay, 0
		sub.NextBillingAt = ptr(now)
		if endsAtPeriodEnd {
			// cancel_at_period_end stays set (as in Stripe) until someone
			// sets it false: the end moves to that of the new cycle's
			// first period, which is billed now.
			_, pe, _ := sub.Cycle().Period(0)
			sub.CancelAt = ptr(pe)
		}
		sub.PendingLines = append(sub.PendingLines, lines...)
		return nil, nil, nil
	}
	if behavior == ProrateInvoice && len(lines) > 0 {
		d, err := s.periodPercentCoupon(ctx, tx, sub)
		if err != nil {
			return nil, nil, err
		}
		msgs, ids, credit, err := s.invoiceNow(ctx, tx, sub, lines, d, now)
		if err != nil || !credit {
			return msgs, ids, err
		}
		// A net credit cannot be an invoice of its own: it waits for the next one.
	}
	sub.PendingLines = append(sub.PendingLines, lines...)
	return nil, nil, nil
}

// unusedCredit is the credit for the unused rest (rem) of the current
// period of the plan old, which a plan change at now replaces: what the
// last debit for that time charged for it (Stripe's credit prorations in
// its flexible billing mode), so a credit never exceeds what was charged.
//
//   - A proration debit of an earlier change in this period still
//     pending (not invoiced yet) is shortened to end now instead, and no
//     credit is made: the next invoice discounts and taxes what is left
//     of it like any line.
//   - Otherwise the debit is the latest invoice's line for this period
//     (the period's own plan line, or the debit an always_invoice change
//     invoiced): the credit is rem of its period's share of what the line
//     charged after its discounts, taxed at the rates it was taxed at;
//     nothing when that invoice was voided.
//   - A subscription without such an invoice (none is expected) is
//     credited the plan's price for rem of full, at its rates now.
func (s *Service) unusedCredit(ctx context.Context, tx Tx, sub *invoicing.Subscription, old invoicing.Plan, rem, full time.Duration, now time.Time,
	snaps []invoicing.TaxRateSnap) (int64, []invoicing.LineTax, error) {
	end := *sub.CurrentPeriodEnd
	for i := len(sub.PendingLines) - 1; i >= 0; i-- {
		l := &sub.PendingLines[i]
		if !l.Proration || l.UnitAmount <= 0 || l.PeriodStart == nil || l.PeriodEnd == nil || !sameInstant(*l.PeriodEnd, end) || l.PeriodStart.After(now) {
			continue
		}
		used, err := invoicing.Prorate(l.UnitAmount, now.Sub(*l.PeriodStart), l.PeriodEnd.Sub(*l.PeriodStart))
		if err != nil {
			return 0, nil, invoicing.OverflowProblem()
		}
		l.UnitAmount, l.PeriodEnd = used, ptr(now)
		l.Description = fmt.Sprintf("Time on %s, %s to %s", old.Name, l.PeriodStart.Format(time.DateOnly), now.Format(time.DateOnly))
		if used == 0 {
			sub.PendingLines = slices.Delete(sub.PendingLines, i, i+1)
		}
		return 0, nil, nil
	}
	if sub.LatestInvoiceID != nil {
		inv, err := tx.Invoice(ctx, *sub.LatestInvoiceID, false)
		if err != nil {
			return 0, nil, err
		}
		for i := len(inv.Lines) - 1; i >= 0; i-- {
			l := inv.Lines[i]
			if l.Proration != (inv.BillingReason == invoicing.ReasonSubscriptionUpdate) || l.Amount <= 0 ||
				l.PeriodStart == nil || l.PeriodEnd == nil || !sameInstant(*l.PeriodEnd, end) || l.PeriodStart.After(now) {
				continue
			}
			if inv.Status == invoicing.StatusVoid {
				// Voided (never with money kept: invoicing.Void), the
				// debit charged nothing for the time.
				return 0, nil, nil
			}
			credit, err := invoicing.Prorate(l.TaxableAmount, rem, l.PeriodEnd.Sub(*l.PeriodStart))
			if err != nil {
				return 0, nil, invoicing.OverflowProblem()
			}
			taxes := make([]invoicing.LineTax, len(l.Taxes))
			for j, t := range l.Taxes {
				taxes[j] = invoicing.LineTax{TaxRateSnap: t.TaxRateSnap}
			}
			return credit, taxes, nil
		}
	}
	credit, err := invoicing.Prorate(old.Amount, rem, full)
	if err != nil {
		return 0, nil, invoicing.OverflowProblem()
	}
	return credit, invoicing.TaxesOf(snaps), nil
}

// sameInstant compares instants as Postgres keeps them (microseconds).
func sameInstant(a, b time.Time) bool {
	return a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond))
}

// periodPercentCoupon is the subscription's coupon as it discounts the
// current period, when it takes a percentage: a plan change invoiced at
// once charges the rest of the period at the price the period is billed
// at (a fixed amount off is taken once per period's invoice, not again).
// A once coupon already spent on the period's invoice gives none.
func (s *Service) periodPercentCoupon(ctx context.Context, tx Tx, sub *invoicing.Subscription) (*invoicing.Discount, error) {
	if sub.CurrentPeriodStart == nil {
		return nil, nil
	}
	d, err := s.couponFor(ctx, tx, sub, *sub.CurrentPeriodStart)
	if err != nil || d == nil || d.PercentOff <= 0 {
		return nil, err
	}
	return d, nil
}

// invoiceNow invoices lines of sub at once, finalized (billing_reason
// subscription_update), with the invoice discount d if any, or reports
// credit, having written nothing, when their net is a credit, which
// cannot be an invoice of its own.
func (s *Service) invoiceNow(ctx context.Context, tx Tx, sub *invoicing.Subscription, lines []invoicing.Line, d *invoicing.Discount, now time.Time) (msgs []invoicing.Event, ids []string, credit bool, err error) {
	inv := s.SubscriptionInvoice(sub, invoicing.ReasonSubscriptionUpdate, now)
	inv.Lines = slices.Clone(lines)
	if d != nil {
		inv.Discounts, inv.Coupon = []invoicing.Discount{*d}, ptr(d.Coupon)
	}
	var pe *apperr.Error
	switch err := inv.Recompute(); {
	case errors.As(err, &pe) && pe.Code == invoicing.CodeTotalNegative:
		return nil, nil, true, nil
	case err != nil:
		return nil, nil, false, err
	}
	if msgs, err = s.PersistNew(ctx, tx, []*invoicing.Invoice{inv}, []bool{true}, now); err != nil {
		return nil, nil, false, err
	}
	sub.LatestInvoiceID = ptr(inv.ID)
	return msgs, []string{inv.ID}, false, nil
}
