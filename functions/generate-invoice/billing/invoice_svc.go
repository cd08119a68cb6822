package billing

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
)

// ---- invoices: create ----

// CreateInvoice resolves a parsed draft (tax rates, coupon), writes it,
// finalized at once when it asks to be, with its events and the answer
// done makes of it, in one transaction: the transaction of the
// concurrent calls' invoices too (create_group.go).
func (s *Service) CreateInvoice(ctx context.Context, d *invoicing.InvoiceDraft, now time.Time, done Answer) error {
	return s.createGrouped(&createCall{ctx: ctx, d: d, now: now, done: done, wake: make(chan struct{}, 1)})
}

// create resolves drafts, writes their invoices (finalizing those that
// ask), counts the coupons' redemptions and emits the events, in tx.
func (s *Service) create(ctx context.Context, tx Tx, drafts []*invoicing.InvoiceDraft, now time.Time) error {
	res := s.NewResolver(tx, now)
	invs := make([]*invoicing.Invoice, len(drafts))
	final := make([]bool, len(drafts))
	for i, d := range drafts {
		if err := res.Draft(ctx, d); err != nil {
			return err
		}
		invs[i], final[i] = d.Inv, d.AutoFinalize
	}
	msgs, err := s.PersistNew(ctx, tx, invs, final, now)
	if err != nil {
		return err
	}
	if err := res.Flush(ctx); err != nil {
		return err
	}
	return tx.Emit(ctx, msgs)
}

// ParseBatch validates the creation bodies of a batch for p: every bad
// field of every invoice at once (pointing into invoices/<i>/), else the
// first rule one of them breaks.
func (s *Service) ParseBatch(ctx context.Context, p auth.Principal, ins []invoicing.CreateInvoiceIn, now time.Time) ([]*invoicing.InvoiceDraft, error) {
	if len(ins) == 0 || len(ins) > s.cfg.BatchMax {
		return nil, apperr.Invalid(apperr.Field("invoices", "must hold 1 to "+strconv.Itoa(s.cfg.BatchMax)+" invoices"))
	}
	drafts := make([]*invoicing.InvoiceDraft, len(ins))
	var fields []apperr.FieldError
	var rule error
	memo, err := s.knownAccounts(ctx, ins)
	if err != nil {
		return nil, err
	}
	for i := range ins {
		d, err := s.ParseCreate(ctx, nil, p, memo, &ins[i], "invoices/"+strconv.Itoa(i)+"/", now)
		var pe *apperr.Error
		if errors.As(err, &pe) && pe.Code == apperr.ValidationFailed {
			fields = append(fields, pe.Errors...)
		} else if err != nil && rule == nil {
			rule = err
		}
		drafts[i] = d
	}
	if len(fields) > 0 {
		return nil, apperr.Invalid(fields...)
	}
	if rule != nil {
		return nil, rule
	}
	return drafts, nil
}

// knownAccounts is a memo of the facts the read model holds of the
// accounts ins name, read in one query: a batch names up to BatchMax
// accounts, and each looked up alone was a round trip and a transaction
// of its own. An account it does not hold yet is looked up (read through)
// as before, and a memo's facts serve only a caller who may see them
// (billable).
func (s *Service) knownAccounts(ctx context.Context, ins []invoicing.CreateInvoiceIn) (AccountMemo, error) {
	named := make([]string, len(ins))
	for i := range ins {
		named[i] = ins[i].AccountID
	}
	known, err := s.accts.Known(ctx, named)
	return AccountMemo(known), err
}

// CreateInvoices is CreateInvoice for the drafts of a batch: all or
// nothing, in one transaction. It returns their summaries (the answer
// done makes of them is recorded).
func (s *Service) CreateInvoices(ctx context.Context, drafts []*invoicing.InvoiceDraft, now time.Time, done Answer) ([]events.Invoice, error) {
	out := make([]events.Invoice, len(drafts))
	err := s.store.Pipelined(ctx, func(tx Tx) error {
		if err := s.create(ctx, tx, drafts, now); err != nil {
			return err
		}
		for i, d := range drafts {
			out[i] = invoicing.Summarize(d.Inv)
		}
		return complete(ctx, tx, done, out)
	})
	return out, err
}

// ---- invoices: changes ----

// change runs fn on locked invoice id, after checking that p may see it,
// and writes it with its events and the answer done makes of it.
func (s *Service) change(ctx context.Context, p auth.Principal, id string, done Answer, fn func(ctx context.Context, tx Tx, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error)) (*invoicing.Invoice, error) {
	now := s.Clock()
	return s.store.UpdateInvoice(ctx, id, func(tx Tx, inv *invoicing.Invoice) ([]invoicing.Event, error) {
		if err := authorizeOwner(p.CanAccess(inv.UserID), "invoice", id); err != nil {
			return nil, err
		}
		evs, err := fn(ctx, tx, inv, now)
		if err != nil {
			return nil, err
		}
		return evs, complete(ctx, tx, done, inv)
	})
}

