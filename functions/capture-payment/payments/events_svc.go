package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
)

// onGatewayUpdated applies a gateway's news about a payment: monotonic, so
// duplicates and reordered deliveries Change nothing.
func (s *service) onGatewayUpdated(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	var u events.GatewayUpdate
	if err := events.Decode(ev, &u); err != nil {
		return err
	}
	var (
		p   *payments.Payment
		err error
	)
	switch {
	case payments.Str(u.PaymentID) != "":
		if _, perr := uuid.Parse(*u.PaymentID); perr != nil {
			return events.Permanent(fmt.Errorf("gateway_updated %s: payment_id %q is not a payment id", ev.ID(), *u.PaymentID))
		}
		p, err = getPayment(ctx, tx, *u.PaymentID, true)
	case u.GatewayPaymentID != "":
		p, err = paymentByGatewayID(ctx, tx, u.Gateway, u.GatewayPaymentID, true)
	default:
		return events.Permanent(fmt.Errorf("gateway_updated %s names no payment", ev.ID()))
	}
	if errors.Is(err, payments.ErrNotFound) {
		return events.Permanent(fmt.Errorf("gateway_updated %s: no payment %s / %s %s", ev.ID(), payments.Str(u.PaymentID), u.Gateway, u.GatewayPaymentID))
	}
	if err != nil {
		return err
	}
	if p.GatewayName() != u.Gateway || (p.GatewayPaymentID != nil && u.GatewayPaymentID != "" && *p.GatewayPaymentID != u.GatewayPaymentID) {
		// About another attempt's object (a gateway failed over from).
		slog.InfoContext(ctx, "gateway update for an object the payment no longer uses", "payment_id", p.ID,
			"gateway", u.Gateway, "object", u.GatewayPaymentID)
		return nil
	}
	if u.Currency != "" && !strings.EqualFold(u.Currency, string(p.Currency)) {
		return events.Permanent(fmt.Errorf("gateway_updated %s: currency %s does not match payment %s (%s)", ev.ID(), u.Currency, p.ID, p.Currency))
	}
	now := s.now()
	e := emitter{ctx: ctx}
	switch u.ObjectType {
	case "payment_intent":
		if u.Amount != 0 && u.Amount != p.Amount {
			return events.Permanent(fmt.Errorf("gateway_updated %s: amount %d does not match payment %s (%d)", ev.ID(), u.Amount, p.ID, p.Amount))
		}
		st := payments.GatewayState{GatewayPaymentID: u.GatewayPaymentID, AmountCapturable: u.AmountCapturable,
			AmountReceived: u.AmountReceived, At: u.OccurredAt}
		switch u.Status {
		case "failed":
			st.Status = payments.RequiresPaymentMethod
			st.Decline = &payments.Decline{Code: payments.Str(u.FailureCode), DeclineCode: payments.Str(u.DeclineCode), Message: payments.Str(u.FailureMessage)}
		case "requires_capture", "processing", "requires_action", "succeeded", "canceled":
			st.Status = payments.Status(u.Status)
		default:
			return nil
		}
		c := payments.ApplyGateway(p, st, false, p.Attempts, now)
		if !c.Any() {
			return nil
		}
		if p.Status != payments.Processing && p.Attempts > 0 {
			a := payments.Attempt{N: p.Attempts, Status: payments.AttemptStatus(p.Status), GatewayPaymentID: p.GatewayPaymentID, FinishedAt: &now}
			if le := p.LastPaymentError; c.Failed && le != nil {
				a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage = &le.Code, payments.Nullable(le.DeclineCode), &le.Reason, payments.Nullable(le.Message)
			}
			if _, err := tx.Exec(ctx, `UPDATE payment_attempts SET status = $3, gateway_payment_id = $4, failure_code = $5,
				decline_code = $6, failure_reason = $7, failure_message = $8, finished_at = $9
				WHERE payment_id = $1 AND n = $2 AND status IN ('pending', 'processing', 'requires_action', 'requires_capture')`,
				p.ID, a.N, a.Status, a.GatewayPaymentID, a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage, a.FinishedAt); err != nil {
				return err
			}
		}
		e.changed(p, c)
	case "refund", "charge":
		if err := s.applyRefundUpdate(ctx, tx, p, u, ev.ID(), now, &e); err != nil {
			return err
		}
	case "dispute":
		if p.DisputedAt != nil {
			return nil
		}
		at := u.OccurredAt
		p.DisputedAt, p.UpdatedAt = &at, now
		e.payment(evDisputed, p, nil)
	default:
		return nil
	}
	if err := updatePayment(ctx, tx, p); err != nil {
		return err
	}
	return e.flush(tx)
}

