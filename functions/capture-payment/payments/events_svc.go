package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/postgres"
)

// OnGatewayUpdated applies a gateway's news about a payment: monotonic, so
// duplicates and reordered deliveries change nothing.
func (s *Service) OnGatewayUpdated(ctx context.Context, run Runner, ev events.Event) error {
	tx := run.DB()
	var u events.GatewayUpdate
	if err := events.Decode(ev, &u); err != nil {
		return err
	}
	var (
		p   *Payment
		err error
	)
	switch {
	case Str(u.PaymentID) != "":
		if !ids.Valid(*u.PaymentID) {
			return events.Permanent(fmt.Errorf("gateway_updated %s: payment_id %q is not a payment id", ev.ID(), *u.PaymentID))
		}
		p, err = tx.Payment(ctx, *u.PaymentID, true)
	case u.GatewayPaymentID != "":
		p, err = tx.PaymentByGatewayID(ctx, u.Gateway, u.GatewayPaymentID, true)
	default:
		return events.Permanent(fmt.Errorf("gateway_updated %s names no payment", ev.ID()))
	}
	if errors.Is(err, ErrNotFound) {
		return events.Permanent(fmt.Errorf("gateway_updated %s: no payment %s / %s %s", ev.ID(), Str(u.PaymentID), u.Gateway, u.GatewayPaymentID))
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
		st := GatewayState{GatewayPaymentID: u.GatewayPaymentID, AmountCapturable: u.AmountCapturable,
			AmountReceived: u.AmountReceived, At: u.OccurredAt}
		switch u.Status {
		case "failed":
			st.Status = RequiresPaymentMethod
			st.Decline = &Decline{Code: Str(u.FailureCode), DeclineCode: Str(u.DeclineCode), Message: Str(u.FailureMessage)}
		case "requires_capture", "processing", "requires_action", "succeeded", "canceled":
			st.Status = Status(u.Status)
		default:
			return nil
		}
		c := ApplyGateway(p, st, false, p.Attempts, now)
		if !c.Any() {
			return nil
		}
		if p.Status != Processing && p.Attempts > 0 {
			a := Attempt{N: p.Attempts, Status: AttemptStatus(p.Status), GatewayPaymentID: p.GatewayPaymentID, FinishedAt: &now}
			if le := p.LastPaymentError; c.Failed && le != nil {
				a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage = &le.Code, Nullable(le.DeclineCode), &le.Reason, Nullable(le.Message)
			}
			if err := tx.SettleOpenAttempt(ctx, p.ID, a); err != nil {
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
		p.DisputedAt = &at
		p.Touch(now)
		e.payment(events.TypePaymentDisputed, p, nil)
	default:
		return nil
	}
	if err := tx.UpdatePayment(ctx, p); err != nil {
		return err
	}
	return e.flush(tx)
}

// applyRefundUpdate settles one of our refunds, or records a refund made
// at the gateway itself (its dashboard) as an external refund.
func (s *Service) applyRefundUpdate(ctx context.Context, tx Tx, p *Payment, u events.GatewayUpdate, eventID string, now time.Time, e *emitter) error {
	var r *Refund
	var err error
	switch {
	case Str(u.RefundID) != "":
		r, err = tx.RefundByGatewayID(ctx, u.Gateway, *u.RefundID)
		if errors.Is(err, ErrNoRefund) && Str(u.BillfnRefundID) != "" {
			r, err = tx.Refund(ctx, *u.BillfnRefundID, true)
		}
	case Str(u.BillfnRefundID) != "":
		r, err = tx.Refund(ctx, *u.BillfnRefundID, true)
	default:
		err = ErrNoRefund
	}
	if err != nil && !errors.Is(err, ErrNoRefund) {
		return err
	}
	if r != nil {
		if r.PaymentID != p.ID {
			return nil
		}
		status := Str(u.RefundStatus)
		if status == "" && u.Status == "refunded" {
			status = "succeeded"
		}
		if r.Status == "succeeded" && (status == "failed" || status == "canceled") {
			// A refund can fail after it succeeded (the card was closed):
			// the gateway gave the money back to the merchant. (Stripe
			// cancels only a refund requires_action, which billfn counts
			// as refunded only from a charge's total.)
			if credited := reverseRefund(p, r, status, Str(u.FailureCode), gatewayTime(u, now), now, e); credited > 0 {
				if err := tx.AddUnapplied(ctx, p.ID, credited); err != nil {
					return err
				}
			}
			return tx.UpdateRefund(ctx, r)
		}
		if r.Status != "pending" && r.Status != "requires_action" {
			return nil
		}
		if r.GatewayRefundID == nil {
			r.GatewayRefundID = u.RefundID
		}
		if credited := settleRefund(p, r, status, Str(u.FailureCode), now, e); credited > 0 {
			if err := tx.AddUnapplied(ctx, p.ID, credited); err != nil {
				return err
			}
		}
		if r.FailedAt != nil {
			at := gatewayTime(u, now)
			r.FailedAt = &at
		}
		return tx.UpdateRefund(ctx, r)
	}
	// Not found by its id: a refund made at the gateway. One billfn knows
	// only from a total takes the id of its refund event (and fails with
	// it); one billfn never counted that failed is kept as failed.
	if named, err := nameGatewayRefund(ctx, tx, p, u, eventID, now, e); named || err != nil {
		return err
	}
	if st := Str(u.RefundStatus); st == "failed" || st == "canceled" {
		return keepGatewayRefundFailure(ctx, tx, p, u, eventID, now)
	}
	// Otherwise, what the gateway refunded beyond what billfn knows of is
	// recorded once (later deliveries find no excess).
	// The gateway's total refunded is read from the event: a charge event
	// carries it (its running total, no refund id); a refund event only
	// bounds it from below, by this refund and the others billfn holds
	// under a gateway id. It must not add its amount to what billfn
	// recorded from a charge event, which may hold this very refund
	// without its id: each estimate stays at or below the gateway's real
	// total, so one dashboard refund reported both ways is recorded once.
	if u.Status != "refunded" && Str(u.RefundStatus) != "succeeded" {
		return nil
	}
	known := p.AmountRefunded + p.AmountRefundPending
	total := u.AmountRefunded
	if total == 0 {
		withIDs, err := tx.RefundedWithGatewayIDs(ctx, p.ID)
		if err != nil {
			return err
		}
		total = withIDs + u.RefundAmount
	} else {
		// A charge event's total is a snapshot as of its created time, and
		// the gateway does not order its events: one created at or before
		// a refund failed (or was canceled) still counts that refund,
		// which billfn no longer does. Counted back, it is no excess.
		failed, err := tx.FailedSince(ctx, p.ID, u.OccurredAt)
		if err != nil {
			return err
		}
		known += failed
	}
	excess := min(total-known, p.Refundable())
	if excess <= 0 {
		return nil
	}
	// What it draws on in the ledger, as HoldSource decides for a refund
	// through billfn: of an invoice payment, the account's credit (the
	// part its invoice did not need) first, then revenue. It cannot be
	// refused for straddling both: the credit part comes from the account,
	// the rest from revenue, and the refund is recorded on revenue with
	// the credit it took off amount_unapplied.
	src, fromRevenue := "account", int64(0)
	if p.InvoiceID != nil {
		unapplied, fromAccount, err := tx.Credit(ctx, p.ID)
		if err != nil {
			return err
		}
		credit := min(max(unapplied-fromAccount, 0), excess)
		if credit < excess {
			src, fromRevenue = "revenue", excess-credit
			if credit > 0 {
				if err := tx.TakeCredit(ctx, p.ID, credit); err != nil {
					return err
				}
			}
		}
	}
	p.RefundCount++
	p.AmountRefunded += excess
	p.Touch(now)
	r = &Refund{ID: uuid.NewSHA1(RefundNS, []byte(u.Gateway+":"+eventID)).String(), PaymentID: p.ID, N: p.RefundCount,
		AccountID: p.AccountID, UserID: p.UserID, InvoiceID: p.InvoiceID, Amount: excess, Currency: string(p.Currency),
		Gateway: p.GatewayName(), GatewayRefundID: u.RefundID, GatewayPaymentID: p.GatewayPaymentID, Status: "succeeded",
		Reason: "gateway", CreatedAt: now, UpdatedAt: now, HoldSource: &src}
	if src == "revenue" {
		r.Withheld = excess - fromRevenue // the account's credit it took: back to it if the refund fails
	}
	if _, err := tx.InsertRefund(ctx, r); err != nil {
		return err
	}
	e.refundPostings(p, r, fromRevenue)
	e.refund(events.TypeRefundSucceeded, r)
	return nil
}

// nameGatewayRefund gives a refund made at the gateway that billfn
// recorded from a charge event's total (so without the gateway's id) the
// id of the refund event u, the first one of that payment and amount to
// name it (refunds of one payment and amount are alike), and reverses it
// when u says it failed or was canceled: a dashboard refund can fail after
// it succeeded too, a total counts one requires_action (which is all
// Stripe cancels), and their news names them only by their id. named
// reports that u was about such a refund. The success of a refund of a
// smaller amount than one of them takes its part out of the largest
// (splitGatewayRefund). A failure (or cancellation) of none of those
// amounts while billfn holds some is parked: billfn may hold it inside one
// total of several refunds, or not at all (a total from after it failed
// does not count it), and cannot tell which.
func nameGatewayRefund(ctx context.Context, tx Tx, p *Payment, u events.GatewayUpdate, eventID string, now time.Time, e *emitter) (named bool, err error) {
	status := Str(u.RefundStatus)
	if Str(u.RefundID) == "" || status != "succeeded" && status != "failed" && status != "canceled" {
		return false, nil
	}
	failed := status == "failed" || status == "canceled"
	unnamed, err := tx.UnnamedGatewayRefunds(ctx, p.ID)
	if err != nil {
		return false, err
	}
	for _, r := range unnamed {
		if r.Amount != u.RefundAmount {
			continue
		}
		r.GatewayRefundID = u.RefundID
		r.UpdatedAt = now
		if failed {
			if credited := reverseRefund(p, r, status, Str(u.FailureCode), gatewayTime(u, now), now, e); credited > 0 {
				if err := tx.AddUnapplied(ctx, p.ID, credited); err != nil {
					return true, err
				}
			}
		}
		return true, tx.UpdateRefund(ctx, r)
	}
	if status == "succeeded" && u.RefundAmount > 0 {
		// The largest: the one most likely to hold it (one that does not
		// leaves the rest of the others a part they cannot be named in).
		var largest *Refund
		for _, r := range unnamed {
			if r.Amount > u.RefundAmount && (largest == nil || r.Amount > largest.Amount) {
				largest = r
			}
		}
		if largest != nil {
			return true, splitGatewayRefund(ctx, tx, p, largest, u, eventID, now)
		}
	}
	if failed && len(unnamed) > 0 {
		return false, events.Permanent(fmt.Errorf("gateway_updated %s: refund %s of %d %s; payment %s holds refunds made at the gateway known only by their total, none of %d",
			eventID, *u.RefundID, u.RefundAmount, status, p.ID, u.RefundAmount))
	}
	return false, nil
}

// splitGatewayRefund takes the part u names (its refund, succeeded) out
// of r, a larger refund made at the gateway that billfn knows only from a
// charge event's total (it holds u's refund with others: their events
// came out of order). The part becomes a refund of its own under u's
// gateway id, succeeded, with the next n, so its failure, whenever it
// comes, reverses exactly it once; r keeps the rest, without an id, for
// the others' events to name. What r took of an invoice payment's credit
// (Withheld) stays with r first, as the refunds that stay would have
// taken the credit first on their own (HoldSource): the part's failure
// gives the account back only what it took beyond them. Nothing moves in the ledger (the
// postings of r's total stand) and no event is emitted: billfn announced
// the whole as r.
func splitGatewayRefund(ctx context.Context, tx Tx, p *Payment, r *Refund, u events.GatewayUpdate, eventID string, now time.Time) error {
	p.RefundCount++
	p.Touch(now)
	part := *r
	part.ID = uuid.NewSHA1(RefundNS, []byte(u.Gateway+":"+eventID)).String()
	part.N = p.RefundCount
	part.Amount = u.RefundAmount
	part.GatewayRefundID = u.RefundID
	part.Withheld = max(r.Withheld-(r.Amount-part.Amount), 0)
	part.CreatedAt, part.UpdatedAt = now, now
	r.Amount -= part.Amount
	r.Withheld -= part.Withheld
	r.UpdatedAt = now
	if _, err := tx.InsertRefund(ctx, &part); err != nil {
		return err
	}
	return tx.UpdateRefund(ctx, r)
}

// keepGatewayRefundFailure records a refund made at the gateway that
// billfn never counted, whose news is that it failed (or was canceled):
// failed, under its gateway id, with when it failed, and moving nothing.
// Stripe does not order its events, so the news of its success may come
// after: it then finds the refund failed, and a total from before the
// failure counts it (Tx.FailedSince), where either would have recorded
// it as refunded. No event: billfn never announced the refund.
func keepGatewayRefundFailure(ctx context.Context, tx Tx, p *Payment, u events.GatewayUpdate, eventID string, now time.Time) error {
	if Str(u.RefundID) == "" || u.RefundAmount <= 0 {
		return nil
	}
	status, at := Str(u.RefundStatus), gatewayTime(u, now)
	p.RefundCount++
	p.Touch(now)
	r := &Refund{ID: uuid.NewSHA1(RefundNS, []byte(u.Gateway+":"+eventID)).String(), PaymentID: p.ID, N: p.RefundCount,
		AccountID: p.AccountID, UserID: p.UserID, InvoiceID: p.InvoiceID, Amount: u.RefundAmount, Currency: string(p.Currency),
		Gateway: p.GatewayName(), GatewayRefundID: u.RefundID, GatewayPaymentID: p.GatewayPaymentID, Status: status,
		Reason: "gateway", FailureReason: Nullable(Str(u.FailureCode)), CreatedAt: now, UpdatedAt: now, FailedAt: &at}
	if r.FailureReason == nil {
		r.FailureReason = Nullable(status)
	}
	_, err := tx.InsertRefund(ctx, r)
	return err
}

// gatewayTime is when the gateway says update u happened (its event's
// created), or now when it does not say.
func gatewayTime(u events.GatewayUpdate, now time.Time) time.Time {
	if u.OccurredAt.IsZero() {
		return now
	}
	return u.OccurredAt
}

// InvoicePaymentID is the id of the auto-collection payment of an invoice:
// one per invoice, whatever the redeliveries.
func InvoicePaymentID(invoiceID string) string {
	return uuid.NewSHA1(InvoiceNS, []byte(invoiceID)).String()
}

// OnInvoiceFinalized collects a charge_automatically invoice with the
// account's default payment method.
func (s *Service) OnInvoiceFinalized(ctx context.Context, run Runner, ev events.Event) error {
	if err := s.learnInvoice(ctx, run.DB(), ev); err != nil {
		return err
	}
	return s.collectFinalized(ctx, run, ev)
}

// collectFinalized is OnInvoiceFinalized once the invoice's facts are
// stored: the automatic collection.
func (s *Service) collectFinalized(ctx context.Context, run Runner, ev events.Event) error {
	var inv events.Invoice
	if err := events.Decode(ev, &inv); err != nil {
		return err
	}
	if inv.CollectionMethod != "charge_automatically" || inv.AmountDue <= 0 {
		return nil
	}
	return s.notCollected(ctx, inv, s.collect(ctx, run, inv))
}

// notCollected turns a refusal of an invoice's automatic collection (the
// invoice is paid or void already, another payment is in flight) into a
// logged outcome: retrying the event cannot change it.
func (s *Service) notCollected(ctx context.Context, inv events.Invoice, err error) error {
	if !s.refused(err) {
		return err
	}
	slog.InfoContext(ctx, "invoice not collected", "invoice_id", inv.InvoiceID, "reason", err.Error())
	return nil
}

// OnPaymentRetry is dunning: a new attempt of the invoice's payment with
// the account's default payment method (perhaps a new one by now).
func (s *Service) OnPaymentRetry(ctx context.Context, run Runner, ev events.Event) error {
	if err := s.learnInvoice(ctx, run.DB(), ev); err != nil {
		return err
	}
	return s.retryPayment(ctx, run, ev)
}

// retryPayment is OnPaymentRetry once the invoice's facts are stored.
func (s *Service) retryPayment(ctx context.Context, run Runner, ev events.Event) error {
	tx := run.DB()
	var inv events.Invoice
	if err := events.Decode(ev, &inv); err != nil {
		return err
	}
	if inv.AmountDue <= 0 {
		return nil
	}
	p, err := tx.Payment(ctx, InvoicePaymentID(inv.InvoiceID), true)
	if errors.Is(err, ErrNotFound) {
		return s.notCollected(ctx, inv, s.collect(ctx, run, inv))
	}
	if err != nil {
		return err
	}
	if p.Status != RequiresPaymentMethod || p.Op() != "" {
		return nil // paid, in progress, or waiting for an action
	}
	acct, err := s.collectionAccount(ctx, tx, inv)
	if err != nil {
		return err
	}
	if acct.Active() != nil {
		return s.refuseCollection(ctx, tx, p, acct, true)
	}
	m, err := tx.DefaultMethod(ctx, p.AccountID)
	if errors.Is(err, ErrNoMethod) {
		slog.InfoContext(ctx, "dunning retry without a default payment method", "invoice_id", inv.InvoiceID)
		return nil
	}
	if err != nil {
		return err
	}
	_, err = s.Confirm(ctx, run, p.ID, Anyone, m.ID, nil)
	return s.notCollected(ctx, inv, err)
}

func (s *Service) collect(ctx context.Context, run Runner, inv events.Invoice) error {
	tx := run.DB()
	if !ids.Valid(inv.InvoiceID) {
		return events.Permanent(fmt.Errorf("invoice %q: not an invoice id", inv.InvoiceID))
	}
	if !ids.Valid(inv.AccountID) {
		return events.Permanent(fmt.Errorf("invoice %s: account %q is not an account id", inv.InvoiceID, inv.AccountID))
	}
	cur, err := money.ParseCurrency(inv.Currency)
	if err != nil {
		return events.Permanent(fmt.Errorf("invoice %s: currency %q: %w", inv.InvoiceID, inv.Currency, err))
	}
	// The owner is the account's, from the read model: never the event's
	// word, nor whoever saved the default method.
	acct, err := s.collectionAccount(ctx, tx, inv)
	if err != nil {
		return err
	}
	if !strings.EqualFold(acct.Currency, string(cur)) {
		return events.Permanent(fmt.Errorf("invoice %s: currency %s is not account %s's (%s)", inv.InvoiceID, cur, acct.ID, acct.Currency))
	}
	invoiceID := inv.InvoiceID
	if acct.Active() != nil || inv.AmountDue > MaxAmount {
		now := s.now()
		p := &Payment{ID: InvoicePaymentID(inv.InvoiceID), AccountID: acct.ID, UserID: acct.UserID, InvoiceID: &invoiceID,
			Amount: inv.AmountDue, Currency: cur, CaptureMethod: CaptureAutomatic, Description: "Invoice " + Str(inv.Number),
			Metadata: map[string]string{"invoice_number": Str(inv.Number)}, CreatedAt: now, UpdatedAt: now}
		if acct.Active() != nil {
			return s.refuseCollection(ctx, tx, p, acct, false)
		}
		// More than POST /payments would charge (the invoice's total is
		// bounded only by int64): not charged, and its payment says why.
		err := errAmountTooLarge(inv.AmountDue)
		slog.WarnContext(ctx, "invoice not collected: its amount due is above the payment limit", "invoice_id", inv.InvoiceID,
			"amount_due", inv.AmountDue, "currency", string(cur))
		return s.recordRefusal(ctx, tx, p, false, string(CodeAmountTooLarge), err.Detail)
	}
	m, err := tx.DefaultMethod(ctx, acct.ID)
	if errors.Is(err, ErrNoMethod) {
		slog.InfoContext(ctx, "invoice not collected: the account has no default payment method", "invoice_id", inv.InvoiceID)
		return nil
	}
	if err != nil {
		return err
	}
	in := CreateInput{ID: InvoicePaymentID(inv.InvoiceID), AccountID: acct.ID, UserID: acct.UserID, InvoiceID: &invoiceID,
		Amount: inv.AmountDue, Currency: cur, PaymentMethod: m.ID, CaptureMethod: CaptureAutomatic, Confirm: true,
		Description: "Invoice " + Str(inv.Number), Metadata: map[string]string{"invoice_number": Str(inv.Number)}}
	_, err = s.Create(ctx, run, in, nil)
	var ae *apperr.Error
	if errors.As(err, &ae) && (ae.Code == CodeAmountPrecision || ae.Code == CodeAmountTooSmall) {
		// No gateway of the route can take the amount (refused before
		// any write): not charged, and its payment says why, as above.
		now := s.now()
		p := &Payment{ID: in.ID, AccountID: in.AccountID, UserID: in.UserID, InvoiceID: in.InvoiceID, Amount: in.Amount,
			Currency: cur, CaptureMethod: CaptureAutomatic, Description: in.Description, Metadata: in.Metadata, CreatedAt: now, UpdatedAt: now}
		slog.WarnContext(ctx, "invoice not collected: no gateway of its route takes its amount", "invoice_id", inv.InvoiceID,
			"amount_due", inv.AmountDue, "currency", string(cur), "code", string(ae.Code))
		return s.recordRefusal(ctx, tx, p, false, string(ae.Code), ae.Detail)
	}
	return err
}

// Reconcile asks the gateways for the truth about payments and refunds
// that waited longer than RECONCILE_AFTER, and settles them. Repeating a
// call uses the original idempotency key, so it never charges, captures or
// refunds twice.
func (s *Service) Reconcile(ctx context.Context) error {
	before := s.now().Add(-s.ReconcileAfter)
	ids, err := s.Store.Unsettled(ctx, before, 100)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if err := s.reconcilePayment(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("payment %s: %w", id, err))
		}
	}
	rids, err := s.Store.PendingRefunds(ctx, before, 100)
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

func (s *Service) reconcilePayment(ctx context.Context, id string) error {
	p, err := s.db().Payment(ctx, id, false)
	if err != nil {
		return err
	}
	op := p.Op()
	var (
		st   GatewayState
		cerr error
	)
	ask := p.Status == Processing || op != ""
	if ask {
		st, cerr = s.call(ctx, p, func(cctx context.Context, gw Gateway) (GatewayState, error) {
			if p.GatewayPaymentID != nil {
				st, err := gw.Retrieve(cctx, *p.GatewayPaymentID)
				var ge *GatewayError
				if !(errors.As(err, &ge) && ge.Code == "resource_missing" && op == OpConfirm) {
					return st, err
				}
			}
			if op != OpConfirm && p.Status != Processing {
				return GatewayState{}, &GatewayError{Gateway: gw.Name(), Code: "resource_missing", Rejected: true}
			}
			// The object's id never came back: repeat the original call
			// with its key; the gateway answers it (again) once.
			a, err := s.db().CurrentAttempt(ctx, p)
			if err != nil {
				return GatewayState{}, err
			}
			return gw.Charge(cctx, ChargeRequest{PaymentID: p.ID, Key: GatewayKey(p.ID, "a"+fmt.Sprint(p.Attempts)),
				GatewayPaymentID: p.GatewayObject(), Amount: p.Amount, Currency: p.Currency, PaymentMethod: a.PaymentMethod,
				CaptureMethod: p.CaptureMethod, Description: p.Description})
		})
	}
	var ge *GatewayError
	missing := errors.As(cerr, &ge) && ge.Code == "resource_missing"
	if cerr != nil && !missing {
		return cerr // try again at the next tick
	}
	err = s.Store.Fresh().Run(ctx, func(tx Tx) error {
		q, err := tx.Payment(ctx, id, true)
		if err != nil {
			return err
		}
		if !q.UpdatedAt.Equal(p.UpdatedAt) {
			return nil // someone else moved it meanwhile
		}
		now := s.now()
		e := emitter{ctx: ctx}
		if cerr == nil {
			e.changed(q, ApplyGateway(q, st, true, q.Attempts, now))
			if op == OpConfirm || q.Status != Processing {
				a := Attempt{N: q.Attempts, Status: AttemptStatus(q.Status), GatewayPaymentID: q.GatewayPaymentID, FinishedAt: &now}
				if q.Status == Processing {
					a.FinishedAt = nil
				}
				if le := q.LastPaymentError; q.Status == RequiresPaymentMethod && le != nil {
					a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage = &le.Code, Nullable(le.DeclineCode), &le.Reason, Nullable(le.Message)
				}
				if q.Attempts > 0 {
					if err := tx.FinishAttempt(ctx, q.ID, a); err != nil {
						return err
					}
				}
			}
		}
		if missing && q.Status == Processing && op == "" {
			// Not at the gateway at all: the attempt failed before it.
			e.changed(q, ApplyGateway(q, GatewayState{Status: RequiresPaymentMethod, At: SyncTime(now),
				Decline: &Decline{Code: "resource_missing", Message: "the gateway has no such payment"}}, true, q.Attempts, now))
		}
		q.SetOp("", now)
		q.Touch(now)
		if err := tx.UpdatePayment(ctx, q); err != nil {
			return err
		}
		return e.flush(tx)
	})
	if err == nil {
		s.kick()
	}
	return err
}

func (s *Service) reconcileRefund(ctx context.Context, id string) error {
	r, err := s.db().Refund(ctx, id, false)
	if err != nil {
		return err
	}
	gw := s.Gateways[r.Gateway]
	if gw == nil {
		return fmt.Errorf("gateway %s is not configured", r.Gateway)
	}
	cctx, cancel := postgres.DetachedFor(ctx, s.GatewayTimeout)
	defer cancel()
	var res RefundResult
	if r.GatewayRefundID != nil {
		res, err = gw.RetrieveRefund(cctx, *r.GatewayRefundID)
	} else {
		p, perr := s.db().Payment(ctx, r.PaymentID, false)
		if perr != nil {
			return perr
		}
		if r.LedgerHoldID == nil {
			// Its request stopped before the ledger answered: the ledger
			// goes first here too (a refusal removes the refund).
			if err := s.reserveRefund(ctx, p, r); err != nil {
				if s.refused(err) {
					return nil
				}
				return err
			}
		}
		res, err = gw.Refund(cctx, RefundRequest{PaymentID: p.ID, RefundID: r.ID, GatewayPaymentID: p.GatewayObject(),
			Key: GatewayKey(p.ID, "refund-"+r.ID), Amount: r.Amount, Currency: p.Currency, Reason: r.Reason})
	}
	if UnknownOutcome(err) {
		return err
	}
	_, err = s.finishRefund(ctx, s.Store.Fresh(), id, res, err, nil)
	return err
}

// Expire cancels authorizations older than AUTHORIZATION_TTL, releasing
// the hold (Stripe cancels uncaptured PaymentIntents after 7 days).
func (s *Service) Expire(ctx context.Context) error {
	ids, err := s.Store.ExpiredAuthorizations(ctx, s.now().Add(-s.AuthorizationTTL), 100)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		_, err := s.Cancel(ctx, s.Store.Fresh(), id, Anyone, "expired", nil)
		if err != nil && !s.refused(err) {
			errs = append(errs, fmt.Errorf("payment %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
