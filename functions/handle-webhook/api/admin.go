package api

import (
	"net/http"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

var listable = map[string]bool{webhooks.Processed: true, webhooks.Parked: true, webhooks.Ignored: true}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := webhooks.Filter{Gateway: q.Get("gateway"), Type: q.Get("type"), Status: q.Get("status")}
	var bad []problem.FieldError
	if f.Gateway != "" && f.Gateway != webhooks.Stripe && f.Gateway != webhooks.Sandbox {
		bad = append(bad, problem.Param("gateway", "must be stripe or sandbox"))
	}
	if f.Status != "" && !listable[f.Status] {
		bad = append(bad, problem.Param("status", "must be processed, parked or ignored"))
	}
	if len(f.Type) > 100 {
		bad = append(bad, problem.Param("type", "must be at most 100 characters"))
	}
	limit, after, err := httpx.PagingByID(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if len(bad) > 0 {
		problem.Write(w, r, problem.Invalid(bad...))
		return
	}
	f.Limit, f.After = limit, after
	ds, err := a.store.List(r.Context(), f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(ds, limit, func(d *webhooks.Delivery) any { return httpx.IDCursor{ID: d.ID} }))
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request) {
	id, ok := ids.Canonical(r.PathValue("id"))
	if !ok {
		problem.Write(w, r, webhooks.ErrNoDelivery)
		return
	}
	d, err := a.store.Get(r.Context(), id)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, d)
}

// replay runs the normalization of a stored delivery again and, when its
// payment is known, emits the result as a new event (store.Replay).
func (a *API) replay(w http.ResponseWriter, r *http.Request) {
	id, ok := ids.Canonical(r.PathValue("id"))
	if !ok {
		problem.Write(w, r, webhooks.ErrNoDelivery)
		return
	}
	// The replay commits once started, whoever goes away: the same
	// Idempotency-Key then finds its result.
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	d, emitted, err := a.store.Replay(ctx, id, func(d *webhooks.Delivery) idempotency.Response {
		return idempotency.Response{Status: http.StatusOK, Body: d}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if emitted {
		a.d.Publisher.Kick()
	}
	httpx.WriteJSON(w, http.StatusOK, d)
}

// noMembers serves an action that takes no member (replay, rotate-secret,
// test, retry): a body, when there is one, must be empty JSON ({}), so a
// member sent ({"expires_in":3600} to rotate-secret) is a 400 naming it
// rather than ignored while the action runs.
func noMembers(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 {
			var none struct{}
			if err := httpx.DecodeJSON(r, &none); err != nil {
				problem.Write(w, r, err)
				return
			}
		}
		h(w, r)
	})
}