// applyRefundUpdate settles one of our refunds, or records a refund made
// at the gateway itself (its dashboard) as an external refund.
func (s *service) applyRefundUpdate(ctx context.Context, tx pgx.Tx, p *payments.Payment, u events.GatewayUpdate, eventID string, now time.Time, e *emitter) error {
	var r *payments.Refund
	var err error
	switch {
	case payments.Str(u.RefundID) != "":
		r, err = refundByGatewayID(ctx, tx, u.Gateway, *u.RefundID)
		if errors.Is(err, payments.ErrNoRefund) && payments.Str(u.BillfnRefundID) != "" {
			r, err = getRefund(ctx, tx, *u.BillfnRefundID, true)
		}
	case payments.Str(u.BillfnRefundID) != "":
		r, err = getRefund(ctx, tx, *u.BillfnRefundID, true)
	default:
		err = payments.ErrNoRefund
	}
	if err != nil && !errors.Is(err, payments.ErrNoRefund) {
		return err
	}
	if r != nil {
		if r.PaymentID != p.ID || (r.Status != "pending" && r.Status != "requires_action") {
			return nil
		}
		if r.GatewayRefundID == nil {
			r.GatewayRefundID = u.RefundID
		}
		status := payments.Str(u.RefundStatus)
		if status == "" && u.Status == "refunded" {
			status = "succeeded"
		}
		settleRefund(p, r, status, payments.Str(u.FailureCode), now, e)
		return updateRefund(ctx, tx, r)
	}
	// Not ours: a refund made at the gateway. What it refunded beyond what
	// billfn knows of is recorded once (later deliveries find no excess).
	if u.Status != "refunded" && payments.Str(u.RefundStatus) != "succeeded" {
		return nil
	}
	total := u.AmountRefunded
	if total == 0 {
		total = p.AmountRefunded + p.AmountRefundPending + u.RefundAmount
	}
	excess := min(total-p.AmountRefunded-p.AmountRefundPending, p.Refundable())
	if excess <= 0 {
		return nil
	}
	p.RefundCount++
	p.AmountRefunded += excess
	p.UpdatedAt = now
	r = &payments.Refund{ID: uuid.NewSHA1(payments.RefundNS, []byte(u.Gateway+":"+eventID)).String(), PaymentID: p.ID, N: p.RefundCount,
		AccountID: p.AccountID, UserID: p.UserID, InvoiceID: p.InvoiceID, Amount: excess, Currency: string(p.Currency),
		Gateway: p.GatewayName(), GatewayRefundID: u.RefundID, GatewayPaymentID: p.GatewayPaymentID, Status: "succeeded",
		Reason: "gateway", CreatedAt: now, UpdatedAt: now}
	if _, err := insertRefund(ctx, tx, r); err != nil {
		return err
	}
	e.refundPostings(p, r)
	e.refund(evRefundOK, r)
	return nil
}

// invoiceSummary is generate-invoice's invoice summary (billing-events).
type invoiceSummary struct {
	InvoiceID        string `json:"invoice_id"`
	Number           string `json:"number"`
	AccountID        string `json:"account_id"`
	Currency         string `json:"currency"`
	AmountDue        int64  `json:"amount_due"`
	CollectionMethod string `json:"collection_method"`
	Attempt          int    `json:"attempt"`
}

// invoicePaymentID is the id of the auto-collection payment of an invoice:
// one per invoice, whatever the redeliveries.
func invoicePaymentID(invoiceID string) string {
	return uuid.NewSHA1(payments.InvoiceNS, []byte(invoiceID)).String()
}

// onInvoiceFinalized collects a charge_automatically invoice with the
// account's default payment method.
func (s *service) onInvoiceFinalized(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	if err := s.learnInvoice(ctx, tx, ev); err != nil {
		return err
	}
	var inv invoiceSummary
	if err := events.Decode(ev, &inv); err != nil {
		return err
	}
	if inv.CollectionMethod != "charge_automatically" || inv.AmountDue <= 0 {
		return nil
	}
	return notCollected(ctx, inv, s.collect(ctx, tx, inv))
}

