package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/functions/process-transaction/store"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
)

func (s *Service) scope(p auth.Principal) string {
	return s.d.Idempotency.Scope(auth.WithPrincipal(context.Background(), p))
}

// requestHash fingerprints a transfer request for idempotency.
func requestHash(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

func (s *Service) createTransfer(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	key := r.Header.Get(idempotency.Header)
	if key == "" {
		problem.Write(w, r, &problem.Error{Code: problem.IdempotencyRequired,
			Detail: "send an Idempotency-Key header (a UUID is a good key) so a retry cannot move money twice",
			Errors: []problem.FieldError{problem.Header(idempotency.Header, "required")}})
		return
	}
	if err := idempotency.ValidKey(key); err != nil {
		problem.Write(w, r, err)
		return
	}
	if err := httpx.RequireJSON(r); err != nil {
		problem.Write(w, r, err)
		return
	}
	body, err := httpx.ReadBody(r)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	var req ledger.TransferRequest
	if err := httpx.Unmarshal(body, &req); err != nil {
		problem.Write(w, r, err)
		return
	}
	if err := req.Validate("", s.now(), p); err != nil {
		problem.Write(w, r, err)
		return
	}
	o := &ledger.Op{Req: req, Caller: p, Scope: s.scope(p), Key: key, Hash: idempotency.Hash(r.Method, "/transfers", body), ID: ids.New(),
		OwnKey:      true,
		TraceParent: events.TraceParent(r.Context()), TraceState: events.TraceState(r.Context())}
	if httpx.RespondAsync(r) {
		s.accept(w, r, p, o)
		return
	}
	if err := s.commit.Submit(r.Context(), &ledger.Unit{Ops: []*ledger.Op{o}}); err != nil {
		problem.Write(w, r, err)
		return
	}
	answer(w, r, p, o.Res, http.StatusCreated)
}

// answer renders one op's outcome.
func answer(w http.ResponseWriter, r *http.Request, p auth.Principal, res ledger.Outcome, status int) {
	if res.Replayed {
		w.Header().Set(idempotency.ReplayedHeader, "true")
	}
	if res.Err != nil {
		problem.Write(w, r, res.Err)
		return
	}
	t := res.Transfer.ForCaller(p.CanAccess)
	w.Header().Set("Location", "transfers/"+t.ID)
	if t.Status == ledger.TransferPending {
		status = http.StatusAccepted
	}
	httpx.WriteJSON(w, status, t)
}

// accept stores a transfer as pending and answers 202; the
// billfn.transaction.requested event it emits decides it through the same
// group commit as the synchronous path.
func (s *Service) accept(w http.ResponseWriter, r *http.Request, p auth.Principal, o *ledger.Op) {
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	if err := s.commit.EnsureSystemAccounts(ctx, &ledger.Unit{Ops: []*ledger.Op{o}}); err != nil {
		problem.Write(w, r, err)
		return
	}
	t, replayed, err := s.store.AcceptPending(ctx, o, s.now().UTC().Truncate(time.Microsecond))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	res := ledger.Outcome{Transfer: t, Replayed: replayed}
	if t.Status == ledger.TransferPending {
		httpx.PreferenceApplied(w, "respond-async")
	}
	if t.Status == ledger.TransferRejected {
		res.Err = ledger.Rejection(t)
	}
	answer(w, r, p, res, http.StatusCreated)
}

func (s *Service) getTransfer(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	t, err := s.visibleTransfer(r.Context(), p, r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, t.ForCaller(p.CanAccess))
}

// visibleTransfer loads a transfer the caller is a party to, or 404.
func (s *Service) visibleTransfer(ctx context.Context, p auth.Principal, id string) (*ledger.Transfer, error) {
	if !ids.Valid(id) {
		return nil, ledger.ErrNotFound("transfer")
	}
	t, err := s.store.Transfer(ctx, id)
	if err != nil {
		return nil, err
	}
	if !t.VisibleTo(p) {
		return nil, ledger.ErrNotFound("transfer")
	}
	return t, nil
}

// batchRequest is POST /transfers/batch.
type batchRequest struct {
	Transfers []ledger.TransferRequest `json:"transfers"`
	Atomic    bool                     `json:"atomic"`
}

type batchItem struct {
	Status   int               `json:"status"`
	Transfer *ledger.Transfer  `json:"transfer,omitempty"`
	Error    *problem.Document `json:"error,omitempty"`
}

const maxBatch = 1000

// batchItemKey is the idempotency key of a batch's item i under the
// batch's key: the first item's is the key itself, so a transfer sent to
// POST /transfers under the same key finds it used (and the batch finds
// a transfer's); the others' are "<key> <i>", with a space no client's
// key holds (idempotency.ValidKey), so no key of the caller's other
// requests can name them.
func batchItemKey(key string, i int) string {
	if i == 0 {
		return key
	}
	return key + " " + strconv.Itoa(i)
}

// LegacyBatchItemKey is the key of a batch's item i before 2026-12-07
// ("<key>#<i>", the first item's too). A batch whose first item is stored
// under it is that batch retried (its caller went away before the
// answer): it keeps these keys, so its items replay.
func LegacyBatchItemKey(key string, i int) string { return key + "#" + strconv.Itoa(i) }

// BatchItemHash fingerprints a batch's item, validated, for idempotency.
func BatchItemHash(req *ledger.TransferRequest) []byte {
	item, _ := json.Marshal(req)
	return requestHash([]byte("batch-item"), item)
}

// batch applies up to 1000 transfers in one group commit. Each item gets its
// own result; with "atomic": true any rejection rejects them all and nothing
// is written. The batch is idempotent as a whole (Idempotency-Key).
func (s *Service) batch(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	var in batchRequest
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	if len(in.Transfers) == 0 || len(in.Transfers) > maxBatch {
		problem.Write(w, r, problem.Invalid(problem.Field("transfers", fmt.Sprintf("must hold 1 to %d transfers", maxBatch))))
		return
	}
	now := s.now()
	var v problem.Validator
	u := &ledger.Unit{Atomic: in.Atomic, OneRequest: true}
	key, scope := r.Header.Get(idempotency.Header), s.scope(p)
	tp, ts := events.TraceParent(r.Context()), events.TraceState(r.Context())
	for i := range in.Transfers {
		req := in.Transfers[i]
		if err := req.Validate(fmt.Sprintf("transfers/%d/", i), now, p); err != nil {
			var pe *apperr.Error
			if errors.As(err, &pe) && len(pe.Errors) > 0 {
				v.Add(pe.Errors...)
			} else {
				v.Add(problem.Field(fmt.Sprintf("transfers/%d", i), err.Error()))
			}
			continue
		}
		u.Ops = append(u.Ops, &ledger.Op{Req: req, Caller: p, Scope: scope, Key: batchItemKey(key, i),
			Hash: BatchItemHash(&req), ID: ids.New(), TraceParent: tp, TraceState: ts})
	}
	if err := v.Err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	// The key names one request across POST /transfers and the batch: a
	// transfer stored under it that is not this batch's first item
	// (replayed when the batch is retried) was another request.
	used, err := s.store.KeyHashes(r.Context(), scope, key, LegacyBatchItemKey(key, 0))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if _, legacy := used[LegacyBatchItemKey(key, 0)]; legacy {
		for i, o := range u.Ops {
			o.Key = LegacyBatchItemKey(key, i)
		}
	} else if prior, ok := used[key]; ok && !bytes.Equal(prior, u.Ops[0].Hash) {
		problem.Write(w, r, apperr.KeyReused("transfer (POST /transfers)"))
		return
	}
	if err := s.commit.Submit(r.Context(), u); err != nil {
		problem.Write(w, r, err)
		return
	}
	if u.Refused != nil {
		// Another request took the key while this one was on its way
		// (KeyHashes saw it free): nothing of the batch was written.
		problem.Write(w, r, u.Refused)
		return
	}
	items := make([]batchItem, len(u.Ops))
	failed := false
	for i, o := range u.Ops {
		// Each item shows the caller its own side only, a rejected one
		// too: its transfer carries the balances of both accounts as
		// decided, the payee's included.
		var t *ledger.Transfer
		if o.Res.Transfer != nil {
			ft := o.Res.Transfer.ForCaller(p.CanAccess)
			t = &ft
		}
		if o.Res.Err != nil {
			failed = true
			d, _ := Statuses.Doc(nil, "", o.Res.Err)
			if d.Status >= 500 {
				problem.Write(w, r, o.Res.Err) // the whole group failed: retry the batch
				return
			}
			items[i] = batchItem{Status: d.Status, Error: &d, Transfer: t}
			continue
		}
		items[i] = batchItem{Status: http.StatusCreated, Transfer: t}
	}
	if in.Atomic && failed {
		problem.Write(w, r, problem.New(ledger.BatchRejected, "a transfer of the atomic batch was rejected; nothing was applied").With("results", items))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"results": items})
}

