package api

import (
	"net/http"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/problem"
)

var listable = map[string]bool{webhooks.Processed: true, webhooks.Parked: true, webhooks.Ignored: true}

// pageCursor is the keyset position of the deliveries list.
type pageCursor struct {
	ID string `json:"id"`
}

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
	limit, err := httpx.Limit(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if len(bad) > 0 {
		problem.Write(w, r, problem.Invalid(bad...))
		return
	}
	var cur pageCursor
	ok, err := httpx.DecodeCursor(r, &cur)
	if err == nil && ok {
		if _, perr := uuid.Parse(cur.ID); perr != nil {
			err = problem.Invalid(problem.Param("cursor", "is not a cursor this endpoint returned"))
		}
		f.After = cur.ID
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	f.Limit = limit
	ds, err := a.store.List(r.Context(), f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(ds, limit, func(d *webhooks.Delivery) any { return pageCursor{ID: d.ID} }))
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
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
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		problem.Write(w, r, webhooks.ErrNoDelivery)
		return
	}
	d, emitted, err := a.store.Replay(r.Context(), id, func(d *webhooks.Delivery) idempotency.Response {
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
