package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/functions/process-transaction/store"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
)

type createAccountRequest struct {
	Currency      string          `json:"currency"`
	UserID        string          `json:"user_id"`
	AccountNumber string          `json:"account_number"`
	AllowNegative bool            `json:"allow_negative"`
	Metadata      json.RawMessage `json:"metadata"`
}

func (s *Service) createAccount(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	var in createAccountRequest
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	var v problem.Validator
	cur, err := money.ParseCurrency(in.Currency)
	v.Check(err == nil, "currency", "must be an ISO 4217 currency code such as USD")
	switch {
	case in.UserID == "" && p.Privileged():
		v.Add(problem.Field("user_id", "required when acting for another user"))
	case in.UserID == "":
		in.UserID = p.Subject
	case !ids.Valid(in.UserID):
		v.Add(problem.Field("user_id", "must be a UUID"))
	}
	if in.AccountNumber != "" {
		v.Check(ledger.ValidNumber(in.AccountNumber), "account_number", "must be 4-34 characters of A-Z, 0-9 and '-'")
		v.Check(!strings.HasPrefix(in.AccountNumber, "SYS-") || p.Role == auth.RoleAdmin, "account_number", "SYS- numbers are reserved for system accounts")
	}
	if len(in.Metadata) > 0 && string(in.Metadata) != "null" {
		v.Check(in.Metadata[0] == '{' && len(in.Metadata) <= ledger.MaxMetadata, "metadata", "must be a JSON object of at most 8 KiB")
		if why := ledger.Unstorable(in.Metadata); why != "" {
			v.Add(problem.Field("metadata", why))
		}
	} else {
		in.Metadata = nil
	}
	if err := v.Err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	if in.UserID != p.Subject && !p.Privileged() {
		problem.Write(w, r, problem.New(problem.Forbidden, "a customer opens accounts only for itself"))
		return
	}
	if in.AllowNegative && p.Role != auth.RoleAdmin {
		problem.Write(w, r, problem.New(problem.Forbidden, "only an admin may allow a negative balance"))
		return
	}
	a := &ledger.Account{ID: ids.New(), UserID: in.UserID, AccountNumber: in.AccountNumber, Currency: string(cur),
		AllowNegative: in.AllowNegative, Metadata: in.Metadata}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	limit := s.AccountsPerCustomer
	if p.Privileged() {
		limit = 0
	}
	err = s.store.CreateAccount(ctx, a, limit, func(a *ledger.Account) idempotency.Response {
		return idempotency.Response{Status: http.StatusCreated, Body: a, Location: "accounts/" + a.ID}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	w.Header().Set("Location", "accounts/"+a.ID)
	httpx.WriteJSON(w, http.StatusCreated, a)
}

// loadAccount returns an account the caller may see (cached), or 404.
func (s *Service) loadAccount(ctx context.Context, p auth.Principal, id string) (*ledger.Account, error) {
	id, ok := ids.Canonical(id) // the cache key every change invalidates
	if !ok {
		return nil, ledger.ErrNotFound("account")
	}
	a, err := redis.GetOrLoad(ctx, s.cache, id, 5*time.Minute, func(ctx context.Context) (*ledger.Account, error) {
		return s.store.Account(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	if !p.CanAccess(a.UserID) {
		return nil, ledger.ErrNotFound("account")
	}
	return a, nil
}

func (s *Service) getAccount(w http.ResponseWriter, r *http.Request) {
	a, err := s.loadAccount(r.Context(), platform.Principal(r), r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, a)
}

func (s *Service) listAccounts(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	userID := r.URL.Query().Get("user_id")
	if userID != "" && !ids.Valid(userID) {
		problem.Write(w, r, problem.Invalid(problem.Param("user_id", "must be a UUID")))
		return
	}
	if !p.Privileged() {
		if userID != "" && userID != p.Subject {
			httpx.WriteJSON(w, http.StatusOK, httpx.List[*ledger.Account]{}) // nothing of someone else's
			return
		}
		userID = p.Subject
	}
	limit, after, err := httpx.PagingByID(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	page, err := s.store.Accounts(r.Context(), userID, after, limit+1)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(page, limit, func(a *ledger.Account) any { return httpx.IDCursor{ID: a.ID} }))
}

func (s *Service) patchAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in struct {
		Status string `json:"status"`
	}
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	if in.Status != ledger.StatusActive && in.Status != ledger.StatusFrozen && in.Status != ledger.StatusClosed {
		problem.Write(w, r, problem.Invalid(problem.Field("status", "must be active, frozen or closed")))
		return
	}
	if !ids.Valid(id) {
		problem.Write(w, r, ledger.ErrNotFound("account"))
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	a, err := s.store.UpdateAccount(ctx, id, func(a *ledger.Account) (bool, error) { return a.SetStatus(in.Status) },
		func(a *ledger.Account) idempotency.Response {
			return idempotency.Response{Status: http.StatusOK, Body: a}
		})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.changed([]string{id})
	httpx.WriteJSON(w, http.StatusOK, a)
}

type historyCursor struct {
	T  time.Time `json:"t"`
	ID string    `json:"id"`
}

func (s *Service) history(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	a, err := s.loadAccount(r.Context(), p, r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	q := store.HistoryQuery{Account: a.ID}
	var v problem.Validator
	for name, dst := range map[string]**time.Time{"from": &q.From, "to": &q.To} {
		if raw := r.URL.Query().Get(name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				v.Add(problem.Param(name, "must be an RFC 3339 time such as 2026-01-31T00:00:00Z"))
				continue
			}
			*dst = &t
		}
	}
	q.Status = r.URL.Query().Get("status")
	if q.Status != "" && !slices.Contains(ledger.TransferStatuses, q.Status) {
		v.Add(problem.Param("status", "must be one of pending, posted, rejected, held, captured, voided, expired"))
	}
	var c historyCursor
	var pe *apperr.Error
	limit, ok, err := httpx.Paging(r, 50, 500, &c)
	switch id, valid := ids.Canonical(c.ID); {
	case errors.As(err, &pe):
		v.Add(pe.Errors...)
	case ok && !valid:
		v.Add(problem.Param("cursor", "is not a cursor this endpoint returned"))
	case ok:
		q.AfterTime, q.AfterID = &c.T, id
	}
	if err := v.Err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	q.Limit = limit + 1
	page, err := s.store.History(r.Context(), q)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	type entry struct {
		Direction string `json:"direction"` // debit or credit, from this account's side
		*ledger.Transfer
	}
	out := httpx.List[entry]{}
	for i, t := range page {
		if i == limit {
			last := page[limit-1]
			out.HasMore, out.NextCursor = true, httpx.EncodeCursor(historyCursor{last.CreatedAt, last.ID})
			break
		}
		dir := "credit"
		if t.FromAccountID == a.ID {
			dir = "debit"
		}
		// History shows this account's side only: never the counterparty's balance.
		if dir == "debit" {
			t.ToBalance, t.ToAvailable = nil, nil
		} else {
			t.FromBalance, t.FromAvailable = nil, nil
		}
		out.Data = append(out.Data, entry{dir, t})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}
