package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/problem"
)

// maxAmount bounds an amount in minor units (payments.MaxAmount).
const maxAmount = payments.MaxAmount

// answer is the idempotent answer of a request: its outcome's status and
// body, with location for a creation.
func answer(location string) payments.Answer {
	return func(o payments.Outcome, body any) any {
		resp := idempotency.Response{Status: status(o), Body: body}
		if location != "" && resp.Status == http.StatusCreated {
			resp.Location = location
		}
		return resp
	}
}

// status is the HTTP status of an outcome.
func status(o payments.Outcome) int {
	switch o {
	case payments.Created:
		return http.StatusCreated
	case payments.Pending:
		return http.StatusAccepted
	}
	return http.StatusOK
}

// owner is the access rule of the caller: a customer reaches only its own
// payments; admin and service reach every payment.
func owner(p auth.Principal) payments.Access {
	if p.Privileged() {
		return payments.Anyone
	}
	return payments.Access{User: p.Subject}
}

// canonicalID returns an id (shared/ids: upper case is read) in its
// canonical form, which owners are compared in; ok is false when s is no
// id.
func canonicalID(s string) (id string, ok bool) {
	if id, ok = ids.Canonical(s); !ok {
		return s, false
	}
	return id, true
}

type createRequest struct {
	AccountID     string            `json:"account_id"`
	UserID        string            `json:"user_id"`
	InvoiceID     *string           `json:"invoice_id"`
	Amount        int64             `json:"amount"`
	Currency      string            `json:"currency"`
	PaymentMethod string            `json:"payment_method"`
	CaptureMethod string            `json:"capture_method"`
	Confirm       bool              `json:"confirm"`
	Gateway       string            `json:"gateway"`
	Description   string            `json:"description"`
	Metadata      map[string]string `json:"metadata"`
}

func (s *API) createPayment(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	// The route's claim is deferred (routes.go): a payment created and
	// confirmed with a token, neither invoice nor saved method, takes it in
	// the intent's statement (store.InsertConfirmingFor); every other
	// request takes it before it does anything, and every answer is given
	// holding it, as before. A claim found lost answers nothing here: the
	// middleware answers (the stored answer, 409 or 422).
	fail := func(err error) {
		if errors.Is(err, idempotency.ErrClaimLost) {
			return
		}
		if won, terr := idempotency.Take(ctx); terr != nil {
			err = terr
		} else if !won {
			return
		}
		problem.Write(w, r, err)
	}
	var req createRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		fail(err)
		return
	}
	pr := platform.Principal(r)
	in, err := s.parseCreate(pr, &req)
	if err != nil {
		fail(err)
		return
	}
	if !in.Confirm || in.InvoiceID != nil || ids.Valid(in.PaymentMethod) {
		if won, err := idempotency.Take(ctx); err != nil || !won {
			if err != nil {
				problem.Write(w, r, err)
			}
			return
		}
	}
	// CreateFor decides the account (AuthorizeAccount's rules), in the
	// payment's first write when it can.
	in.ID = payments.DerivedID(payments.PaymentNS, s.d.Idempotency.Scope(ctx), idempotency.KeyFrom(ctx))
	p, err := s.svc.CreateFor(ctx, s.store.Fresh(), pr, in, answer("/payments/"+in.ID))
	if err != nil {
		fail(err)
		return
	}
	s.d.Publisher.Kick()
	w.Header().Set("Location", "/payments/"+p.ID)
	httpx.WriteJSON(w, http.StatusCreated, p)
}

