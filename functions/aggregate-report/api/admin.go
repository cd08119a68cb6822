package api

import (
	"context"
	"net/http"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/problem"
)

// adminTimeout bounds a rebuild or check run over HTTP; long ranges belong
// to the command (go run ./functions/aggregate-report rebuild), which has no deadline.
const adminTimeout = 5 * time.Minute

// CheckResponse is a report plus the verdict.
type CheckResponse struct {
	rollup.Report
	Equal bool `json:"equal"`
}

// rangeOf reads a rebuild range: dates, to exclusive; the whole log when
// both are empty.
func (s *API) rangeOf(ctx context.Context, from, to string) (rollup.Range, error) {
	full, err := store.FullRange(ctx, s.d.Pool, s.now())
	if err != nil {
		return rollup.Range{}, err
	}
	var errs []problem.FieldError
	r := full
	if from != "" {
		if r.From, err = time.Parse(time.DateOnly, from); err != nil {
			errs = append(errs, problem.Field("from", "must be a date (2026-01-31)"))
		}
	}
	if to != "" {
		if r.To, err = time.Parse(time.DateOnly, to); err != nil {
			errs = append(errs, problem.Field("to", "must be a date (2026-01-31), exclusive"))
		}
	}
	if len(errs) == 0 && !r.From.Before(r.To) {
		errs = append(errs, problem.Field("to", "must be after from"))
	}
	if len(errs) > 0 {
		return r, problem.Invalid(errs...)
	}
	return r, nil
}

type rebuildRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// postRebuild recomputes the rollups of a range from the event log (admin).
// It is naturally idempotent: running it twice writes the same rows.
func (s *API) postRebuild(w http.ResponseWriter, r *http.Request) {
	var req rebuildRequest
	if r.ContentLength != 0 {
		if err := httpx.DecodeJSON(r, &req); err != nil {
			problem.Write(w, r, err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), adminTimeout)
	defer cancel()
	rng, err := s.rangeOf(ctx, req.From, req.To)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rep, err := store.Rebuild(ctx, s.d.Pool, rng, 0, nil)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	writeJSON(w, rep)
}

// getCheck compares the streamed rollups of a range with a recomputation
// (admin); equal is false when they differ, with samples of the rows.
func (s *API) getCheck(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "from", "to")
	if err := q.err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	rng, err := s.rangeOf(ctx, q.get("from"), q.get("to"))
	if pe := problem.From(err); err != nil && pe.Code == problem.ValidationFailed {
		// The range came from the query string: name parameters, not members.
		for i := range pe.Errors {
			pe.Errors[i] = problem.Param(pe.Errors[i].Pointer[2:], pe.Errors[i].Detail)
		}
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rep, err := store.Check(ctx, s.d.Pool, rng, 0, nil)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	writeJSON(w, CheckResponse{rep, rep.Equal()})
}
