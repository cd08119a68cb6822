package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
)

// createSubscription starts a subscription; when its first period has
// begun (no trial, start not in the future) the first invoice is generated,
// finalized and announced in the same transaction.
func (s *Service) createSubscription(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	var in createSubIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	now := s.clock()
	sub, err := s.newSubscription(r.Context(), p, &in, now)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	ctx = eventsCtx(ctx, r)
	err = s.st.InTx(ctx, func(tx *store.Tx) error {
		if _, err := s.subRates(ctx, tx, sub.TaxRateIDs, "tax_rate_ids"); err != nil {
			return err
		}
		if sub.Coupon != nil {
			if err := s.redeemSubCoupon(ctx, tx, sub, now); err != nil {
				return err
			}
		}
		if err := store.InsertSub(ctx, tx, sub); err != nil {
			return err
		}
		invMsgs, _, err := s.bill(ctx, tx, sub, now)
		if err != nil {
			return err
		}
		if err := store.SaveSub(ctx, tx, sub); err != nil {
			return err
		}
		msgs := append([]invoicing.Event{invoicing.SubscriptionEvent(events.TypeSubscriptionCreated, sub)}, invMsgs...)
		if err := tx.Emit(ctx, msgs); err != nil {
			return err
		}
		return tx.Complete(ctx, idempotency.Response{Status: http.StatusCreated, Body: sub, Location: "/subscriptions/" + sub.ID})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	w.Header().Set("Location", "/subscriptions/"+sub.ID)
	httpx.WriteJSON(w, http.StatusCreated, sub)
}

type cachedSub struct {
	Owner string          `json:"o"`
	Body  json.RawMessage `json:"b"`
}

func (s *Service) getSubscription(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	id := r.PathValue("id")
	var doc cachedSub
	var err error = invoicing.NotFound("subscription", id)
	if ids.Valid(id) {
		doc, err = redis.GetOrLoad(r.Context(), s.subCache, id, s.cfg.CacheTTL.D(), func(ctx context.Context) (cachedSub, error) {
			sub, err := store.GetSub(ctx, s.d.Pool, id, false)
			if err != nil {
				return cachedSub{}, err
			}
			b, err := json.Marshal(sub)
			return cachedSub{Owner: sub.UserID, Body: b}, err
		})
	}
	if err == nil && !p.CanAccess(doc.Owner) {
		err = invoicing.NotFound("subscription", id)
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteRaw(w, http.StatusOK, doc.Body)
}

func (s *Service) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	q := r.URL.Query()
	var v problem.Validator
	f := store.SubFilter{AccountID: strings.ToLower(q.Get("account_id")), Status: q.Get("status"), Owner: strings.ToLower(q.Get("user_id"))}
	if f.AccountID != "" && !ids.Valid(f.AccountID) {
		v.Add(problem.Param("account_id", "must be a UUID"))
	}
	if f.Status != "" && f.Status != invoicing.SubActive && f.Status != invoicing.SubTrialing && f.Status != invoicing.SubCanceled {
		v.Add(problem.Param("status", "must be trialing, active or canceled"))
	}
	if f.Owner != "" && !ids.Valid(f.Owner) {
		v.Add(problem.Param("user_id", "must be a UUID"))
	}
	if !p.Privileged() {
		if f.Owner != "" && f.Owner != p.Subject {
			v.Add(problem.Param("user_id", "a customer lists only its own subscriptions"))
		}
		f.Owner = p.Subject
	}
	limit, after, err := httpx.PagingByID(r, 20, 100)
	if err == nil {
		err = v.Err()
	}
	if err == nil && f.AccountID != "" {
		err = s.b.OwnedAccount(r.Context(), p, f.AccountID)
	}
	f.After = after
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	f.Limit = limit + 1
	subs, err := store.ListSubs(r.Context(), s.d.Pool, f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(subs, limit, func(s *invoicing.Subscription) any { return httpx.IDCursor{ID: s.ID} }))
}

// mutateSub runs fn on the locked subscription of the path and answers 200.
func (s *Service) mutateSub(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, tx *store.Tx, p auth.Principal, sub *invoicing.Subscription, now time.Time) ([]invoicing.Event, []string, error)) {
	p := platform.Principal(r)
	id := r.PathValue("id")
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	ctx = eventsCtx(ctx, r)
	now := s.clock()
	var invIDs []string
	sub, err := s.st.UpdateSubscription(ctx, id, func(tx *store.Tx, sub *invoicing.Subscription) ([]invoicing.Event, error) {
		if err := billing.AuthorizeOwner(p.CanAccess(sub.UserID), "subscription", id); err != nil {
			return nil, err
		}
		msgs, ids, err := fn(ctx, tx, p, sub, now)
		if err != nil {
			return nil, err
		}
		invIDs = ids
		sub.UpdatedAt = now
		sub.Derive()
		return msgs, tx.Complete(ctx, idempotency.Response{Status: http.StatusOK, Body: sub})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.invalidate(invIDs, []string{sub.ID})
	httpx.WriteJSON(w, http.StatusOK, sub)
}

func (s *Service) patchSubscription(w http.ResponseWriter, r *http.Request) {
	var in patchSubIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	var v problem.Validator
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
		problem.Write(w, r, err)
		return
	}
	s.mutateSub(w, r, func(ctx context.Context, tx *store.Tx, p auth.Principal, sub *invoicing.Subscription, now time.Time) ([]invoicing.Event, []string, error) {
		if sub.Status == invoicing.SubCanceled {
			return nil, nil, problem.New(invoicing.CodeSubscriptionEnded, "subscription %s is canceled", sub.ID)
		}
		// A change bills due periods and may invoice a proration at once.
		if err := s.b.Chargeable(ctx, tx, sub.AccountID); err != nil {
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
			sub.CancelAt = nil
			if *in.CancelAtPeriodEnd {
				invoicing.ScheduleCancel(sub)
			}
		}
		// Periods already due are billed at the plan they ran under.
		msgs, invIDs, err := s.bill(ctx, tx, sub, now)
		if err != nil {
			return nil, nil, err
		}
		if in.Plan != nil {
			if plan.Currency != sub.Plan.Currency {
				return nil, nil, invoicing.CurrencyMismatch("plan/currency", plan.Currency, sub.Plan.Currency)
			}
			m, ids, err := s.changePlan(ctx, tx, sub, plan, behavior, now)
			if err != nil {
				return nil, nil, err
			}
			msgs, invIDs = append(msgs, m...), append(invIDs, ids...)
		}
		// A plan change that restarted the cycle bills its first period now.
		m, ids, err := s.bill(ctx, tx, sub, now)
		if err != nil {
			return nil, nil, err
		}
		msgs, invIDs = append(msgs, m...), append(invIDs, ids...)
		return append(msgs, invoicing.SubscriptionEvent(events.TypeSubscriptionUpdated, sub)), invIDs, nil
	})
}

// cancelSubscription ends a subscription at the end of the current period
// (default) or now. Canceling now ends billing; it does not refund the
// current period (refunds belong to capture-payment).
func (s *Service) cancelSubscription(w http.ResponseWriter, r *http.Request) {
	var in cancelSubIn
	if err := decodeOptional(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	atEnd := in.AtPeriodEnd == nil || *in.AtPeriodEnd
	s.mutateSub(w, r, func(ctx context.Context, tx *store.Tx, p auth.Principal, sub *invoicing.Subscription, now time.Time) ([]invoicing.Event, []string, error) {
		if sub.Status == invoicing.SubCanceled {
			return nil, nil, problem.New(invoicing.CodeSubscriptionEnded, "subscription %s is already canceled", sub.ID)
		}
		if atEnd {
			invoicing.ScheduleCancel(sub)
			if sub.CancelAt.After(now) {
				return []invoicing.Event{invoicing.SubscriptionEvent(events.TypeSubscriptionUpdated, sub)}, nil, nil
			}
		}
		invoicing.EndSubscription(sub, now, now)
		return []invoicing.Event{invoicing.SubscriptionEvent(events.TypeSubscriptionCanceled, sub)}, nil, nil
	})
}