// mayChangeDraft: a customer changes and finalizes only the drafts it made
// itself; one an administrator or a service made for its account is the
// merchant's bill, which it reads but does not rewrite (it may apply or
// remove a catalogue coupon: PatchInvoiceIn.OnlyCoupon).
func mayChangeDraft(p auth.Principal, inv *invoicing.Invoice) error {
	if p.Privileged() || inv.DraftedByCustomer || inv.Status != invoicing.StatusDraft {
		return nil
	}
	return apperr.New(apperr.Forbidden, "invoice %s is a draft the merchant made: only an administrator or a service changes or finalizes it", inv.ID)
}

// PatchInvoice changes a draft invoice: its customer, memo, metadata,
// terms, lines, discounts or coupon.
func (s *Service) PatchInvoice(ctx context.Context, p auth.Principal, id string, in *invoicing.PatchInvoiceIn, done Answer) (*invoicing.Invoice, error) {
	return s.change(ctx, p, id, done, func(ctx context.Context, tx Tx, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		if err := invoicing.RequireDraft(inv); err != nil {
			return nil, err
		}
		if !in.OnlyCoupon() {
			if err := mayChangeDraft(p, inv); err != nil {
				return nil, err
			}
		}
		var v apperr.Validator
		var rule *apperr.Error
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
			ls, r, err := parseLines(&v, *in.LineItems, inv.Currency, p.Privileged())
			if err != nil {
				return nil, err
			}
			if rule == nil {
				rule = r
			}
			lines = ls
		}
		var adhoc []invoicing.Discount
		if in.Discounts != nil {
			if !p.Privileged() {
				return nil, apperr.New(apperr.Forbidden, "only admin and service callers set discounts; customers may apply a coupon")
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
		res := s.NewResolver(tx, now)
		if in.LineItems != nil {
			resolved, err := res.Lines(ctx, "", lines, 0)
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
		// A draft holds one redemption of the coupon it carries: the same
		// coupon again changes nothing; removing or replacing it gives its
		// redemption back, so no sequence of changes to one draft spends
		// more than one.
		if in.Coupon.Set && !(inv.Coupon != nil && !in.Coupon.Null && *inv.Coupon == in.Coupon.V) {
			if inv.Coupon != nil && HoldsRedemption(inv) {
				res.Release(*inv.Coupon)
			}
			coupon, inv.Coupon = nil, nil
			if !in.Coupon.Null {
				d, err := res.Coupon(ctx, "", in.Coupon.V, inv)
				if err != nil {
					return nil, err
				}
				coupon, inv.Coupon = []invoicing.Discount{d}, ptr(in.Coupon.V)
				if HoldsRedemption(inv) {
					res.Redeem(in.Coupon.V)
				}
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
		if err := res.Flush(ctx); err != nil {
			return nil, err
		}
		// A discount change moves the lines' computed amounts too: the
		// lines are rewritten whatever changed.
		return nil, tx.ReplaceLines(ctx, inv)
	})
}

// parseLines parses the line items of a change in cur: the drafts and the
// first rule one breaks, or an error (a customer setting what only admin
// and service callers may) that ends the parse.
func parseLines(v *apperr.Validator, items []invoicing.LineIn, cur money.Currency, privileged bool) ([]invoicing.LineDraft, *apperr.Error, error) {
	var lines []invoicing.LineDraft
	var rule *apperr.Error
	for i, li := range items {
		ld, r := invoicing.ParseLine(v, "line_items/"+strconv.Itoa(i), li, cur, privileged)
		if r != nil && r.Code == apperr.Forbidden {
			return nil, nil, r
		}
		if r != nil && rule == nil {
			rule = r
		}
		lines = append(lines, ld)
	}
	return lines, rule, nil
}

// AddLines appends lines to a draft invoice.
func (s *Service) AddLines(ctx context.Context, p auth.Principal, id string, in *invoicing.AddLinesIn, done Answer) (*invoicing.Invoice, error) {
	return s.change(ctx, p, id, done, func(ctx context.Context, tx Tx, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		if err := invoicing.RequireDraft(inv); err != nil {
			return nil, err
		}
		if err := mayChangeDraft(p, inv); err != nil {
			return nil, err
		}
		var v apperr.Validator
		v.Check(len(in.LineItems) > 0, "line_items", "must hold at least one line")
		v.Check(len(inv.Lines)+len(in.LineItems) <= s.cfg.MaxLines, "line_items",
			"the invoice would have more than "+strconv.Itoa(s.cfg.MaxLines)+" lines")
		lines, rule, err := parseLines(&v, in.LineItems, inv.Currency, p.Privileged())
		if err != nil {
			return nil, err
		}
		if err := v.Err(); err != nil {
			return nil, err
		}
		if rule != nil {
			return nil, rule
		}
		resolved, err := s.NewResolver(tx, now).Lines(ctx, "", lines, 0)
		if err != nil {
			return nil, err
		}
		inv.Lines = append(inv.Lines, resolved...)
		if err := inv.Recompute(); err != nil {
			return nil, err
		}
		inv.UpdatedAt = now
		return nil, tx.ReplaceLines(ctx, inv)
	})
}

// FinalizeInvoice numbers a draft and opens it; a charge_automatically
// invoice is then charged by capture-payment.
func (s *Service) FinalizeInvoice(ctx context.Context, p auth.Principal, id string, done Answer) (*invoicing.Invoice, error) {
	return s.change(ctx, p, id, done, func(ctx context.Context, tx Tx, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		if err := invoicing.CheckFinalize(inv, now, s.cfg.DefaultNetDays); err != nil {
			return nil, err
		}
		if err := mayChangeDraft(p, inv); err != nil {
			return nil, err
		}
		// Finalizing asks capture-payment to charge: not on a frozen or closed account.
		if err := s.chargeable(ctx, tx, inv.AccountID); err != nil {
			return nil, err
		}
		if inv.Coupon != nil && !HoldsRedemption(inv) {
			// A customer's own draft redeems its coupon now (HoldsRedemption).
			res := s.NewResolver(tx, now)
			if _, err := res.Coupon(ctx, "", *inv.Coupon, inv); err != nil {
				return nil, err
			}
			res.Redeem(*inv.Coupon)
			if err := res.Flush(ctx); err != nil {
				return nil, err
			}
		}
		return invoicing.Finalize(ctx, tx, []*invoicing.Invoice{inv}, now)
	})
}

// VoidInvoice voids an invoice.
func (s *Service) VoidInvoice(ctx context.Context, p auth.Principal, id string, done Answer) (*invoicing.Invoice, error) {
	return s.change(ctx, p, id, done, func(ctx context.Context, tx Tx, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		return invoicing.Void(inv, now)
	})
}

// MarkUncollectible gives up collecting an open invoice.
func (s *Service) MarkUncollectible(ctx context.Context, p auth.Principal, id string, done Answer) (*invoicing.Invoice, error) {
	return s.change(ctx, p, id, done, func(ctx context.Context, tx Tx, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		return invoicing.MarkUncollectible(inv, now)
	})
}

// PayIn is a payment made outside billfn (a bank transfer, a cheque).
type PayIn struct {
	Amount    *int64 `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
}

// PayInvoice records a payment made outside billfn: amount defaults to
// everything due.
func (s *Service) PayInvoice(ctx context.Context, p auth.Principal, id string, in PayIn, done Answer) (*invoicing.Invoice, error) {
	var v apperr.Validator
	v.Check(in.Amount == nil || *in.Amount > 0, "amount", "must be a positive amount in minor units")
	v.Check(invoicing.TextOK(in.Reference, invoicing.MaxName), "reference", "must be at most 200 characters")
	if err := v.Err(); err != nil {
		return nil, err
	}
	return s.change(ctx, p, id, done, func(ctx context.Context, tx Tx, inv *invoicing.Invoice, now time.Time) ([]invoicing.Event, error) {
		if inv.Status != invoicing.StatusOpen && inv.Status != invoicing.StatusUncollectible {
			return nil, apperr.New(invoicing.CodeInvoiceNotOpen, "invoice %s is %s; only an open or uncollectible invoice can be paid", inv.ID, inv.Status)
		}
		if in.Currency != "" {
			c, err := money.ParseCurrency(in.Currency)
			if err != nil {
				return nil, apperr.Invalid(apperr.Field("currency", "must be an ISO 4217 code"))
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
			return nil, (&apperr.Error{Code: invoicing.CodeAmountExceedsDue, Detail: "the invoice has " + strconv.FormatInt(inv.AmountDue, 10) + " due",
				Errors: []apperr.FieldError{apperr.Field("amount", "must be at most amount_due")}}).With("amount_due", inv.AmountDue)
		}
		if err := tx.RecordOutOfBandPayment(ctx, inv.ID, "oob_"+ids.New(), amount, string(inv.Currency), in.Reference); err != nil {
			return nil, err
		}
		inv.AmountPaid += amount // ≤ amount_due ≤ total: no overflow
		return invoicing.Settle(inv, now, now), nil
	})
}