// notCollected turns a refusal of an invoice's automatic collection (the
// invoice is paid or void already, another payment is in flight) into a
// logged outcome: retrying the event cannot Change it.
func notCollected(ctx context.Context, inv invoiceSummary, err error) error {
	if !refused(err) {
		return err
	}
	slog.InfoContext(ctx, "invoice not collected", "invoice_id", inv.InvoiceID, "reason", err.Error())
	return nil
}

// onPaymentRetry is dunning: a new attempt of the invoice's payment with
// the account's default payment method (perhaps a new one by now).
func (s *service) onPaymentRetry(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	if err := s.learnInvoice(ctx, tx, ev); err != nil {
		return err
	}
	var inv invoiceSummary
	if err := events.Decode(ev, &inv); err != nil {
		return err
	}
	if inv.AmountDue <= 0 {
		return nil
	}
	p, err := getPayment(ctx, tx, invoicePaymentID(inv.InvoiceID), true)
	if errors.Is(err, payments.ErrNotFound) {
		return notCollected(ctx, inv, s.collect(ctx, tx, inv))
	}
	if err != nil {
		return err
	}
	if p.Status != payments.RequiresPaymentMethod || p.Op() != "" {
		return nil // paid, in progress, or waiting for an action
	}
	acct, err := s.collectionAccount(ctx, inv)
	if err != nil {
		return err
	}
	if acct.Active() != nil {
		return s.refuseCollection(ctx, tx, p, acct, true)
	}
	m, err := defaultMethod(ctx, tx, p.AccountID)
	if errors.Is(err, payments.ErrNoMethod) {
		slog.InfoContext(ctx, "dunning retry without a default payment method", "invoice_id", inv.InvoiceID)
		return nil
	}
	if err != nil {
		return err
	}
	_, err = s.confirm(ctx, s.within(tx), p.ID, payments.Anyone, m.ID, nil)
	return notCollected(ctx, inv, err)
}

func (s *service) collect(ctx context.Context, tx pgx.Tx, inv invoiceSummary) error {
	if _, err := uuid.Parse(inv.InvoiceID); err != nil {
		return events.Permanent(fmt.Errorf("invoice %q: not an invoice id", inv.InvoiceID))
	}
	if _, err := uuid.Parse(inv.AccountID); err != nil {
		return events.Permanent(fmt.Errorf("invoice %s: account %q is not an account id", inv.InvoiceID, inv.AccountID))
	}
	cur, err := money.ParseCurrency(inv.Currency)
	if err != nil {
		return events.Permanent(fmt.Errorf("invoice %s: currency %q: %w", inv.InvoiceID, inv.Currency, err))
	}
	// The owner is the account's, from the read model: never the event's
	// word, nor whoever saved the default method.
	acct, err := s.collectionAccount(ctx, inv)
	if err != nil {
		return err
	}
	if !strings.EqualFold(acct.Currency, string(cur)) {
		return events.Permanent(fmt.Errorf("invoice %s: currency %s is not account %s's (%s)", inv.InvoiceID, cur, acct.ID, acct.Currency))
	}
	invoiceID := inv.InvoiceID
	if acct.Active() != nil {
		now := s.now()
		p := &payments.Payment{ID: invoicePaymentID(inv.InvoiceID), AccountID: acct.ID, UserID: acct.UserID, InvoiceID: &invoiceID,
			Amount: inv.AmountDue, Currency: cur, CaptureMethod: payments.CaptureAutomatic, Description: "Invoice " + inv.Number,
			Metadata: map[string]string{"invoice_number": inv.Number}, CreatedAt: now, UpdatedAt: now}
		return s.refuseCollection(ctx, tx, p, acct, false)
	}
	m, err := defaultMethod(ctx, tx, acct.ID)
	if errors.Is(err, payments.ErrNoMethod) {
		slog.InfoContext(ctx, "invoice not collected: the account has no default payment method", "invoice_id", inv.InvoiceID)
		return nil
	}
	if err != nil {
		return err
	}
	in := createInput{ID: invoicePaymentID(inv.InvoiceID), AccountID: acct.ID, UserID: acct.UserID, InvoiceID: &invoiceID,
		Amount: inv.AmountDue, Currency: cur, PaymentMethod: m.ID, CaptureMethod: payments.CaptureAutomatic, Confirm: true,
		Description: "Invoice " + inv.Number, Metadata: map[string]string{"invoice_number": inv.Number}}
	_, err = s.create(ctx, s.within(tx), in, nil)
	return err
}