// parseCreate checks a create body for the caller pr and returns the
// payment to create (without its id, and with the user_id the caller sent,
// if any: CreateFor checks it and sets the owner from the account
// itself): its ids are canonical UUIDs, its
// currency a canonical ISO 4217 code, its capture method set and its
// metadata not nil. Anything else is a 4xx problem.
func (s *API) parseCreate(pr auth.Principal, req *createRequest) (payments.CreateInput, error) {
	var v problem.Validator
	account, ok := canonicalID(req.AccountID)
	v.Check(ok, "account_id", "must be an account id (a UUID)")
	user, ok := canonicalID(req.UserID)
	v.Check(ok || req.UserID == "", "user_id", "must be the account owner's id (a UUID), or be left out: the owner comes from the account")
	if req.InvoiceID != nil {
		invoice, ok := canonicalID(*req.InvoiceID)
		v.Check(ok, "invoice_id", "must be an invoice id (a UUID)")
		req.InvoiceID = &invoice
	}
	v.Check(req.Amount > 0 && req.Amount <= maxAmount, "amount", "must be a positive integer of minor units, at most 999999999999")
	cur, err := money.ParseCurrency(req.Currency)
	v.Check(err == nil, "currency", "must be an ISO 4217 code")
	if req.CaptureMethod == "" {
		req.CaptureMethod = payments.CaptureAutomatic
	}
	v.Check(req.CaptureMethod == payments.CaptureAutomatic || req.CaptureMethod == payments.CaptureManual, "capture_method", "must be automatic or manual")
	if req.Gateway != "" {
		v.Check(s.svc.Gateways[req.Gateway] != nil, "gateway", "is not a configured gateway")
	}
	v.Check(req.PaymentMethod == "" || validMethod(req.PaymentMethod), "payment_method",
		"must be a gateway token (pm_…) or a saved payment method id")
	checkText(&v, req.Description, req.Metadata)
	if err := v.Err(); err != nil {
		return payments.CreateInput{}, err
	}
	if req.Confirm && req.PaymentMethod == "" {
		return payments.CreateInput{}, problem.New(payments.CodeMethodRequired, "confirm needs a payment_method")
	}
	if req.Metadata == nil {
		req.Metadata = map[string]string{}
	}
	if id, ok := canonicalID(req.PaymentMethod); ok {
		req.PaymentMethod = id // a saved method's id
	}
	return payments.CreateInput{AccountID: account, UserID: user, InvoiceID: req.InvoiceID, Amount: req.Amount, Currency: cur,
		PaymentMethod: req.PaymentMethod, CaptureMethod: req.CaptureMethod, Confirm: req.Confirm, Gateway: req.Gateway,
		Description: req.Description, Metadata: req.Metadata}, nil
}

// validMethod says whether s can name a payment method: a gateway token
// or a saved method id.
func validMethod(s string) bool {
	return ids.Valid(s) || payments.ValidToken(s)
}

// checkText applies Stripe's limits to description and metadata.
func checkText(v *problem.Validator, description string, metadata map[string]string) {
	v.Check(utf8.RuneCountInString(description) <= 1000, "description", "must be at most 1000 characters")
	v.Check(len(metadata) <= 50, "metadata", "must have at most 50 keys")
	for k, val := range metadata {
		if len(k) == 0 || utf8.RuneCountInString(k) > 40 || utf8.RuneCountInString(val) > 500 {
			v.Add(problem.Field("metadata", "keys must be 1 to 40 characters, values at most 500"))
			return
		}
	}
}

// PaymentView is GET /payments/{id}: the payment and its attempts.
type PaymentView struct {
	*payments.Payment
	AttemptHistory []payments.Attempt `json:"attempt_history"`
}

func (s *API) getPayment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !ids.Valid(id) {
		problem.Write(w, r, payments.ErrNotFound)
		return
	}
	p, err := s.db().Payment(r.Context(), id, false)
	if err == nil && !owner(platform.Principal(r)).Allows(p) {
		err = payments.ErrNotFound
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	as, err := s.db().Attempts(r.Context(), id)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if as == nil {
		as = []payments.Attempt{}
	}
	httpx.WriteJSON(w, http.StatusOK, PaymentView{Payment: p, AttemptHistory: as})
}

var statuses = map[string]bool{string(payments.RequiresPaymentMethod): true, string(payments.RequiresConfirmation): true,
	string(payments.RequiresAction): true, string(payments.Processing): true, string(payments.RequiresCapture): true, string(payments.Succeeded): true, string(payments.Canceled): true}

