package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
)

// createSubscription starts a subscription (billing.CreateSubscription).
func (s *Service) createSubscription(w http.ResponseWriter, r *http.Request) {
	var in billing.CreateSubscriptionIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	ctx = eventsCtx(ctx, r)
	sub, err := s.b.CreateSubscription(ctx, platform.Principal(r), &in, func(body any) any {
		sub := body.(*invoicing.Subscription)
		return idempotency.Response{Status: http.StatusCreated, Body: sub, Location: "/subscriptions/" + sub.ID}
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
	if canon, ok := ids.Canonical(id); ok { // the key changes invalidate
		id = canon
		doc, err = redis.GetOrLoad(r.Context(), s.subCache, id, s.cfg.CacheTTL.D(), func(ctx context.Context) (cachedSub, error) {
			sub, err := s.b.Subscription(ctx, id)
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
	f := billing.SubFilter{AccountID: strings.ToLower(q.Get("account_id")), Status: q.Get("status"), Owner: strings.ToLower(q.Get("user_id"))}
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
	f.After = after
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	f.Limit = limit + 1
	subs, err := s.b.Subscriptions(r.Context(), p, f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(subs, limit, func(s *invoicing.Subscription) any { return httpx.IDCursor{ID: s.ID} }))
}

// changeSub runs a change of the subscription of the path and answers
// 200 with the subscription (recorded as the request's answer in the
// change's transaction).
func (s *Service) changeSub(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, p auth.Principal, id string, done billing.Answer) (*invoicing.Subscription, []string, error)) {
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	ctx = eventsCtx(ctx, r)
	sub, invIDs, err := fn(ctx, platform.Principal(r), r.PathValue("id"), answer(http.StatusOK, ""))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.invalidate(invIDs, []string{sub.ID})
	httpx.WriteJSON(w, http.StatusOK, sub)
}

func (s *Service) patchSubscription(w http.ResponseWriter, r *http.Request) {
	var in billing.PatchSubscriptionIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.changeSub(w, r, func(ctx context.Context, p auth.Principal, id string, done billing.Answer) (*invoicing.Subscription, []string, error) {
		return s.b.PatchSubscription(ctx, p, id, &in, done)
	})
}

// cancelSubscription ends a subscription at the end of the current period
// (default) or now (billing.CancelSubscription).
func (s *Service) cancelSubscription(w http.ResponseWriter, r *http.Request) {
	var in billing.CancelSubscriptionIn
	if err := decodeOptional(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.changeSub(w, r, func(ctx context.Context, p auth.Principal, id string, done billing.Answer) (*invoicing.Subscription, []string, error) {
		return s.b.CancelSubscription(ctx, p, id, &in, done)
	})
}
