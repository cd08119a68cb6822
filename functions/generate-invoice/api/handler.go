package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/render"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/outbox"
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
	b, err := io.ReadAll(r.Body)
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
	now := s.clock()
	d, err := s.parseCreate(r.Context(), nil, p, nil, &in, "", now)
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
	err = s.st.Pipelined(ctx, func(tx *store.Tx) error {
		res := s.newResolver(tx, now)
		if err := res.draft(ctx, d); err != nil {
			return err
		}
		msgs, err := s.persistNew(ctx, tx, []*invoicing.Invoice{d.Inv}, []bool{d.AutoFinalize}, now)
		if err != nil {
			return err
		}
		if err := res.flush(ctx); err != nil {
			return err
		}
		if err := tx.Emit(ctx, msgs); err != nil {
			return err
		}
		return tx.Complete(ctx, idempotency.Response{Status: http.StatusCreated, Body: d.Inv, Location: "/invoices/" + d.Inv.ID})
	})
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
	if len(in.Invoices) == 0 || len(in.Invoices) > s.cfg.BatchMax {
		problem.Write(w, r, problem.Invalid(problem.Field("invoices", "must hold 1 to "+strconv.Itoa(s.cfg.BatchMax)+" invoices")))
		return
	}
	now := s.clock()
	drafts := make([]*invoicing.InvoiceDraft, len(in.Invoices))
	var fields []problem.FieldError
	var rule error
	memo := accountMemo{}
	for i := range in.Invoices {
		d, err := s.parseCreate(r.Context(), nil, p, memo, &in.Invoices[i], "invoices/"+strconv.Itoa(i)+"/", now)
		var pe *problem.Error
		if errors.As(err, &pe) && pe.Code == problem.ValidationFailed {
			fields = append(fields, pe.Errors...)
		} else if err != nil && rule == nil {
			rule = err
		}
		drafts[i] = d
	}
	if len(fields) > 0 {
		problem.Write(w, r, problem.Invalid(fields...))
		return
	}
	if rule != nil {
		problem.Write(w, r, rule)
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
	out := make([]events.Invoice, len(drafts))
	err := s.st.Pipelined(ctx, func(tx *store.Tx) error {
		res := s.newResolver(tx, now)
		invs := make([]*invoicing.Invoice, len(drafts))
		final := make([]bool, len(drafts))
		for i, d := range drafts {
			if err := res.draft(ctx, d); err != nil {
				return err
			}
			invs[i], final[i] = d.Inv, d.AutoFinalize
		}
		msgs, err := s.persistNew(ctx, tx, invs, final, now)
		if err != nil {
			return err
		}
		if err := res.flush(ctx); err != nil {
			return err
		}
		if err := tx.Emit(ctx, msgs); err != nil {
			return err
		}
		for i, inv := range invs {
			out[i] = invoicing.Summarize(inv)
		}
		return tx.Complete(ctx, idempotency.Response{Status: http.StatusCreated, Body: httpx.List[events.Invoice]{Data: out}})
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
	n := len(ins)
	ids, owners, accounts := make([]string, n), make([]string, n), make([]string, n)
	reqs := make([]store.InvoiceRequest, n)
	msgs := make([]outbox.Message, n)
	for i := range ins {
		ev := events.Must(events.New(ctx, FunctionName, events.TypeInvoiceRequested, "", ins[i]))
		ev.SetSubject(ev.ID())
		ids[i], owners[i], accounts[i] = ev.ID(), ins[i].UserID, strings.ToLower(ins[i].AccountID)
		msgs[i] = outbox.Message{Topic: events.TopicBilling, Key: accounts[i], Event: ev}
		reqs[i] = store.InvoiceRequest{Object: "invoice_request", ID: ev.ID(), Status: "pending", AccountID: ptr(accounts[i]),
			UserID: ptr(owners[i]), CreatedAt: now}
	}
	var body any = reqs[0]
	loc := "/invoice-requests/" + ids[0]
	if batch {
		body, loc = httpx.List[store.InvoiceRequest]{Data: reqs}, ""
	}
	err := s.st.InTx(ctx, func(tx *store.Tx) error {
		if err := store.InsertPendingRequests(ctx, tx, events.Source(FunctionName), ids, owners, accounts, now); err != nil {
			return err
		}
		if err := tx.Send(ctx, msgs...); err != nil {
			return err
		}
		return tx.Complete(ctx, idempotency.Response{Status: http.StatusAccepted, Body: body, Location: loc})
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	s.d.Publisher.Kick()
	httpx.PreferenceApplied(w, "respond-async")
	if loc != "" {
		w.Header().Set("Location", loc)
	}
	httpx.WriteJSON(w, http.StatusAccepted, body)
}

func (s *Service) getInvoiceRequest(w http.ResponseWriter, r *http.Request) {
	p := platform.Principal(r)
	id := r.PathValue("id")
	req, err := store.GetRequest(r.Context(), s.d.Pool, id)
	if err == nil && !p.Privileged() && (req.UserID == nil || *req.UserID != p.Subject) {
		err = invoicing.NotFound("invoice request", id)
	}
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

func (s *Service) invoiceDoc(ctx context.Context, id string) (cachedInvoice, error) {
	if !ids.Valid(id) {
		return cachedInvoice{}, invoicing.NotFound("invoice", id)
	}
	return redis.GetOrLoad(ctx, s.invCache, id, s.cfg.CacheTTL.D(), func(ctx context.Context) (cachedInvoice, error) {
		inv, err := store.GetInvoice(ctx, s.d.Pool, id, false)
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
	f := store.InvoiceFilter{AccountID: strings.ToLower(q.Get("account_id")), SubscriptionID: strings.ToLower(q.Get("subscription_id")),
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
	// A customer naming another's account or subscription gets the 404
	// an unknown one gets, not an empty page.
	if f.AccountID != "" {
		if err := s.ownedAccount(r.Context(), p, f.AccountID); err != nil {
			problem.Write(w, r, err)
			return
		}
	}
	if f.SubscriptionID != "" && !p.Privileged() {
		if sub, err := store.GetSub(r.Context(), s.d.Pool, f.SubscriptionID, false); err != nil || !p.CanAccess(sub.UserID) {
			problem.Write(w, r, invoicing.NotFound("subscription", f.SubscriptionID))
			return
		}
	}
	f.Limit = limit + 1
	invs, err := store.ListInvoices(r.Context(), s.d.Pool, f)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, httpx.Page(invs, limit, func(inv *invoicing.Invoice) any { return httpx.IDCursor{ID: inv.ID} }))
}

// ---- invoices: changes ----

// mutate runs fn on the locked invoice of the path, after authorization,
// writes it and its events, and answers 200 with the invoice.
func (s *Service) mutate(w http.ResponseWriter, r *http.Request, fn func(ctx context.Context, tx *store.Tx, p auth.Principal, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error)) {
	p := platform.Principal(r)
	id := r.PathValue("id")
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	ctx = eventsCtx(ctx, r)
	now := s.clock()
	inv, err := s.st.UpdateInvoice(ctx, id, func(tx *store.Tx, inv *invoicing.Invoice) ([]invoicing.Event, error) {
		if err := authorizeOwner(p.CanAccess(inv.UserID), "invoice", id); err != nil {
			return nil, err
		}
		evs, err := fn(ctx, tx, p, inv, now)
		if err != nil {
			return nil, err
		}
		return evs, tx.Complete(ctx, idempotency.Response{Status: http.StatusOK, Body: inv})
	})
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
	s.mutate(w, r, func(ctx context.Context, tx *store.Tx, p auth.Principal, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		if err := invoicing.RequireDraft(inv); err != nil {
			return nil, err
		}
		var v problem.Validator
		var rule *problem.Error
		if in.Customer != nil {
			inv.Customer = invoicing.ParseCustomer(&v, "customer", in.Customer)
		}
		if in.Memo != nil {
			v.Check(invoicing.TextOK(*in.Memo, invoicing.MaxMemo), "memo", "must be at most 5000 characters")
			inv.Memo = *in.Memo
		}
		if in.Metadata != nil {
			invoicing.CheckMetadata(&v, "metadata", *in.Metadata)
			inv.Metadata = *in.Metadata
			if inv.Metadata == nil {
				inv.Metadata = map[string]string{}
			}
		}
		if in.CollectionMethod != nil {
			v.Check(*in.CollectionMethod == invoicing.ChargeAutomatically || *in.CollectionMethod == invoicing.SendInvoice, "collection_method",
				"must be charge_automatically or send_invoice")
			inv.CollectionMethod = *in.CollectionMethod
		}
		if in.NumberPrefix != nil {
			v.Check(invoicing.ValidPrefix(*in.NumberPrefix), "number_prefix", "must be 1-10 upper-case letters and digits, starting with a letter")
			inv.NumberPrefix = *in.NumberPrefix
		}
		if in.NetTermsDays.Set || in.DueDate.Set {
			var net *int
			var due *string
			if in.NetTermsDays.Set && !in.NetTermsDays.Null {
				net = &in.NetTermsDays.V
			}
			if in.DueDate.Set && !in.DueDate.Null {
				due = &in.DueDate.V
			}
			if !in.NetTermsDays.Set && net == nil && inv.NetTermsDays != nil && due == nil {
				net = inv.NetTermsDays
			}
			if !in.DueDate.Set && inv.DueDate != nil && net == nil {
				due = ptr(inv.DueDate.Format(time.DateOnly))
			}
			rule = invoicing.ParseTerms(&v, "", net, due, inv, now)
		}
		var lines []invoicing.LineDraft
		if in.LineItems != nil {
			v.Check(len(*in.LineItems) <= s.cfg.MaxLines, "line_items", "at most "+strconv.Itoa(s.cfg.MaxLines)+" lines per invoice")
			for i, li := range *in.LineItems {
				ld, r := invoicing.ParseLine(&v, "line_items/"+strconv.Itoa(i), li, inv.Currency, p.Privileged())
				if r != nil && r.Code == problem.Forbidden {
					return nil, r
				}
				if r != nil && rule == nil {
					rule = r
				}
				lines = append(lines, ld)
			}
		}
		var adhoc []invoicing.Discount
		if in.Discounts != nil {
			if !p.Privileged() {
				return nil, problem.New(problem.Forbidden, "only admin and service callers set discounts; customers may apply a coupon")
			}
			v.Check(len(*in.Discounts) <= invoicing.MaxDiscounts, "discounts", "at most 5 invoice discounts")
			for i, di := range *in.Discounts {
				d, r := invoicing.ParseDiscount(&v, "discounts/"+strconv.Itoa(i), di, inv.Currency)
				if r != nil && rule == nil {
					rule = r
				}
				adhoc = append(adhoc, d)
			}
		}
		if in.Coupon.Set && !in.Coupon.Null {
			v.Check(invoicing.ValidCouponID(in.Coupon.V), "coupon", "must be a coupon id")
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		if rule != nil {
			return nil, rule
		}
		res := s.newResolver(tx, now)
		if in.LineItems != nil {
			resolved, err := res.lines(ctx, "", lines, 0)
			if err != nil {
				return nil, err
			}
			inv.Lines = resolved
		}
		// Invoice discounts: the ad-hoc ones first, then the coupon.
		var coupon []invoicing.Discount
		for _, d := range inv.Discounts {
			if d.Coupon != "" {
				coupon = append(coupon, d)
			} else if in.Discounts == nil {
				adhoc = append(adhoc, d)
			}
		}
		if in.Coupon.Set {
			coupon, inv.Coupon = nil, nil
			if !in.Coupon.Null {
				d, err := res.coupon(ctx, "", in.Coupon.V, inv)
				if err != nil {
					return nil, err
				}
				coupon, inv.Coupon = []invoicing.Discount{d}, ptr(in.Coupon.V)
				res.redeem[in.Coupon.V]++
			}
		}
		inv.Discounts = append(adhoc, coupon...)
		if inv.Discounts == nil {
			inv.Discounts = []invoicing.Discount{}
		}
		if err := inv.Recompute(); err != nil {
			return nil, err
		}
		inv.UpdatedAt = now
		if err := res.flush(ctx); err != nil {
			return nil, err
		}
		if in.LineItems != nil {
			if err := store.ReplaceLines(ctx, tx, inv); err != nil {
				return nil, err
			}
		} else if err := store.ReplaceLines(ctx, tx, inv); err != nil {
			// A discount change moves the lines' computed amounts too.
			return nil, err
		}
		return nil, nil
	})
}

func (s *Service) addLines(w http.ResponseWriter, r *http.Request) {
	var in invoicing.AddLinesIn
	if err := httpx.DecodeJSON(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.mutate(w, r, func(ctx context.Context, tx *store.Tx, p auth.Principal, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		if err := invoicing.RequireDraft(inv); err != nil {
			return nil, err
		}
		var v problem.Validator
		var rule *problem.Error
		v.Check(len(in.LineItems) > 0, "line_items", "must hold at least one line")
		v.Check(len(inv.Lines)+len(in.LineItems) <= s.cfg.MaxLines, "line_items",
			"the invoice would have more than "+strconv.Itoa(s.cfg.MaxLines)+" lines")
		var lines []invoicing.LineDraft
		for i, li := range in.LineItems {
			ld, r := invoicing.ParseLine(&v, "line_items/"+strconv.Itoa(i), li, inv.Currency, p.Privileged())
			if r != nil && r.Code == problem.Forbidden {
				return nil, r
			}
			if r != nil && rule == nil {
				rule = r
			}
			lines = append(lines, ld)
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		if rule != nil {
			return nil, rule
		}
		resolved, err := s.newResolver(tx, now).lines(ctx, "", lines, 0)
		if err != nil {
			return nil, err
		}
		inv.Lines = append(inv.Lines, resolved...)
		if err := inv.Recompute(); err != nil {
			return nil, err
		}
		inv.UpdatedAt = now
		return nil, store.ReplaceLines(ctx, tx, inv)
	})
}

func (s *Service) finalizeInvoice(w http.ResponseWriter, r *http.Request) {
	s.mutate(w, r, func(ctx context.Context, tx *store.Tx, p auth.Principal, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		if err := invoicing.CheckFinalize(inv, now, s.cfg.DefaultNetDays); err != nil {
			return nil, err
		}
		// Finalizing asks capture-payment to charge: not on a frozen or closed account.
		if err := s.chargeable(ctx, tx, inv.AccountID); err != nil {
			return nil, err
		}
		return invoicing.Finalize(ctx, tx, []*invoicing.Invoice{inv}, now)
	})
}

func (s *Service) voidInvoice(w http.ResponseWriter, r *http.Request) {
	s.mutate(w, r, func(ctx context.Context, tx *store.Tx, p auth.Principal, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		return invoicing.Void(inv, now)
	})
}

func (s *Service) markUncollectibleHandler(w http.ResponseWriter, r *http.Request) {
	s.mutate(w, r, func(ctx context.Context, tx *store.Tx, p auth.Principal, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		return invoicing.MarkUncollectible(inv, now)
	})
}

type payIn struct {
	Amount    *int64 `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

// payInvoice records a payment made outside billfn (a bank transfer, a
// cheque): amount defaults to everything due.
func (s *Service) payInvoice(w http.ResponseWriter, r *http.Request) {
	var in payIn
	if err := decodeOptional(r, &in); err != nil {
		problem.Write(w, r, err)
		return
	}
	var v problem.Validator
	v.Check(in.Amount == nil || *in.Amount > 0, "amount", "must be a positive amount in minor units")
	v.Check(invoicing.TextOK(in.Reference, invoicing.MaxName), "reference", "must be at most 200 characters")
	if err := v.Err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	s.mutate(w, r, func(ctx context.Context, tx *store.Tx, p auth.Principal, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		if inv.Status != invoicing.StatusOpen && inv.Status != invoicing.StatusUncollectible {
			return nil, problem.New(invoicing.CodeInvoiceNotOpen, "invoice %s is %s; only an open or uncollectible invoice can be paid", inv.ID, inv.Status)
		}
		if in.Currency != "" {
			c, err := money.ParseCurrency(in.Currency)
			if err != nil {
				return nil, problem.Invalid(problem.Field("currency", "must be an ISO 4217 code"))
			}
			if c != inv.Currency {
				return nil, invoicing.CurrencyMismatch("currency", c, inv.Currency)
			}
		}
		amount := inv.AmountDue
		if in.Amount != nil {
			amount = *in.Amount
		}
		if amount > inv.AmountDue {
			return nil, (&problem.Error{Code: invoicing.CodeAmountExceedsDue, Detail: "the invoice has " + strconv.FormatInt(inv.AmountDue, 10) + " due",
				Errors: []problem.FieldError{problem.Field("amount", "must be at most amount_due")}}).With("amount_due", inv.AmountDue)
		}
		if err := tx.RecordOutOfBandPayment(ctx, inv.ID, "oob_"+ids.New(), amount, string(inv.Currency), in.Reference); err != nil {
			return nil, err
		}
		inv.AmountPaid += amount // ≤ amount_due ≤ total: no overflow
		return invoicing.Settle(inv, now, now), nil
	})
}