func (s *API) listPayments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := payments.PaymentFilter{AccountID: q.Get("account_id"), InvoiceID: q.Get("invoice_id"), Status: q.Get("status")}
	var bad []problem.FieldError
	for _, name := range []string{"account_id", "invoice_id"} {
		if val := q.Get(name); val != "" {
			if !ids.Valid(val) {
				bad = append(bad, problem.Param(name, "must be a UUID"))
			}
		}
	}
	if f.Status != "" && !statuses[f.Status] {
		bad = append(bad, problem.Param("status", "is not a payment status"))
	}
	var after payments.PageKey
	limit, ok, err := httpx.Paging(r, 20, 100, &after)
	if err == nil && ok {
		after.ID, err = httpx.CursorID(after.ID)
	}
	if err != nil {
		bad = append(bad, problem.From(err).Errors...)
	}
	if len(bad) > 0 {
		problem.Write(w, r, problem.Invalid(bad...))
		return
	}
	if ok {
		f.After = &after
	}
	f.Limit = limit
	if pr := platform.Principal(r); !pr.Privileged() {
		f.UserID = pr.Subject
		if f.AccountID != "" {
			// Someone else's account is a 404, not an empty page.
			if _, err := s.svc.AccountFor(r.Context(), pr, f.AccountID); err != nil {
				problem.Write(w, r, err)
				return
			}
		}
	}
	ps, err := s.db().Payments(r.Context(), f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(ps, limit, func(p *payments.Payment) any { return payments.PageKey{CreatedAt: p.CreatedAt, ID: p.ID} }))
}

// decodeOptional decodes a body that may be empty (Stripe's confirm,
// capture and cancel take none).
func decodeOptional(r *http.Request, dst any) error {
	body, err := httpx.ReadBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := httpx.RequireJSON(r); err != nil {
		return err
	}
	return httpx.Unmarshal(body, dst)
}

// pathPayment validates the {id} of a payment path.
func pathPayment(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !ids.Valid(id) {
		return "", payments.ErrNotFound
	}
	return id, nil
}

func (s *API) confirmPayment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PaymentMethod string `json:"payment_method"`
	}
	id, err := pathPayment(r)
	if err == nil {
		err = decodeOptional(r, &req)
	}
	if err == nil && req.PaymentMethod != "" && !validMethod(req.PaymentMethod) {
		err = problem.Invalid(problem.Field("payment_method", "must be a gateway token (pm_…) or a saved payment method id"))
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	p, err := s.svc.Confirm(r.Context(), s.store.Fresh(), id, owner(platform.Principal(r)), req.PaymentMethod, answer(""))
	s.writePayment(w, r, p, err, http.StatusOK)
}

func (s *API) capturePayment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Amount *int64 `json:"amount"` // absent (or null): everything capturable; 0 is no amount
	}
	id, err := pathPayment(r)
	if err == nil {
		err = decodeOptional(r, &req)
	}
	if err == nil && req.Amount != nil && (*req.Amount <= 0 || *req.Amount > maxAmount) {
		err = problem.Invalid(problem.Field("amount", "must be a positive integer of minor units (omit it to capture all)"))
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	p, err := s.svc.Capture(r.Context(), id, owner(platform.Principal(r)), deref(req.Amount), answer(""))
	s.writePayment(w, r, p, err, http.StatusOK)
}

var cancelReasons = map[string]bool{"": true, "duplicate": true, "fraudulent": true, "requested_by_customer": true, "abandoned": true}

