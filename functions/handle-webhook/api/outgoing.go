package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

// The merchant's endpoints and their delivery logs (admin routes).

// checkURL is the SSRF rule on an endpoint's url (shared/egress): public
// addresses only, unless WEBHOOK_ALLOWED_HOSTS names the host.
func (a *API) checkURL(ctx context.Context, raw *string) error {
	if raw == nil {
		return nil
	}
	u, err := url.Parse(*raw)
	if err != nil {
		return apperr.Invalid(apperr.Field("url", "is not a URL"))
	}
	if err := a.guard.Check(ctx, u); err != nil {
		return apperr.Invalid(apperr.Field("url", err.Error()))
	}
	return nil
}

// endpointRequest reads and checks an endpoint's body: its fields
// (creating: url and events required) and its URL against the guard.
func (a *API) endpointRequest(r *http.Request, creating bool) (outgoing.EndpointRequest, error) {
	var req outgoing.EndpointRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		return req, err
	}
	if err := req.Validate(creating); err != nil {
		return req, err
	}
	return req, a.checkURL(r.Context(), req.URL)
}

func (a *API) createEndpoint(w http.ResponseWriter, r *http.Request) {
	req, err := a.endpointRequest(r, true)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	now := a.now()
	e := &outgoing.Endpoint{ID: ids.New(), CreatedAt: now}
	req.Apply(e, now)
	e.SetSecrets(outgoing.NewSecret(), "")
	e.Secret = e.CurrentSecret() // shown once, here
	// Once started the creation commits, whoever goes away: the same
	// Idempotency-Key then finds its answer.
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	location := "/endpoints/" + e.ID
	err = a.store.CreateEndpoint(ctx, e, func(sealed *outgoing.Endpoint) idempotency.Response {
		return idempotency.Response{Status: http.StatusCreated, Body: sealed, Location: location}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	w.Header().Set("Location", location)
	httpx.WriteJSON(w, http.StatusCreated, e)
}

// openReplayedSecret serves a route whose answer shows an endpoint's
// secret (POST /endpoints, POST /endpoints/{id}/rotate-secret) behind its
// Idempotency-Key (inside the middleware's replay): the stored answer
// holds the secret sealed, as webhook_endpoints does (store.completeSealed),
// and a replay gives the client the secret the first answer showed, opened.
func (a *API) openReplayedSecret(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &replayWriter{ResponseWriter: w}
		next.ServeHTTP(rw, r)
		if !rw.held {
			return
		}
		var e outgoing.Endpoint
		err := json.Unmarshal(rw.body.Bytes(), &e)
		if err == nil {
			e.Secret, err = a.store.Secrets.Open(e.ID, e.Secret)
		}
		if err != nil {
			w.Header().Del(idempotency.ReplayedHeader)
			problem.Write(w, r, fmt.Errorf("the stored answer showing the endpoint's secret: %w", err))
			return
		}
		httpx.WriteJSON(w, rw.status, e)
	})
}

// replayWriter holds back a replayed success (2xx with
// Idempotent-Replayed: the creation's 201, the rotation's 200) for
// openReplayedSecret; every other answer (a replayed 404 shows no secret)
// goes through as it is.
type replayWriter struct {
	http.ResponseWriter
	status      int
	held, wrote bool
	body        bytes.Buffer
}