// tick is the schedule's periodic work; every part is idempotent.
func (s *service) tick(ctx context.Context) error {
	var errs []error
	if _, err := s.sandbox.SettleDue(ctx); err != nil {
		errs = append(errs, fmt.Errorf("sandbox settlement: %w", err))
	}
	if _, err := s.sandbox.Flush(ctx); err != nil {
		slog.WarnContext(ctx, "sandbox webhooks wait for handle-webhook", "err", err.Error())
	}
	if err := s.reconcile(ctx); err != nil {
		errs = append(errs, fmt.Errorf("reconciliation: %w", err))
	}
	if err := s.expire(ctx); err != nil {
		errs = append(errs, fmt.Errorf("authorization expiry: %w", err))
	}
	// The sandbox keeps a week of delivered webhooks, as a gateway's log.
	if _, err := s.d.Pool.Exec(ctx, `DELETE FROM sandbox_webhooks WHERE sent_at < $1`, s.now().Add(-7*24*time.Hour)); err != nil {
		errs = append(errs, fmt.Errorf("sandbox webhook log: %w", err))
	}
	if _, err := idempotency.Sweep(ctx, s.d.Pool); err != nil {
		errs = append(errs, fmt.Errorf("idempotency sweep: %w", err))
	}
	if _, err := s.d.Publisher.Sweep(ctx); err != nil {
		errs = append(errs, fmt.Errorf("outbox sweep: %w", err))
	}
	return errors.Join(errs...)
}

