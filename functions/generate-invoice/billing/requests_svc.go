package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
)

// RequestedInvoice is one billfn.invoice.requested command as the api
// decoded it.
type RequestedInvoice struct {
	Event events.Event
	// In is the requested invoice; Err why its data could not be read.
	In  invoicing.CreateInvoiceIn
	Err error
	// Own is a request of this function's own POST /invoices (Prefer:
	// respond-async), checked when it was accepted.
	Own bool
}

// RequestOutcome is how one invoice request ended.
type RequestOutcome struct {
	Source, ID, Owner, Account string
	InvoiceID                  string
	Problem                    []byte // nil on success
}

// ApplyRequests creates the invoices of requested events in tx. A request
// that cannot be honoured (undecodable or invalid data, an unknown tax
// rate…) is a business outcome, not a poison event: it is recorded as
// failed, with its problem document, at GET /invoice-requests/{event id},
// so whoever asked can see why. Only a database failure makes the
// delivery retry.
//
// The invoice belongs to the account's owner, from the read model (read
// through for a fresh account), never to the user_id the event states.
// An outside producer's command that names an unknown account, a user_id
// or currency that is not the account's, or a frozen or closed account is
// refused: parked with its reason, nothing written. A request of our own
// POST /invoices (Prefer: respond-async), already checked when it was
// accepted and awaited by its client, is recorded as failed instead (its
// account was frozen in between). One a customer made is the customer's
// own invoice, as its synchronous POST /invoices would be
// (DraftedByCustomer): the event is ours, but what it asks for is the
// customer's word.
func (s *Service) ApplyRequests(ctx context.Context, tx Tx, reqs []RequestedInvoice) error {
	if len(reqs) == 0 {
		return nil
	}
	now := s.Clock()
	byCustomer, err := s.customerRequests(ctx, tx, reqs)
	if err != nil {
		return err
	}
	res := s.NewResolver(tx, now)
	memo := AccountMemo{}
	service := auth.Principal{Role: auth.RoleService}
	var (
		outs     []RequestOutcome
		invs     []*invoicing.Invoice
		finalize []bool
		idx      []int // outs index of each invoice
	)
	for i := range reqs {
		rq := &reqs[i]
		ev := rq.Event
		var d *invoicing.InvoiceDraft
		err := rq.Err
		o := RequestOutcome{Source: ev.Source(), ID: ev.ID(), Account: rq.In.AccountID}
		if err == nil {
			d, err = s.ParseCreate(ctx, tx, service, memo, &rq.In, "", now)
		}
		if d != nil {
			o.Owner = d.Inv.UserID // from the account: who may read the request
			d.Inv.DraftedByCustomer = rq.Own && byCustomer[ev.ID()]
		}
		if err == nil {
			err = res.Draft(ctx, d)
		}
		if err != nil {
			if !s.refused(err) {
				return err // the database or the read-through, not the request: retry
			}
			if isAccountRefusal(err) && !rq.Own {
				return events.Permanent(fmt.Errorf("%s %s from %s refused: %w", ev.Type(), ev.ID(), ev.Source(), err))
			}
			o.Problem = s.describe(err)
			outs = append(outs, o)
			continue
		}
		o.InvoiceID = d.Inv.ID
		idx = append(idx, len(outs))
		outs = append(outs, o)
		invs = append(invs, d.Inv)
		finalize = append(finalize, d.AutoFinalize)
	}
	if len(invs) > 0 {
		msgs, err := s.PersistNew(ctx, tx, invs, finalize, now)
		if err != nil {
			if s.refused(err) && len(invs) == 1 {
				// A finalization rule (due date passed): the request failed.
				outs[idx[0]].Problem = s.describe(err)
				outs[idx[0]].InvoiceID = ""
				return tx.CompleteRequests(ctx, outs, now)
			}
			return err
		}
		if err := res.Flush(ctx); err != nil {
			return err
		}
		if err := tx.Emit(ctx, msgs); err != nil {
			return err
		}
	}
	if err := tx.CompleteRequests(ctx, outs, now); err != nil {
		return err
	}
	s.touched(ctx, nil)
	return nil
}