func (w *replayWriter) WriteHeader(code int) {
	if w.wrote || w.held {
		return
	}
	if code/100 == 2 && w.Header().Get(idempotency.ReplayedHeader) == "true" {
		w.status, w.held = code, true
		return
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *replayWriter) Write(b []byte) (int, error) {
	if !w.held && !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		return w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

func (w *replayWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (a *API) listEndpoints(w http.ResponseWriter, r *http.Request) {
	limit, after, err := httpx.PagingByID(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	es, err := a.store.Endpoints(r.Context(), limit, after)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(es, limit, func(e *outgoing.Endpoint) any { return httpx.IDCursor{ID: e.ID} }))
}

// endpointID is the path's endpoint id; a malformed one names none.
func endpointID(r *http.Request) (string, error) {
	id, ok := ids.Canonical(r.PathValue("id"))
	if !ok {
		return "", outgoing.ErrNoEndpoint
	}
	return id, nil
}

func (a *API) getEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err == nil {
		var e *outgoing.Endpoint
		if e, err = a.store.Endpoint(r.Context(), id); err == nil {
			httpx.WriteJSON(w, http.StatusOK, e)
			return
		}
	}
	problem.Write(w, r, err)
}

func (a *API) updateEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	req, err := a.endpointRequest(r, false)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	e, err := a.store.UpdateEndpoint(ctx, id, func(e *outgoing.Endpoint) error {
		req.Apply(e, a.now())
		return nil
	}, nil)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if !e.Disabled {
		a.kick() // pending deliveries held while it was disabled go now
	}
	httpx.WriteJSON(w, http.StatusOK, e)
}

func (a *API) deleteEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err == nil {
		ctx, cancel := postgres.Detached(r.Context())
		defer cancel()
		if err = a.store.DeleteEndpoint(ctx, id); err == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	problem.Write(w, r, err)
}

// rotateSecret gives the endpoint a new secret, shown once; the old one
// still signs for outgoing.RotationOverlap. Behind an optional
// Idempotency-Key, whose answer commits with the rotation, its secret
// sealed (store.UpdateEndpoint): a retried request gets the same new
// secret, not a second one that would make the first the previous.
func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	e, err := a.store.UpdateEndpoint(ctx, id, func(e *outgoing.Endpoint) error {
		e.Rotate(a.now())
		return nil
	}, func(sealed *outgoing.Endpoint) idempotency.Response {
		return idempotency.Response{Status: http.StatusOK, Body: sealed}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, e)
}

// testEndpoint queues a billfn.webhook.test event for the endpoint, sent
// in its turn like any delivery: 202 with the delivery to follow. Behind
// an optional Idempotency-Key, whose answer commits with the delivery
// (store.EnqueueTest): a retried request sends no second test event.
func (a *API) testEndpoint(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	if _, err := a.store.Endpoint(ctx, id); err != nil {
		problem.Write(w, r, err)
		return
	}
	ev, err := events.New(ctx, webhooks.Name, outgoing.TestType, id, map[string]any{
		"endpoint_id": id, "message": "a test event from billfn: your endpoint receives and verifies webhooks",
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	ev.SetTime(a.now())
	d, err := a.store.EnqueueTest(ctx, id, ev, func(d *outgoing.Delivery) idempotency.Response {
		return idempotency.Response{Status: http.StatusAccepted, Body: d, Location: "/deliveries/" + d.ID}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	a.kick()
	w.Header().Set("Location", "/deliveries/"+d.ID)
	httpx.WriteJSON(w, http.StatusAccepted, d)
}

var deliveryStatuses = map[string]bool{outgoing.Pending: true, outgoing.Succeeded: true, outgoing.Failed: true}

func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request) {
	id, err := endpointID(r)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	f := outgoing.Filter{EndpointID: id, Status: r.URL.Query().Get("status")}
	limit, after, err := httpx.PagingByID(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if f.Status != "" && !deliveryStatuses[f.Status] {
		problem.Write(w, r, problem.Invalid(problem.Param("status", "must be pending, succeeded or failed")))
		return
	}
	if _, err := a.store.Endpoint(r.Context(), id); err != nil {
		problem.Write(w, r, err)
		return
	}
	f.Limit, f.After = limit, after
	ds, err := a.store.Deliveries(r.Context(), f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(ds, limit, func(d *outgoing.Delivery) any { return httpx.IDCursor{ID: d.ID} }))
}

func (a *API) getDelivery(w http.ResponseWriter, r *http.Request) {
	id, ok := ids.Canonical(r.PathValue("id"))
	if !ok {
		problem.Write(w, r, outgoing.ErrNoDelivery)
		return
	}
	d, err := a.store.Delivery(r.Context(), id)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, d)
}

// retryDelivery makes a delivery pending again, due now (202: it is sent
// in its turn). Behind an optional Idempotency-Key, whose answer commits
// with the retry (store.Retry): a retried request sends it once more, not
// twice.
func (a *API) retryDelivery(w http.ResponseWriter, r *http.Request) {
	id, ok := ids.Canonical(r.PathValue("id"))
	if !ok {
		problem.Write(w, r, outgoing.ErrNoDelivery)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	d, err := a.store.Retry(ctx, id, func(d *outgoing.Delivery) idempotency.Response {
		return idempotency.Response{Status: http.StatusAccepted, Body: d}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	a.kick()
	httpx.WriteJSON(w, http.StatusAccepted, d)
}