type captureRequest struct {
	Amount *int64 `json:"amount"`
}

func (s *Service) capture(w http.ResponseWriter, r *http.Request) {
	var in captureRequest
	if r.ContentLength != 0 {
		if err := httpx.DecodeJSON(r, &in); err != nil {
			problem.Write(w, r, err)
			return
		}
	}
	if in.Amount != nil && *in.Amount <= 0 {
		problem.Write(w, r, ledger.ErrAmountInvalid("amount"))
		return
	}
	s.resolve(w, r, func(t *ledger.Transfer) store.Resolution {
		if in.Amount == nil {
			return store.Resolution{Amount: t.Amount, Status: ledger.TransferCaptured}
		}
		return store.Resolution{Amount: *in.Amount, Status: ledger.TransferCaptured}
	})
}

func (s *Service) void(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		// A void takes no member: one sent ({"amount":500}) would be
		// ignored and the whole hold released, so it is refused, as
		// capture refuses a member it does not know.
		var in struct{}
		if err := httpx.DecodeJSON(r, &in); err != nil {
			problem.Write(w, r, err)
			return
		}
	}
	s.resolve(w, r, func(*ledger.Transfer) store.Resolution { return store.Resolution{Status: ledger.TransferVoided} })
}

// resolve captures or voids a hold the caller placed (an administrator
// or a service: any hold; ledger.Transfer.MayResolve).
func (s *Service) resolve(w http.ResponseWriter, r *http.Request, how func(*ledger.Transfer) store.Resolution) {
	p := platform.Principal(r)
	id := r.PathValue("id")
	if !ids.Valid(id) {
		problem.Write(w, r, ledger.ErrNotFound("transfer"))
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	t, err := s.store.UpdateHold(ctx, id, s.now().UTC().Truncate(time.Microsecond), func(t *ledger.Transfer) (store.Resolution, error) {
		if err := t.MayResolve(p, s.scope(p)); err != nil {
			return store.Resolution{}, err
		}
		res := how(t)
		res.ByHolder = !p.Privileged()
		// The key names one request across the routes: a transfer (or a
		// hold) stored under it was another request. The middleware holds
		// it in the idempotency table, where a transfer's group finds it.
		res.Key = ledger.IdemKey{Scope: s.scope(p), Key: r.Header.Get(idempotency.Header)}
		return res, nil
	}, func(t *ledger.Transfer) idempotency.Response {
		return idempotency.Response{Status: http.StatusOK, Body: t.ForCaller(p.CanAccess)}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.changed([]string{t.FromAccountID, t.ToAccountID})
	httpx.WriteJSON(w, http.StatusOK, t.ForCaller(p.CanAccess))
}
