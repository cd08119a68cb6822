package billing

import (
	"context"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
)

// CreateSubscription starts a subscription for p; when its first period
// has begun (no trial, start not in the future) the first invoice is
// generated, finalized and announced in the same transaction.
func (s *Service) CreateSubscription(ctx context.Context, p auth.Principal, in *CreateSubscriptionIn, done Answer) (*invoicing.Subscription, error) {
	now := s.Clock()
	sub, err := s.newSubscription(ctx, p, in, now)
	if err != nil {
		return nil, err
	}
	return sub, s.store.InTx(ctx, func(tx Tx) error {
		snaps, err := s.subRates(ctx, tx, sub.TaxRateIDs, "tax_rate_ids")
		if err != nil {
			return err
		}
		if err := s.checkPeriodFits(sub, snaps); err != nil {
			return err
		}
		if sub.Coupon != nil {
			if err := s.redeemSubCoupon(ctx, tx, sub, now); err != nil {
				return err
			}
		}
		if err := tx.InsertSub(ctx, sub); err != nil {
			return err
		}
		invMsgs, _, err := s.bill(ctx, tx, sub, now)
		if err != nil {
			return err
		}
		if err := tx.SaveSub(ctx, sub); err != nil {
			return err
		}
		msgs := append([]invoicing.Event{invoicing.SubscriptionEvent(events.TypeSubscriptionCreated, sub)}, invMsgs...)
		if err := tx.Emit(ctx, msgs); err != nil {
			return err
		}
		return complete(ctx, tx, done, sub)
	})
}

// changeSub runs fn on locked subscription id, after checking that p may
// see it, and writes it with its events and the answer done makes of
// it. It returns the subscription and the invoices fn generated.
func (s *Service) changeSub(ctx context.Context, p auth.Principal, id string, done Answer, fn func(ctx context.Context, tx Tx, sub *invoicing.Subscription, now time.Time) ([]invoicing.Event, []string, error)) (*invoicing.Subscription, []string, error) {
	now := s.Clock()
	var invIDs []string
	sub, err := s.store.UpdateSubscription(ctx, id, func(tx Tx, sub *invoicing.Subscription) ([]invoicing.Event, error) {
		if err := authorizeOwner(p.CanAccess(sub.UserID), "subscription", id); err != nil {
			return nil, err
		}
		msgs, ids, err := fn(ctx, tx, sub, now)
		if err != nil {
			return nil, err
		}
		invIDs = ids
		sub.UpdatedAt = now
		sub.Derive()
		return msgs, complete(ctx, tx, done, sub)
	})
	return sub, invIDs, err
}

