package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
)

// service is process-transaction: a double-entry ledger over HTTP and events.
type service struct {
	d      *platform.Deps
	now    func() time.Time
	store  *store
	commit *committer
	cache  *redis.Cache
}

func newService(d *platform.Deps, now func() time.Time) *service {
	s := &service{d: d, now: now, store: &store{pool: d.Pool, source: d.Name}, cache: d.Cache("accounts")}
	s.commit = newCommitter(d.Pool, d.Name, now, s.changed)
	d.Collect(groupSize, groupSeconds, groupRetries)
	d.Events.OnSelf(typeRequested, s.onRequested)
	d.Events.SelfBatch = s.onRequestedBatch
	d.Events.OnSelf(typeHoldCaptureRequested, s.onHoldResolve)
	d.Events.OnSelf(typeHoldVoidRequested, s.onHoldResolve)
	d.Events.Tick = s.tick
	return s
}

// start runs the group committer. It stops after the server has drained
// (a closer), so requests still in flight at SIGTERM get their answer.
func (s *service) start() {
	ctx, stop := context.WithCancel(context.Background())
	for i := 0; i < max(1, s.commit.workers); i++ {
		go s.commit.run(ctx)
	}
	s.d.OnClose(func(context.Context) { stop() })
}

// changed runs after every commit that changed accounts: their cached
// copies go before any caller hears back, and the outbox is published.
func (s *service) changed(accounts []string) {
	s.cache.Invalidate(context.Background(), accounts...)
	s.d.Publisher.Kick()
}

func (s *service) routes() *http.ServeMux { return s.d.Mux(s.routeTable()) }

// routeTable is process-transaction's HTTP surface: who may call what
// (docs/process-transaction.md carries the same table), the rate-limit
// class, and the resources each route names, which the attack test
// substitutes with another customer's.
func (s *service) routeTable() []platform.Route {
	idem := s.d.Idempotency.Middleware(false)
	idemRequired := s.d.Idempotency.Middleware(true)
	h := func(f http.HandlerFunc) http.Handler { return f }
	account := map[string]string{"{id}": "account"}
	transfer := func(prefix string) map[string]string {
		return map[string]string{
			prefix + "from_account_id": "account", prefix + "to_account_id": "account",
			prefix + "from_account_number": "account-number", prefix + "to_account_number": "account-number",
		}
	}
	return []platform.Route{
		{Pattern: "POST /accounts", Access: platform.Customer, Refs: map[string]string{"user_id": "user"}, Handler: idem(h(s.createAccount))},
		{Pattern: "GET /accounts", Access: platform.Customer, Refs: map[string]string{"?user_id": "user"}, Handler: h(s.listAccounts)},
		{Pattern: "GET /accounts/{id}", Access: platform.Customer, Refs: account, Handler: h(s.getAccount)},
		{Pattern: "PATCH /accounts/{id}", Access: platform.Admin, Refs: account, Handler: idem(h(s.patchAccount))},
		{Pattern: "GET /accounts/{id}/transactions", Access: platform.Customer, Refs: account, Handler: h(s.history)},
		// POST /transfers keeps its idempotency inside the group commit.
		{Pattern: "POST /transfers", Access: platform.Customer, Class: platform.Money, Refs: transfer(""), Handler: h(s.createTransfer)},
		{Pattern: "POST /transfers/batch", Access: platform.Customer, Class: platform.Money, Refs: transfer("transfers/0/"), Handler: idemRequired(h(s.batch))},
		{Pattern: "GET /transfers/{id}", Access: platform.Customer, Refs: map[string]string{"{id}": "transfer"}, Handler: h(s.getTransfer)},
		{Pattern: "POST /transfers/{id}/capture", Access: platform.Customer, Class: platform.Money, Refs: map[string]string{"{id}": "hold"}, Handler: idemRequired(h(s.capture))},
		{Pattern: "POST /transfers/{id}/void", Access: platform.Customer, Class: platform.Money, Refs: map[string]string{"{id}": "hold"}, Handler: idemRequired(h(s.void))},
		{Pattern: "POST /{$}", Access: platform.Delivery, Refs: map[string]string{}, Handler: s.d.Events},
	}
}

// dbContext detaches database work from the client's connection: a caller
// that hangs up must not turn a committed write into an error.
func dbContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
}

func validID(id string) bool { _, err := uuid.Parse(id); return err == nil && len(id) == 36 }

// ---- accounts ----