func (s *API) cancelPayment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"cancellation_reason"`
	}
	id, err := pathPayment(r)
	if err == nil {
		err = decodeOptional(r, &req)
	}
	if err == nil && !cancelReasons[req.Reason] {
		err = problem.Invalid(problem.Field("cancellation_reason", "must be duplicate, fraudulent, requested_by_customer or abandoned"))
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	p, err := s.svc.Cancel(r.Context(), s.store.Fresh(), id, owner(platform.Principal(r)), req.Reason, answer(""))
	s.writePayment(w, r, p, err, http.StatusOK)
}

// writePayment writes a payment (202 while its gateway operation's outcome is unknown).
func (s *API) writePayment(w http.ResponseWriter, r *http.Request, p *payments.Payment, err error, status int) {
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	if p.Op() == payments.OpCapture || p.Op() == payments.OpCancel {
		status = http.StatusAccepted
	}
	p.Finish()
	httpx.WriteJSON(w, status, p)
}

var refundReasons = map[string]bool{"": true, "duplicate": true, "fraudulent": true, "requested_by_customer": true}

func (s *API) createRefund(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Amount *int64 `json:"amount"` // absent (or null): all that is left; 0 is no amount
		Reason string `json:"reason"`
	}
	id, err := pathPayment(r)
	if err == nil {
		err = decodeOptional(r, &req)
	}
	if err == nil {
		var v problem.Validator
		v.Check(req.Amount == nil || (*req.Amount > 0 && *req.Amount <= maxAmount), "amount",
			"must be a positive integer of minor units (omit it to refund all that is left)")
		v.Check(refundReasons[req.Reason], "reason", "must be duplicate, fraudulent or requested_by_customer")
		err = v.Err()
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	refundID := payments.DerivedID(payments.RefundNS, s.d.Idempotency.Scope(r.Context()), idempotency.KeyFrom(r.Context()))
	rf, err := s.svc.Refund(r.Context(), id, refundID, owner(platform.Principal(r)), deref(req.Amount), req.Reason, answer("/refunds/"+refundID))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	w.Header().Set("Location", "/refunds/"+rf.ID)
	httpx.WriteJSON(w, http.StatusCreated, rf)
}

func (s *API) getRefund(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !ids.Valid(id) {
		problem.Write(w, r, payments.ErrNoRefund)
		return
	}
	rf, err := s.db().Refund(r.Context(), id, false)
	if err == nil && !platform.Principal(r).CanAccess(rf.UserID) {
		err = payments.ErrNoRefund
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, rf)
}

func (s *API) listRefunds(w http.ResponseWriter, r *http.Request) {
	id, err := pathPayment(r)
	var p *payments.Payment
	if err == nil {
		p, err = s.db().Payment(r.Context(), id, false)
	}
	if err == nil && !owner(platform.Principal(r)).Allows(p) {
		err = payments.ErrNotFound
	}
	var rs []*payments.Refund
	if err == nil {
		rs, err = s.db().Refunds(r.Context(), id)
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if rs == nil {
		rs = []*payments.Refund{}
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.List[*payments.Refund]{Data: rs})
}

type methodRequest struct {
	UserID   string `json:"user_id"`
	Token    string `json:"token"`
	Gateway  string `json:"gateway"`
	Brand    string `json:"brand"`
	Last4    string `json:"last4"`
	ExpMonth *int   `json:"exp_month"`
	ExpYear  *int   `json:"exp_year"`
	Default  bool   `json:"default"`
}

func (s *API) createMethod(w http.ResponseWriter, r *http.Request) {
	account, ok := canonicalID(r.PathValue("id"))
	if !ok {
		problem.Write(w, r, problem.New(problem.NotFound, "no such account"))
		return
	}
	var req methodRequest
	if err := httpx.DecodeJSON(r, &req); err != nil {
		problem.Write(w, r, err)
		return
	}
	acct, err := s.svc.AccountFor(r.Context(), platform.Principal(r), account)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	var v problem.Validator
	acct.CheckUser(&v, "user_id", req.UserID)
	v.Check(payments.ValidToken(req.Token), "token", "must be a gateway token (pm_…): billfn never stores card numbers")
	v.Check(req.Gateway == "" || s.svc.Gateways[req.Gateway] != nil, "gateway", "is not a configured gateway")
	v.Check(utf8.RuneCountInString(req.Brand) <= 30, "brand", "must be at most 30 characters")
	v.Check(req.Last4 == "" || (len(req.Last4) == 4 && isDigits(req.Last4)), "last4", "must be the last 4 digits")
	v.Check(req.ExpMonth == nil || (*req.ExpMonth >= 1 && *req.ExpMonth <= 12), "exp_month", "must be 1 to 12")
	v.Check(req.ExpYear == nil || (*req.ExpYear >= 2000 && *req.ExpYear <= 2200), "exp_year", "must be a four-digit year")
	if err := v.Err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	m := &payments.Method{ID: ids.New(), AccountID: account, UserID: acct.UserID, Gateway: payments.Nullable(req.Gateway), Token: req.Token,
		Brand: req.Brand, Last4: req.Last4, ExpMonth: req.ExpMonth, ExpYear: req.ExpYear, Default: req.Default,
		CreatedAt: s.svc.Now().UTC()}
	err = s.store.Fresh().Run(r.Context(), func(tx payments.Tx) error {
		if err := tx.InsertMethod(r.Context(), m); err != nil {
			return err
		}
		return tx.Record(r.Context(), idempotency.Response{Status: http.StatusCreated, Body: m,
			Location: "/accounts/" + account + "/payment-methods/" + m.ID})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	w.Header().Set("Location", "/accounts/"+account+"/payment-methods/"+m.ID)
	httpx.WriteJSON(w, http.StatusCreated, m)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (s *API) listMethods(w http.ResponseWriter, r *http.Request) {
	acct, err := s.svc.AccountFor(r.Context(), platform.Principal(r), r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	var after payments.MethodKey
	limit, ok, err := httpx.Paging(r, 20, 100, &after)
	if err == nil && ok {
		after.ID, err = httpx.CursorID(after.ID)
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	var afterp *payments.MethodKey
	if ok {
		afterp = &after
	}
	// Every method of the account is its owner's, whoever saved it.
	ms, err := s.db().Methods(r.Context(), acct.ID, "", afterp, limit)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(ms, limit, func(m *payments.Method) any { return payments.MethodKey{CreatedAt: m.CreatedAt, ID: m.ID} }))
}

// ownMethod loads the method of the path: 404 unless the caller may access
// the account of the path (its owner, an admin or a service) and the
// method belongs to that account.
func (s *API) ownMethod(ctx context.Context, q payments.Tx, r *http.Request) (*payments.Method, error) {
	acct, err := s.svc.AccountFor(ctx, platform.Principal(r), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	id, ok := canonicalID(r.PathValue("method"))
	if !ok {
		return nil, payments.ErrNoMethod
	}
	m, err := q.Method(ctx, acct.ID, id)
	if err != nil {
		return nil, err
	}
	if m.AccountID != acct.ID {
		return nil, payments.ErrNoMethod
	}
	return m, nil
}

func (s *API) deleteMethod(w http.ResponseWriter, r *http.Request) {
	var m *payments.Method
	err := s.store.Fresh().Run(r.Context(), func(tx payments.Tx) error {
		var err error
		if m, err = s.ownMethod(r.Context(), tx, r); err != nil {
			return err
		}
		if err := tx.DeleteMethod(r.Context(), m.ID); err != nil {
			return err
		}
		return tx.Record(r.Context(), idempotency.Response{Status: http.StatusOK,
			Body: map[string]any{"id": m.ID, "deleted": true}})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"id": m.ID, "deleted": true})
}

func (s *API) defaultMethod(w http.ResponseWriter, r *http.Request) {
	var m *payments.Method
	err := s.store.Fresh().Run(r.Context(), func(tx payments.Tx) error {
		var err error
		if m, err = s.ownMethod(r.Context(), tx, r); err != nil {
			return err
		}
		if err := tx.SetDefaultMethod(r.Context(), m); err != nil {
			return err
		}
		return tx.Record(r.Context(), idempotency.Response{Status: http.StatusOK, Body: m})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, m)
}

// deref is an optional amount's value, 0 when absent ("all").
func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}