// PatchSubscription changes a subscription: its plan (with proration),
// tax rates, terms, customer, metadata or scheduled end. Periods already
// due are billed first, at the plan they ran under. It returns the
// subscription and the invoices the change generated.
func (s *Service) PatchSubscription(ctx context.Context, p auth.Principal, id string, in *PatchSubscriptionIn, done Answer) (*invoicing.Subscription, []string, error) {
	var v apperr.Validator
	var plan invoicing.Plan
	if in.Plan != nil {
		plan = parsePlan(&v, in.Plan)
	}
	behavior := in.ProrationBehavior
	if behavior == "" {
		behavior = ProrateCreate
	}
	v.Check(behavior == ProrateCreate || behavior == ProrateInvoice || behavior == ProrateNone, "proration_behavior",
		"must be create_prorations, always_invoice or none")
	var rateIDs []string
	if in.TaxRateIDs != nil {
		rateIDs = parseRateIDs(&v, "tax_rate_ids", *in.TaxRateIDs)
	}
	if in.CollectionMethod != nil {
		v.Check(*in.CollectionMethod == invoicing.ChargeAutomatically || *in.CollectionMethod == invoicing.SendInvoice, "collection_method",
			"must be charge_automatically or send_invoice")
	}
	if in.NetTermsDays != nil {
		v.Check(*in.NetTermsDays >= 0 && *in.NetTermsDays <= 365, "net_terms_days", "must be from 0 to 365 days")
	}
	var cust invoicing.Customer
	if in.Customer != nil {
		cust = invoicing.ParseCustomer(&v, "customer", in.Customer)
	}
	if in.Metadata != nil {
		invoicing.CheckMetadata(&v, "metadata", *in.Metadata)
	}
	if err := v.Err(); err != nil {
		return nil, nil, err
	}
	return s.changeSub(ctx, p, id, done, func(ctx context.Context, tx Tx, sub *invoicing.Subscription, now time.Time) ([]invoicing.Event, []string, error) {
		if sub.Status == invoicing.SubCanceled {
			return nil, nil, apperr.New(invoicing.CodeSubscriptionEnded, "subscription %s is canceled", sub.ID)
		}
		// A change bills due periods and may invoice a proration at once.
		if err := s.chargeable(ctx, tx, sub.AccountID); err != nil {
			return nil, nil, err
		}
		if in.TaxRateIDs != nil {
			if _, err := s.subRates(ctx, tx, rateIDs, "tax_rate_ids"); err != nil {
				return nil, nil, err
			}
			sub.TaxRateIDs = rateIDs
		}
		if in.CollectionMethod != nil {
			sub.CollectionMethod = *in.CollectionMethod
		}
		if in.NetTermsDays != nil {
			sub.NetTermsDays = *in.NetTermsDays
		}
		if in.Customer != nil {
			sub.Customer = cust
		}
		if in.Metadata != nil {
			sub.Metadata = *in.Metadata
		}
		if in.CancelAtPeriodEnd != nil {
			// A scheduled end is taken back now; a new one is set once
			// the due periods are billed (below), at the end of the
			// period running now, as POST …/cancel sets it.
			sub.CancelAt = nil
			if sub.NextBillingAt == nil {
				// A billing that found the scheduled end reached (the
				// tick's, or a request's, before the tick ended it) left
				// no next billing date: the periods from the end are
				// billed again.
				sub.NextBillingAt = ptr(sub.Cycle().At(sub.PeriodsBilled))
			}
		}
		// Periods already due are billed at the plan they ran under, all
		// of them (billDue), before the change.
		var notice []invoicing.Event
		// A period that starts at this very instant has run under no
		// plan yet: a change of interval, which restarts the cycle now,
		// bills it at the new plan (below). Billed at the old one, it was
		// credited in full, and the restarted cycle's first period,
		// starting at the same instant, collided with it: a 500 (one
		// invoice per period start).
		until := now
		if in.Plan != nil && (plan.Interval != sub.Plan.Interval || plan.IntervalCount != sub.Plan.IntervalCount) {
			until = now.Add(-time.Nanosecond)
		}
		msgs, invIDs, err := s.billDue(ctx, tx, sub, now, until)
		if err != nil {
			return nil, nil, err
		}
		if in.Plan != nil {
			if plan.Currency != sub.Plan.Currency {
				return nil, nil, invoicing.CurrencyMismatch("plan/currency", plan.Currency, sub.Plan.Currency)
			}
			previous := sub.Plan
			if plan != previous {
				// The plan it already has changes nothing: no proration
				// (its credit is what was charged, its debit the price).
				m, ids, err := s.changePlan(ctx, tx, sub, plan, behavior, now)
				if err != nil {
					return nil, nil, err
				}
				msgs, invIDs = append(msgs, m...), append(invIDs, ids...)
				// The customer hears of a new plan (not of a PATCH that
				// names the plan it already has).
				notice = append(notice, invoicing.PlanChangedNotice(sub, previous))
			}
		}
		// A plan change that restarted the cycle bills its first period now.
		m, ids, err := s.bill(ctx, tx, sub, now)
		if err != nil {
			return nil, nil, err
		}
		if sub.Status != invoicing.SubCanceled && (in.Plan != nil || in.TaxRateIDs != nil) {
			// Only a change of what the next invoice holds is refused: a
			// subscription stored before this check can still be changed
			// otherwise (scheduled to end, say).
			snaps, err := s.subRates(ctx, tx, sub.TaxRateIDs, "tax_rate_ids")
			if err != nil {
				return nil, nil, err
			}
			if err := s.checkPeriodFits(sub, snaps); err != nil {
				return nil, nil, err
			}
		}
		msgs, invIDs = append(msgs, m...), append(invIDs, ids...)
		if in.CancelAtPeriodEnd != nil && *in.CancelAtPeriodEnd {
			invoicing.ScheduleCancel(sub)
		}
		return append(append(msgs, invoicing.SubscriptionEvent(events.TypeSubscriptionUpdated, sub)), notice...), invIDs, nil
	})
}

// CancelSubscription ends a subscription at the end of the current period
// (default) or now. The periods that started before it are billed first,
// as a PATCH bills them, even those the tick has not reached: they were
// used. Canceling now ends billing; it does not refund the current period
// (refunds belong to capture-payment), and what a plan change left pending
// is invoiced as the subscription ends (endSubscription).
func (s *Service) CancelSubscription(ctx context.Context, p auth.Principal, id string, in *CancelSubscriptionIn, done Answer) (*invoicing.Subscription, []string, error) {
	atEnd := in.AtPeriodEnd == nil || *in.AtPeriodEnd
	return s.changeSub(ctx, p, id, done, func(ctx context.Context, tx Tx, sub *invoicing.Subscription, now time.Time) ([]invoicing.Event, []string, error) {
		if sub.Status == invoicing.SubCanceled {
			return nil, nil, apperr.New(invoicing.CodeSubscriptionEnded, "subscription %s is already canceled", sub.ID)
		}
		msgs, invIDs, err := s.billDue(ctx, tx, sub, now, now)
		if err != nil {
			return nil, nil, err
		}
		if atEnd {
			invoicing.ScheduleCancel(sub)
			if sub.CancelAt.After(now) {
				return append(msgs, invoicing.SubscriptionEvent(events.TypeSubscriptionUpdated, sub)), invIDs, nil
			}
		}
		m, ids, err := s.endSubscription(ctx, tx, sub, now, now)
		if err != nil {
			return nil, nil, err
		}
		return append(append(msgs, m...), invoicing.SubscriptionEvent(events.TypeSubscriptionCanceled, sub), invoicing.CanceledNotice(sub)),
			append(invIDs, ids...), nil
	})
}
