package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/render"
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

// HTTP handlers: decode → authorize → domain code in a transaction →
// encode. Writes complete their Idempotency-Key in the business
// transaction and emit their events through the outbox.

// decodeOptional decodes a JSON body when there is one (actions such as
// /pay take an optional body).
func decodeOptional(r *http.Request, dst any) error {
	b, err := httpx.ReadBody(r)
	if err != nil {
		return problem.From(err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	if err := httpx.RequireJSON(r); err != nil {
		return err
	}
	return httpx.Unmarshal(b, dst)
}

// ---- invoices: create ----

func (s *Service) createInvoice(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	var in invoicing.CreateInvoiceIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	now := s.b.Clock()
	d, err := s.b.ParseCreate(r.Context(), nil, p, nil, &in, "", now)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	ctx = eventsCtx(ctx, r)
	if httpx.RespondAsync(r) {
		in.UserID = d.Inv.UserID
		s.createAsync(ctx, w, r, []invoicing.CreateInvoiceIn{in}, false, now)
		return
	}
	err = s.b.CreateInvoice(ctx, d, now, answer(http.StatusCreated, "/invoices/"+d.Inv.ID))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	w.Header().Set("Location", "/invoices/"+d.Inv.ID)
	httpx.WriteJSON(w, http.StatusCreated, d.Inv)
}

type batchIn struct {
	Invoices []invoicing.CreateInvoiceIn `json:"invoices"`
}

// createInvoiceBatch creates (and, per item, finalizes) up to BatchMax
// invoices in one transaction: all or nothing, errors point into
// invoices/<i>/. This is the bulk path for loads (cmd/loadgen).
func (s *Service) createInvoiceBatch(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	var in batchIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	now := s.b.Clock()
	drafts, err := s.b.ParseBatch(r.Context(), p, in.Invoices, now)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	ctx = eventsCtx(ctx, r)
	if httpx.RespondAsync(r) {
		for i, d := range drafts {
			in.Invoices[i].UserID = d.Inv.UserID
		}
		s.createAsync(ctx, w, r, in.Invoices, true, now)
		return
	}
	out, err := s.b.CreateInvoices(ctx, drafts, now, func(body any) any {
		return idempotency.Response{Status: http.StatusCreated, Body: httpx.List[events.Invoice]{Data: body.([]events.Invoice)}}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	httpx.WriteJSON(w, http.StatusCreated, httpx.List[events.Invoice]{Data: out})
}

// createAsync is the Prefer: respond-async form: each invoice becomes a
// pending request and a billfn.invoice.requested event (to billing-events);
// the event comes back through the trigger and does the work exactly as the
// synchronous path would. 202 + Location of the request.
func (s *Service) createAsync(ctx context.Context, w http.ResponseWriter, r *http.Request, ins []invoicing.CreateInvoiceIn, batch bool, now time.Time) {
	// body is the answer: the request, or the list of a batch's.
	body := func(reqs []billing.InvoiceRequest) (any, string) {
		if batch {
			return httpx.List[billing.InvoiceRequest]{Data: reqs}, ""
		}
		return reqs[0], "/invoice-requests/" + reqs[0].ID
	}
	reqs, err := s.b.RequestInvoices(ctx, ins, !platform.Principal(r).Privileged(), now, func(v any) any {
		b, loc := body(v.([]billing.InvoiceRequest))
		return idempotency.Response{Status: http.StatusAccepted, Body: b, Location: loc}
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	httpx.PreferenceApplied(w, "respond-async")
	b, loc := body(reqs)
	if loc != "" {
		w.Header().Set("Location", loc)
	}
	httpx.WriteJSON(w, http.StatusAccepted, b)
}

func (s *Service) getInvoiceRequest(w http.ResponseWriter, r *http.Request) {
	req, err := s.b.InvoiceRequestFor(r.Context(), platform.Principal(r), r.PathValue("id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, req)
}

// ---- invoices: read ----

// cachedInvoice is an invoice as cached in Redis: its owner (to authorize
// without decoding) and its JSON, served as is.
type cachedInvoice struct {
	Owner string          `json:"o"`
	Body  json.RawMessage `json:"b"`
}

// invoiceDoc reads invoice id through the cache, under its canonical
// (lower-case) id: the one every change invalidates. An id in another case
// had an entry of its own that no change reached.
func (s *Service) invoiceDoc(ctx context.Context, id string) (cachedInvoice, error) {
	canon, ok := ids.Canonical(id)
	if !ok {
		return cachedInvoice{}, invoicing.NotFound("invoice", id)
	}
	return redis.GetOrLoad(ctx, s.invCache, canon, s.cfg.CacheTTL.D(), func(ctx context.Context) (cachedInvoice, error) {
		inv, err := s.b.Invoice(ctx, canon)
		if err != nil {
			return cachedInvoice{}, err
		}
		b, err := json.Marshal(inv)
		return cachedInvoice{Owner: inv.UserID, Body: b}, err
	})
}

func (s *Service) getInvoice(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	id, format := r.PathValue("id"), ""
	if i := strings.LastIndexByte(id, '.'); i > 0 {
		id, format = id[:i], id[i+1:]
	}
	doc, err := s.invoiceDoc(r.Context(), id)
	if err == nil && !p.CanAccess(doc.Owner) {
		err = invoicing.NotFound("invoice", id)
	}
	if err == nil && format != "" && format != "pdf" && format != "html" {
		err = problem.New(problem.NotFound, "invoices render as .pdf or .html")
	}
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if format == "" {
		w.Header().Set("Cache-Control", "private, no-cache")
		httpx.WriteRaw(w, http.StatusOK, doc.Body)
		return
	}
	var inv invoicing.Invoice
	if err := json.Unmarshal(doc.Body, &inv); err != nil {
		problem.Write(w, r, err)
		return
	}
	name := inv.ID
	if inv.Number != nil {
		name = *inv.Number
	}
	var buf bytes.Buffer
	if format == "pdf" {
		err = render.PDF(&buf, &inv)
		w.Header().Set("Content-Type", "application/pdf")
	} else {
		err = render.HTML(&buf, &inv)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	}
	if err != nil {
		w.Header().Del("Content-Type")
		problem.Write(w, r, err)
		return
	}
	w.Header().Set("Content-Disposition", `inline; filename="`+name+`.`+format+`"`)
	w.Header().Set("Cache-Control", "private, no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

var invoiceStatuses = map[string]bool{invoicing.StatusDraft: true, invoicing.StatusOpen: true, invoicing.StatusPaid: true, invoicing.StatusVoid: true, invoicing.StatusUncollectible: true}

func (s *Service) listInvoices(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	q := r.URL.Query()
	var v problem.Validator
	f := billing.InvoiceFilter{AccountID: strings.ToLower(q.Get("account_id")), SubscriptionID: strings.ToLower(q.Get("subscription_id")),
		Status: q.Get("status")}
	check := func(ok bool, name, detail string) {
		if !ok {
			v.Add(problem.Param(name, detail))
		}
	}
	check(f.AccountID == "" || ids.Valid(f.AccountID), "account_id", "must be a UUID")
	check(f.SubscriptionID == "" || ids.Valid(f.SubscriptionID), "subscription_id", "must be a UUID")
	check(f.Status == "" || invoiceStatuses[f.Status], "status", "must be draft, open, paid, void or uncollectible")
	if d := q.Get("due_before"); d != "" {
		t, err := time.Parse(time.DateOnly, d)
		check(err == nil, "due_before", "must be a date: YYYY-MM-DD")
		f.DueBefore = &t
	}
	if u := strings.ToLower(q.Get("user_id")); u != "" {
		check(ids.Valid(u), "user_id", "must be a UUID")
		f.Owner = u
	}
	if !p.Privileged() {
		check(f.Owner == "" || f.Owner == p.Subject, "user_id", "a customer lists only its own invoices")
		f.Owner = p.Subject
	}
	limit, after, err := httpx.PagingByID(r, 20, 100)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	f.After = after
	if err := v.Err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	f.Limit = limit + 1
	invs, err := s.b.Invoices(r.Context(), p, f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(invs, limit, func(inv *invoicing.Invoice) any { return httpx.IDCursor{ID: inv.ID} }))
}

// ---- invoices: changes ----

// answer is the idempotent answer of a request: status and the use
// case's result, with location when given.
func answer(status int, location string) billing.Answer {
	return func(body any) any { return idempotency.Response{Status: status, Body: body, Location: location} }
}

// change runs a change of the invoice of the path and answers 200 with
// the invoice (recorded as the request's answer in the change's
// transaction).
func (s *Service) change(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, p auth.Principal, id string, done billing.Answer) (*invoicing.Invoice, error)) {
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	ctx = eventsCtx(ctx, r)
	inv, err := fn(ctx, platform.Principal(r), r.PathValue("id"), answer(http.StatusOK, ""))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.invalidate([]string{inv.ID}, nil)
	httpx.WriteJSON(w, http.StatusOK, inv)
}

func (s *Service) patchInvoice(w http.ResponseWriter, r *http.Request) {
	var in invoicing.PatchInvoiceIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.change(w, r, func(ctx context.Context, p auth.Principal, id string, done billing.Answer) (*invoicing.Invoice, error) {
		return s.b.PatchInvoice(ctx, p, id, &in, done)
	})
}

func (s *Service) addLines(w http.ResponseWriter, r *http.Request) {
	var in invoicing.AddLinesIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.change(w, r, func(ctx context.Context, p auth.Principal, id string, done billing.Answer) (*invoicing.Invoice, error) {
		return s.b.AddLines(ctx, p, id, &in, done)
	})
}

func (s *Service) finalizeInvoice(w http.ResponseWriter, r *http.Request) {
	s.action(w, r, s.b.FinalizeInvoice)
}

func (s *Service) voidInvoice(w http.ResponseWriter, r *http.Request) {
	s.action(w, r, s.b.VoidInvoice)
}

func (s *Service) markUncollectibleHandler(w http.ResponseWriter, r *http.Request) {
	s.action(w, r, s.b.MarkUncollectible)
}

// action is change for a route that takes no member: a body, when there
// is one, must be empty JSON ({}), since a member sent ({"auto_advance":
// false}, {"memo": …}) would be ignored while the invoice changed.
func (s *Service) action(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, p auth.Principal, id string, done billing.Answer) (*invoicing.Invoice, error)) {
	var none struct{}
	if err := decodeOptional(r, &none); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.change(w, r, fn)
}

// payInvoice records a payment made outside billfn (a bank transfer, a
// cheque): amount defaults to everything due.
func (s *Service) payInvoice(w http.ResponseWriter, r *http.Request) {
	var in billing.PayIn
	if err := decodeOptional(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.change(w, r, func(ctx context.Context, p auth.Principal, id string, done billing.Answer) (*invoicing.Invoice, error) {
		return s.b.PayInvoice(ctx, p, id, in, done)
	})
}