type createAccountRequest struct {
	Currency      string          `json:"currency"`
	UserID        string          `json:"user_id"`
	AccountNumber string          `json:"account_number"`
	AllowNegative bool            `json:"allow_negative"`
	Metadata      json.RawMessage `json:"metadata"`
}

func (s *service) createAccount(w http.ResponseWriter, r *http.Request) {
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
	case !validID(in.UserID):
		v.Add(problem.Field("user_id", "must be a UUID"))
	}
	if in.AccountNumber != "" {
		v.Check(numberRe.MatchString(in.AccountNumber), "account_number", "must be 4-34 characters of A-Z, 0-9 and '-'")
		v.Check(!strings.HasPrefix(in.AccountNumber, "SYS-") || p.Role == auth.RoleAdmin, "account_number", "SYS- numbers are reserved for system accounts")
	}
	if len(in.Metadata) > 0 && string(in.Metadata) != "null" {
		v.Check(in.Metadata[0] == '{' && len(in.Metadata) <= maxMetadata, "metadata", "must be a JSON object of at most 8 KiB")
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
	a := &Account{ID: newID(), UserID: in.UserID, AccountNumber: in.AccountNumber, Currency: string(cur),
		AllowNegative: in.AllowNegative, Metadata: in.Metadata}
	ctx, cancel := dbContext(r)
	defer cancel()
	err = postgres.Tx(ctx, s.d.Pool, func(tx pgx.Tx) error {
		if err := s.store.createAccount(ctx, tx, a); err != nil {
			return err
		}
		return idempotency.Complete(ctx, tx, idempotency.Response{Status: http.StatusCreated, Body: a, Location: "accounts/" + a.ID})
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
func (s *service) loadAccount(ctx context.Context, p auth.Principal, id string) (*Account, error) {
	if !validID(id) {
		return nil, problem.New(problem.NotFound, "no such account")
	}
	a, err := redis.GetOrLoad(ctx, s.cache, id, 5*time.Minute, func(ctx context.Context) (*Account, error) {
		return s.store.account(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	if !p.CanAccess(a.UserID) {
		return nil, problem.New(problem.NotFound, "no such account")
	}
	return a, nil
}

func (s *service) getAccount(w http.ResponseWriter, r *http.Request) {
	a, err := s.loadAccount(r.Context(), platform.Principal(r), r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, a)
}

func (s *service) listAccounts(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	userID := r.URL.Query().Get("user_id")
	if userID != "" && !validID(userID) {
		problem.Write(w, r, problem.Invalid(problem.Param("user_id", "must be a UUID")))
		return
	}
	if !p.Privileged() {
		if userID != "" && userID != p.Subject {
			httpx.WriteJSON(w, http.StatusOK, httpx.List[*Account]{}) // nothing of someone else's
			return
		}
		userID = p.Subject
	}
	limit, err := httpx.Limit(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	var after string
	if _, err := httpx.DecodeCursor(r, &after); err != nil || (after != "" && !validID(after)) {
		problem.Write(w, r, problem.Invalid(problem.Param("cursor", "is not a cursor this endpoint returned")))
		return
	}
	page, err := s.store.accounts(r.Context(), userID, after, limit+1)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(page, limit, func(a *Account) any { return a.ID }))
}

func (s *service) patchAccount(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var in struct {
		Status string `json:"status"`
	}
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	if in.Status != StatusActive && in.Status != StatusFrozen && in.Status != StatusClosed {
		problem.Write(w, r, problem.Invalid(problem.Field("status", "must be active, frozen or closed")))
		return
	}
	if !validID(id) {
		problem.Write(w, r, problem.New(problem.NotFound, "no such account"))
		return
	}
	ctx, cancel := dbContext(r)
	defer cancel()
	var a *Account
	err := postgres.Tx(ctx, s.d.Pool, func(tx pgx.Tx) error {
		var err error
		if a, err = s.store.setStatus(ctx, tx, id, in.Status); err != nil {
			return err
		}
		return idempotency.Complete(ctx, tx, idempotency.Response{Status: http.StatusOK, Body: a})
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

func (s *service) history(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	a, err := s.loadAccount(r.Context(), p, r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	q := historyQuery{account: a.ID}
	var v problem.Validator
	for name, dst := range map[string]**time.Time{"from": &q.from, "to": &q.to} {
		if raw := r.URL.Query().Get(name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				v.Add(problem.Param(name, "must be an RFC 3339 time such as 2026-01-31T00:00:00Z"))
				continue
			}
			*dst = &t
		}
	}
	q.status = r.URL.Query().Get("status")
	switch q.status {
	case "", TransferPending, TransferPosted, TransferRejected, TransferHeld, TransferCaptured, TransferVoided, TransferExpired:
	default:
		v.Add(problem.Param("status", "must be one of pending, posted, rejected, held, captured, voided, expired"))
	}
	if q.limit, err = httpx.Limit(r, 50, 500); err != nil {
		v.Add(problem.Param("limit", "must be an integer from 1 to 500"))
	}
	var c historyCursor
	if ok, err := httpx.DecodeCursor(r, &c); err != nil || (ok && !validID(c.ID)) {
		v.Add(problem.Param("cursor", "is not a cursor this endpoint returned"))
	} else if ok {
		q.afterTime, q.afterID = &c.T, c.ID
	}
	if err := v.Err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	limit := q.limit
	q.limit++
	page, err := s.store.history(r.Context(), q)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	type entry struct {
		Direction string `json:"direction"` // debit or credit, from this account's side
		*Transfer
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

// ---- transfers ----

func (s *service) scope(p auth.Principal) string {
	return s.d.Idempotency.Scope(auth.WithPrincipal(context.Background(), p))
}

func (s *service) createTransfer(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	key := r.Header.Get(idempotency.Header)
	if key == "" {
		problem.Write(w, r, &problem.Error{Code: problem.IdempotencyRequired,
			Detail: "send an Idempotency-Key header (a UUID is a good key) so a retry cannot move money twice",
			Errors: []problem.FieldError{problem.Header(idempotency.Header, "required")}})
		return
	}
	if len(key) > 255 {
		problem.Write(w, r, problem.Invalid(problem.Header(idempotency.Header, "must be at most 255 characters")))
		return
	}
	if err := httpx.RequireJSON(r); err != nil {
		problem.Write(w, r, err)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	var req TransferRequest
	if err := httpx.Unmarshal(body, &req); err != nil {
		problem.Write(w, r, err)
		return
	}
	if err := req.validate("", s.now()); err != nil {
		problem.Write(w, r, err)
		return
	}
	o := &op{req: req, principal: p, scope: s.scope(p), key: key, hash: idempotency.Hash(r.Method, "/transfers", body), id: newID()}
	if strings.Contains(r.Header.Get("Prefer"), "respond-async") {
		s.accept(w, r, o)
		return
	}
	if err := s.commit.submit(r.Context(), &unit{ops: []*op{o}}); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.answer(w, r, p, o.res, http.StatusCreated)
}

// answer renders one op's outcome.
func (s *service) answer(w http.ResponseWriter, r *http.Request, p auth.Principal, res outcome, status int) {
	if res.replayed {
		w.Header().Set(idempotency.ReplayedHeader, "true")
	}
	if res.err != nil {
		problem.Write(w, r, res.err)
		return
	}
	t := res.transfer.forCaller(p.CanAccess)
	w.Header().Set("Location", "transfers/"+t.ID)
	if t.Status == TransferPending {
		status = http.StatusAccepted
	}
	httpx.WriteJSON(w, status, t)
}

// accept stores a transfer as pending and answers 202; the
// billfn.transaction.requested event it emits decides it through the same
// group commit as the synchronous path.
func (s *service) accept(w http.ResponseWriter, r *http.Request, o *op) {
	ctx, cancel := dbContext(r)
	defer cancel()
	if err := s.commit.ensureSystemAccounts(ctx, []*unit{{ops: []*op{o}}}); err != nil {
		problem.Write(w, r, err)
		return
	}
	t, replayed, err := s.store.acceptPending(ctx, o)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	res := outcome{transfer: t, replayed: replayed}
	if t.Status == TransferRejected {
		res.err = rejection(t)
	}
	s.answer(w, r, o.principal, res, http.StatusCreated)
}

func (s *service) getTransfer(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	t, err := s.visibleTransfer(r.Context(), p, r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, t.forCaller(p.CanAccess))
}

// visibleTransfer loads a transfer the caller is a party to, or 404.
func (s *service) visibleTransfer(ctx context.Context, p auth.Principal, id string) (*Transfer, error) {
	if !validID(id) {
		return nil, problem.New(problem.NotFound, "no such transfer")
	}
	t, err := s.store.transfer(ctx, s.d.Pool, id, false)
	if err != nil {
		return nil, err
	}
	if !p.CanAccess(t.fromUser) && !p.CanAccess(t.toUser) {
		return nil, problem.New(problem.NotFound, "no such transfer")
	}
	return t, nil
}

// batchRequest is POST /transfers/batch.
type batchRequest struct {
	Transfers []TransferRequest `json:"transfers"`
	Atomic    bool              `json:"atomic"`
}

type batchItem struct {
	Status   int               `json:"status"`
	Transfer *Transfer         `json:"transfer,omitempty"`
	Error    *problem.Document `json:"error,omitempty"`
}

const maxBatch = 1000

// batch applies up to 1000 transfers in one group commit. Each item gets its
// own result; with "atomic": true any rejection rejects them all and nothing
// is written. The batch is idempotent as a whole (Idempotency-Key).
func (s *service) batch(w http.ResponseWriter, r *http.Request) {
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
	u := &unit{atomic: in.Atomic}
	key := r.Header.Get(idempotency.Header)
	for i := range in.Transfers {
		req := in.Transfers[i]
		if err := req.validate(fmt.Sprintf("transfers/%d/", i), now); err != nil {
			var pe *problem.Error
			if errors.As(err, &pe) && len(pe.Errors) > 0 {
				v.Add(pe.Errors...)
			} else {
				v.Add(problem.Field(fmt.Sprintf("transfers/%d", i), err.Error()))
			}
			continue
		}
		item, _ := json.Marshal(req)
		u.ops = append(u.ops, &op{req: req, principal: p, scope: s.scope(p), key: fmt.Sprintf("%s#%d", key, i),
			hash: requestHash([]byte("batch-item"), item), id: newID()})
	}
	if err := v.Err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	if err := s.commit.submit(r.Context(), u); err != nil {
		problem.Write(w, r, err)
		return
	}
	items := make([]batchItem, len(u.ops))
	failed := false
	for i, o := range u.ops {
		if o.res.err != nil {
			failed = true
			d, pe := problem.Doc(nil, "", o.res.err)
			if pe.Status() >= 500 {
				problem.Write(w, r, o.res.err) // the whole group failed: retry the batch
				return
			}
			items[i] = batchItem{Status: d.Status, Error: &d, Transfer: o.res.transfer}
			continue
		}
		t := o.res.transfer.forCaller(p.CanAccess)
		items[i] = batchItem{Status: http.StatusCreated, Transfer: &t}
	}
	if in.Atomic && failed {
		problem.Write(w, r, problem.New(BatchRejected, "a transfer of the atomic batch was rejected; nothing was applied").With("results", items))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"results": items})
}

type captureRequest struct {
	Amount *int64 `json:"amount"`
}

func (s *service) capture(w http.ResponseWriter, r *http.Request) {
	var in captureRequest
	if r.ContentLength != 0 {
		if err := httpx.DecodeJSON(r, &in); err != nil {
			problem.Write(w, r, err)
			return
		}
	}
	if in.Amount != nil && *in.Amount <= 0 {
		problem.Write(w, r, &problem.Error{Code: AmountInvalid, Detail: "amount must be a positive integer in minor units",
			Errors: []problem.FieldError{problem.Field("amount", "must be greater than 0")}})
		return
	}
	s.resolve(w, r, func(t *Transfer) (int64, string) {
		if in.Amount == nil {
			return t.Amount, TransferCaptured
		}
		return *in.Amount, TransferCaptured
	})
}

func (s *service) void(w http.ResponseWriter, r *http.Request) {
	s.resolve(w, r, func(*Transfer) (int64, string) { return 0, TransferVoided })
}

// resolve captures or voids a hold the caller owns.
func (s *service) resolve(w http.ResponseWriter, r *http.Request, how func(*Transfer) (int64, string)) {
	p := platform.Principal(r)
	id := r.PathValue("id")
	if !validID(id) {
		problem.Write(w, r, problem.New(problem.NotFound, "no such transfer"))
		return
	}
	ctx, cancel := dbContext(r)
	defer cancel()
	var t *Transfer
	err := postgres.Tx(ctx, s.d.Pool, func(tx pgx.Tx) error {
		var err error
		if t, err = s.store.transfer(ctx, tx, id, true); err != nil {
			return err
		}
		if !p.CanAccess(t.fromUser) {
			return problem.New(problem.NotFound, "no such transfer")
		}
		amount, status := how(t)
		if err := s.store.resolveHold(ctx, tx, t, amount, status, s.now().UTC().Truncate(time.Microsecond)); err != nil {
			return err
		}
		return idempotency.Complete(ctx, tx, idempotency.Response{Status: http.StatusOK, Body: t.forCaller(p.CanAccess)})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.changed([]string{t.FromAccountID, t.ToAccountID})
	httpx.WriteJSON(w, http.StatusOK, t.forCaller(p.CanAccess))
}