// customerRequests is the set of the ids of those of our own requests in
// reqs a customer made (RequestInvoices' byCustomer); another producer's
// command is never a customer's.
func (s *Service) customerRequests(ctx context.Context, tx Tx, reqs []RequestedInvoice) (map[string]bool, error) {
	var own []string
	for _, rq := range reqs {
		if rq.Own {
			own = append(own, rq.Event.ID())
		}
	}
	if len(own) == 0 {
		return nil, nil
	}
	return tx.CustomerRequests(ctx, events.Source(s.cfg.Source), own)
}

// describe is the problem document of a refusal, as recorded with a
// failed request.
func (s *Service) describe(err error) []byte {
	if s.Describe == nil {
		return []byte(`{"code":"` + string(apperr.CodeOf(err)) + `"}`)
	}
	return s.Describe(err)
}

// InvoiceRequest is the state of an asynchronous invoice creation
// (GET /invoice-requests/{id}).
type InvoiceRequest struct {
	Object      string          `json:"object"`
	ID          string          `json:"id"`
	Status      string          `json:"status"`
	AccountID   *string         `json:"account_id"`
	UserID      *string         `json:"user_id"`
	InvoiceID   *string         `json:"invoice_id"`
	Problem     json.RawMessage `json:"problem,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	CompletedAt *time.Time      `json:"completed_at"`
}

// RequestInvoices is the asynchronous form of creation (Prefer:
// respond-async) for already parsed bodies (their user_id the account's
// owner): each invoice becomes a pending request and a
// billfn.invoice.requested event (to billing-events), which comes back
// through the trigger and does the work exactly as the synchronous path
// would (ApplyRequests): byCustomer when a customer asked, whose invoice
// is then its own. done makes the answer of the pending requests.
func (s *Service) RequestInvoices(ctx context.Context, ins []invoicing.CreateInvoiceIn, byCustomer bool, now time.Time, done Answer) ([]InvoiceRequest, error) {
	n := len(ins)
	ids, owners, accounts := make([]string, n), make([]string, n), make([]string, n)
	reqs := make([]InvoiceRequest, n)
	msgs := make([]outbox.Message, n)
	for i := range ins {
		ev := events.Must(events.New(ctx, s.cfg.Source, events.TypeInvoiceRequested, "", ins[i]))
		ev.SetSubject(ev.ID())
		ids[i], owners[i], accounts[i] = ev.ID(), ins[i].UserID, strings.ToLower(ins[i].AccountID)
		msgs[i] = outbox.Message{Topic: events.TopicBilling, Key: accounts[i], Event: ev}
		reqs[i] = InvoiceRequest{Object: "invoice_request", ID: ev.ID(), Status: "pending", AccountID: ptr(accounts[i]),
			UserID: ptr(owners[i]), CreatedAt: now}
	}
	err := s.store.InTx(ctx, func(tx Tx) error {
		if err := tx.InsertPendingRequests(ctx, events.Source(s.cfg.Source), ids, owners, accounts, byCustomer, now); err != nil {
			return err
		}
		if err := tx.Send(ctx, msgs...); err != nil {
			return err
		}
		return complete(ctx, tx, done, reqs)
	})
	return reqs, err
}

// InvoiceRequestFor is invoice request id as p may see it: someone else's
// is not_found, like a missing one.
func (s *Service) InvoiceRequestFor(ctx context.Context, p auth.Principal, id string) (*InvoiceRequest, error) {
	req, err := s.store.Request(ctx, id)
	if err == nil && !p.Privileged() && (req.UserID == nil || *req.UserID != p.Subject) {
		err = invoicing.NotFound("invoice request", id)
	}
	return req, err
}