// reconcile asks the gateways for the truth about payments and refunds
// that waited longer than RECONCILE_AFTER, and settles them. Repeating a
// call uses the original idempotency key, so it never charges, captures or
// refunds twice.
func (s *service) reconcile(ctx context.Context) error {
	before := s.now().Add(-s.cfg.ReconcileAfter.D())
	ids, err := unsettled(ctx, s.d.Pool, before, 100)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if err := s.reconcilePayment(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("payment %s: %w", id, err))
		}
	}
	rids, err := pendingRefunds(ctx, s.d.Pool, before, 100)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, id := range rids {
		if err := s.reconcileRefund(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("refund %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func (s *service) reconcilePayment(ctx context.Context, id string) error {
	p, err := getPayment(ctx, s.d.Pool, id, false)
	if err != nil {
		return err
	}
	op := p.Op()
	var (
		st   payments.GatewayState
		cerr error
	)
	ask := p.Status == payments.Processing || op != ""
	if ask {
		st, cerr = s.call(ctx, p, func(cctx context.Context, gw payments.Gateway) (payments.GatewayState, error) {
			if p.GatewayPaymentID != nil {
				st, err := gw.Retrieve(cctx, *p.GatewayPaymentID)
				var ge *payments.GatewayError
				if !(errors.As(err, &ge) && ge.Code == "resource_missing" && op == payments.OpConfirm) {
					return st, err
				}
			}
			if op != payments.OpConfirm && p.Status != payments.Processing {
				return payments.GatewayState{}, &payments.GatewayError{Gateway: gw.Name(), Code: "resource_missing", Rejected: true}
			}
			// The object's id never came back: repeat the original call
			// with its key; the gateway answers it (again) once.
			a, err := currentAttempt(ctx, s.d.Pool, p)
			if err != nil {
				return payments.GatewayState{}, err
			}
			return gw.Charge(cctx, payments.ChargeRequest{PaymentID: p.ID, Key: payments.GatewayKey(p.ID, "a"+fmt.Sprint(p.Attempts)),
				GatewayPaymentID: p.GatewayObject(), Amount: p.Amount, Currency: p.Currency, PaymentMethod: a.PaymentMethod,
				CaptureMethod: p.CaptureMethod, Description: p.Description})
		})
	}
	var ge *payments.GatewayError
	missing := errors.As(cerr, &ge) && ge.Code == "resource_missing"
	if cerr != nil && !missing {
		return cerr // try again at the next tick
	}
	err = s.newTx(ctx, func(tx pgx.Tx) error {
		q, err := getPayment(ctx, tx, id, true)
		if err != nil {
			return err
		}
		if !q.UpdatedAt.Equal(p.UpdatedAt) {
			return nil // someone else moved it meanwhile
		}
		now := s.now()
		e := emitter{ctx: ctx}
		if cerr == nil {
			e.changed(q, payments.ApplyGateway(q, st, true, q.Attempts, now))
			if op == payments.OpConfirm || q.Status != payments.Processing {
				a := payments.Attempt{N: q.Attempts, Status: payments.AttemptStatus(q.Status), GatewayPaymentID: q.GatewayPaymentID, FinishedAt: &now}
				if q.Status == payments.Processing {
					a.FinishedAt = nil
				}
				if le := q.LastPaymentError; q.Status == payments.RequiresPaymentMethod && le != nil {
					a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage = &le.Code, payments.Nullable(le.DeclineCode), &le.Reason, payments.Nullable(le.Message)
				}
				if q.Attempts > 0 {
					if err := finishAttempt(ctx, tx, q.ID, a); err != nil {
						return err
					}
				}
			}
		}
		if missing && q.Status == payments.Processing && op == "" {
			// Not at the gateway at all: the attempt failed before it.
			e.changed(q, payments.ApplyGateway(q, payments.GatewayState{Status: payments.RequiresPaymentMethod, At: payments.SyncTime(now),
				Decline: &payments.Decline{Code: "resource_missing", Message: "the gateway has no such payment"}}, true, q.Attempts, now))
		}
		q.SetOp("", now)
		q.UpdatedAt = now
		if err := updatePayment(ctx, tx, q); err != nil {
			return err
		}
		return e.flush(tx)
	})
	if err == nil {
		s.d.Publisher.Kick()
	}
	return err
}

func (s *service) reconcileRefund(ctx context.Context, id string) error {
	r, err := getRefund(ctx, s.d.Pool, id, false)
	if err != nil {
		return err
	}
	gw := s.gateways[r.Gateway]
	if gw == nil {
		return fmt.Errorf("gateway %s is not configured", r.Gateway)
	}
	cctx, cancel := detached(ctx, s.cfg.GatewayTimeout.D())
	defer cancel()
	var res payments.RefundResult
	if r.GatewayRefundID != nil {
		res, err = gw.RetrieveRefund(cctx, *r.GatewayRefundID)
	} else {
		p, perr := getPayment(ctx, s.d.Pool, r.PaymentID, false)
		if perr != nil {
			return perr
		}
		if r.LedgerHoldID == nil {
			// Its request stopped before the ledger answered: the ledger
			// goes first here too (a refusal removes the refund).
			if err := s.reserveRefund(ctx, p, r); err != nil {
				var pe *problem.Error
				if errors.As(err, &pe) && pe.Status() < 500 {
					return nil
				}
				return err
			}
		}
		res, err = gw.Refund(cctx, payments.RefundRequest{PaymentID: p.ID, RefundID: r.ID, GatewayPaymentID: p.GatewayObject(),
			Key: payments.GatewayKey(p.ID, "refund-"+r.ID), Amount: r.Amount, Currency: p.Currency, Reason: r.Reason})
	}
	if payments.UnknownOutcome(err) {
		return err
	}
	_, err = s.finishRefund(ctx, s.fresh(), id, res, err, nil)
	return err
}

// expire cancels authorizations older than AUTHORIZATION_TTL, releasing
// the hold (Stripe cancels uncaptured PaymentIntents after 7 days).
func (s *service) expire(ctx context.Context) error {
	ids, err := expiredAuthorizations(ctx, s.d.Pool, s.now().Add(-s.cfg.AuthorizationTTL.D()), 100)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		_, err := s.cancel(ctx, s.fresh(), id, payments.Anyone, "expired", nil)
		var pe *problem.Error
		if err != nil && !(errors.As(err, &pe) && pe.Status() < 500) {
			errs = append(errs, fmt.Errorf("payment %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
