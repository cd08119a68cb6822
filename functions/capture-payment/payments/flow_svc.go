package main

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/problem"
)

// A write that calls a gateway runs in three steps: a transaction records
// the intent (the payment marked with the pending operation, the attempt
// row), the gateway call happens outside any transaction with an
// idempotency key derived from the payment, and a second transaction
// records the answer with its events and the idempotent response. A crash
// between the steps leaves a marked payment that a retry of the request
// (whose ids are derived from its Idempotency-Key) or the reconciliation
// tick completes by repeating the same idempotent gateway call.
//
// Event handlers run the same steps inside the receiver's transaction.

// createInput is a validated payment creation.
type createInput struct {
	ID, AccountID, UserID string
	InvoiceID             *string
	Amount                int64
	Currency              money.Currency
	PaymentMethod         string // a gateway token or a saved method id
	CaptureMethod         string
	Confirm               bool
	Gateway               string
	Description           string
	Metadata              map[string]string
}

// completer stores the HTTP response in the final business transaction
// (nil for event-driven work).
type completer func(ctx context.Context, tx pgx.Tx, status int, body any) error

// method is a payment method resolved to what a gateway takes.
type method struct {
	token   string
	gateway string // "" when any gateway may take it
}

// resolveMethod turns a payment_method (a saved method id of the account
// and owner, or a gateway token) into a token.
func resolveMethod(ctx context.Context, q db, accountID, userID, given string) (method, error) {
	if _, err := uuid.Parse(given); err == nil {
		m, err := getMethod(ctx, q, accountID, given)
		if errors.Is(err, payments.ErrNoMethod) || (err == nil && (m.AccountID != accountID || m.UserID != userID)) {
			return method{}, problem.New(payments.CodeMethodInvalid, "no saved payment method %s on account %s", given, accountID)
		}
		if err != nil {
			return method{}, err
		}
		out := method{token: m.Token}
		if m.Gateway != nil {
			out.gateway = *m.Gateway
		}
		return out, nil
	}
	if !payments.TokenRE.MatchString(given) {
		return method{}, problem.Invalid(problem.Field("payment_method", "must be a gateway token (pm_…) or a saved payment method id"))
	}
	return method{token: given}, nil
}

// plan returns the gateways to try in order.
func (s *service) plan(c money.Currency, requested string, m method) ([]string, error) {
	switch {
	case requested != "" && m.gateway != "" && requested != m.gateway:
		return nil, problem.New(payments.CodeMethodInvalid, "the saved payment method belongs to gateway %s, not %s", m.gateway, requested)
	case requested != "":
		return []string{requested}, nil
	case m.gateway != "":
		if s.gateways[m.gateway] == nil {
			return nil, problem.New(payments.CodeMethodInvalid, "the saved payment method's gateway %s is not configured", m.gateway)
		}
		return []string{m.gateway}, nil
	}
	gws := s.routing.For(c)
	if len(gws) == 0 {
		return nil, problem.New(payments.CodeNoRoute, "no gateway takes %s (GATEWAY_ROUTES)", c)
	}
	return gws, nil
}

// create records a payment and, with confirm, charges it.
func (s *service) create(ctx context.Context, run txRunner, in createInput, done completer) (*payments.Payment, error) {
	now := s.now()
	p := &payments.Payment{ID: in.ID, AccountID: in.AccountID, UserID: in.UserID, InvoiceID: in.InvoiceID, Amount: in.Amount,
		Currency: in.Currency, Status: payments.RequiresPaymentMethod, CaptureMethod: in.CaptureMethod, Description: in.Description,
		Metadata: in.Metadata, CreatedAt: now, UpdatedAt: now, RequestedGateway: in.Gateway, Announced: true}
	var (
		m    method
		plan []string
		err  error
	)
	if in.PaymentMethod != "" {
		if m, err = resolveMethod(ctx, run.db(), in.AccountID, in.UserID, in.PaymentMethod); err != nil {
			return nil, err
		}
		if plan, err = s.plan(in.Currency, in.Gateway, m); err != nil {
			return nil, err
		}
		pm := in.PaymentMethod
		p.PaymentMethod, p.Status = &pm, payments.RequiresConfirmation
	}
	if !in.Confirm {
		err := run.run(ctx, func(tx pgx.Tx) error {
			q := *p
			q.Finish()
			if err := s.gateInvoice(ctx, tx, &q, true); err != nil {
				return err
			}
			inserted, err := insertPayment(ctx, tx, &q)
			if err != nil {
				return err
			}
			if !inserted { // a re-run: answer what is there
				existing, err := getPayment(ctx, tx, in.ID, true)
				if err != nil {
					return err
				}
				*p = *existing
				return complete(ctx, tx, done, 201, p)
			}
			*p = q
			e := emitter{ctx: ctx}
			e.payment(evCreated, p, nil)
			if err := e.flush(tx); err != nil {
				return err
			}
			return complete(ctx, tx, done, 201, p)
		})
		return p, err
	}
	// The intent to charge is recorded before the gateway is called; the
	// payment is announced (payment.created) with the attempt's outcome.
	a := payments.StartAttempt(p, plan[0], now)
	a.PaymentMethod = m.token
	p.Announced = false
	p.Finish()
	inserted, err := s.insertCharging(ctx, run, p, a)
	if err != nil {
		return nil, err
	}
	if !inserted {
		// The same request ran before and stopped (a crash): carry on.
		resume := false
		err := run.run(ctx, func(tx pgx.Tx) error {
			existing, err := getPayment(ctx, tx, in.ID, true)
			if err != nil {
				return err
			}
			p, resume = existing, false
			if p.Op() == payments.OpConfirm {
				cur, err := currentAttempt(ctx, tx, p)
				if err != nil {
					return err
				}
				m, plan, resume = method{token: cur.PaymentMethod}, []string{p.GatewayName()}, true
				return nil
			}
			return complete(ctx, tx, done, 201, p)
		})
		if err != nil || !resume {
			return p, err
		}
	}
	return s.charge(ctx, run, p, m.token, plan, 201, done)
}

func complete(ctx context.Context, tx pgx.Tx, done completer, status int, body any) error {
	if done == nil {
		return nil
	}
	if p, ok := body.(*payments.Payment); ok {
		p.Finish()
	}
	return done(ctx, tx, status, body)
}

func currentAttempt(ctx context.Context, q db, p *payments.Payment) (payments.Attempt, error) {
	as, err := listAttempts(ctx, q, p.ID)
	if err != nil {
		return payments.Attempt{}, err
	}
	for _, a := range as {
		if a.N == p.Attempts {
			return a, nil
		}
	}
	return payments.Attempt{}, errors.New("payment " + p.ID + " has no attempt " + strconv.Itoa(p.Attempts))
}

// confirm starts a new attempt of an existing payment.
func (s *service) confirm(ctx context.Context, run txRunner, id string, can payments.Access, given string, done completer) (*payments.Payment, error) {
	var (
		p    *payments.Payment
		m    method
		plan []string
	)
	err := run.run(ctx, func(tx pgx.Tx) error {
		var err error
		if p, err = getPayment(ctx, tx, id, true); err != nil {
			return err
		}
		if !can.Allows(p) {
			return payments.ErrNotFound
		}
		if err := s.chargeable(ctx, p.AccountID); err != nil {
			return err
		}
		if given == "" {
			given = p.Method()
		}
		if err := payments.CheckConfirm(p, given); err != nil {
			return err
		}
		if err := s.gateInvoice(ctx, tx, p, false); err != nil {
			return err
		}
		if m, err = resolveMethod(ctx, tx, p.AccountID, p.UserID, given); err != nil {
			return err
		}
		if p.Status == payments.RequiresAction {
			plan = []string{p.GatewayName()} // the action belongs to that gateway's object
		} else if plan, err = s.plan(p.Currency, p.RequestedGateway, m); err != nil {
			return err
		}
		now := s.now()
		p.PaymentMethod = &given
		a := payments.StartAttempt(p, plan[0], now)
		a.PaymentMethod = m.token
		if err := insertAttempt(ctx, tx, p.ID, a); err != nil {
			return err
		}
		return updatePayment(ctx, tx, p)
	})
	if err != nil {
		return nil, err
	}
	return s.charge(ctx, run, p, m.token, plan, 200, done)
}

// charge calls the gateways of plan in order for p's current attempt,
// failing over on gateway-side errors (never on a decline, never after an
// unknown outcome), and records the answer.
func (s *service) charge(ctx context.Context, run txRunner, p *payments.Payment, token string, plan []string, status int, done completer) (*payments.Payment, error) {
	for i := 0; ; i++ {
		gw := s.gateways[p.GatewayName()]
		var (
			st  payments.GatewayState
			err error
		)
		if gw == nil {
			err = &payments.GatewayError{Gateway: p.GatewayName(), Code: "not_configured", Message: "the gateway is not configured"}
		} else {
			req := payments.ChargeRequest{PaymentID: p.ID, Key: payments.GatewayKey(p.ID, "a"+strconv.Itoa(p.Attempts)),
				GatewayPaymentID: p.GatewayObject(), Amount: p.Amount, Currency: p.Currency, PaymentMethod: token,
				CaptureMethod: p.CaptureMethod, Description: p.Description}
			cctx, cancel := detached(ctx, s.cfg.GatewayTimeout.D())
			t0 := time.Now()
			st, err = gw.Charge(cctx, req)
			observeCall(gw.Name(), "charge", t0, st.Status, err)
			cancel()
		}
		if payments.Definite(err) && i+1 < len(plan) {
			next, ferr := s.failover(ctx, run, p, plan[i+1], token, err)
			if ferr != nil {
				return nil, ferr
			}
			if next != nil {
				p = next
				continue
			}
		}
		return s.finishCharge(ctx, run, p, st, err, status, done)
	}
}

// failover closes the current attempt as a gateway error and opens the
// next on gateway next. It returns nil when another actor settled the
// attempt meanwhile.
func (s *service) failover(ctx context.Context, run txRunner, p *payments.Payment, next, token string, cause error) (*payments.Payment, error) {
	var out *payments.Payment
	dctx, cancel := detached(ctx, 10*time.Second)
	defer cancel()
	err := run.run(dctx, func(tx pgx.Tx) error {
		out = nil
		q, err := getPayment(dctx, tx, p.ID, true)
		if err != nil || q.Op() != payments.OpConfirm || q.Attempts != p.Attempts {
			return err
		}
		now := s.now()
		if err := finishAttempt(dctx, tx, q.ID, payments.FailedAttempt(q, now, cause)); err != nil {
			return err
		}
		slog.WarnContext(ctx, "gateway failed; trying the next", "payment_id", q.ID, "gateway", q.GatewayName(), "next", next, "err", cause.Error())
		a := payments.StartAttempt(q, next, now)
		a.PaymentMethod = token
		if err := insertAttempt(dctx, tx, q.ID, a); err != nil {
			return err
		}
		out = q
		return updatePayment(dctx, tx, q)
	})
	return out, err
}

// finishCharge records the answer (or the failure) of p's current attempt.
// p is the payment as the flow last wrote it: when nothing else wrote it
// since, the whole record (payment, attempt, events, response) goes to
// Postgres as one pipeline; otherwise it is applied to the locked row.
func (s *service) finishCharge(ctx context.Context, run txRunner, p *payments.Payment, st payments.GatewayState, callErr error, status int, done completer) (*payments.Payment, error) {
	n := p.Attempts
	if payments.UnknownOutcome(callErr) {
		slog.WarnContext(ctx, "gateway outcome unknown: reconciliation or a webhook will settle the payment",
			"payment_id", p.ID, "gateway", p.GatewayName(), "err", callErr.Error())
	}
	dctx, cancel := detached(ctx, 10*time.Second)
	defer cancel()
	if run.pipelined() {
		q := *p
		e := emitter{ctx: dctx}
		a := s.settleCharge(ctx, &q, n, st, callErr, &e)
		ok, err := s.pipeline(dctx, &q, p.UpdatedAt, a, &e, done, status)
		if err != nil {
			return nil, err
		}
		if ok {
			s.d.Publisher.Kick()
			return &q, nil
		}
	}
	var out *payments.Payment
	err := run.run(dctx, func(tx pgx.Tx) error {
		q, err := getPayment(dctx, tx, p.ID, true)
		if err != nil {
			return err
		}
		out = q
		e := emitter{ctx: dctx}
		if q.Op() == payments.OpConfirm && q.Attempts == n { // else settled meanwhile (reconciliation)
			a := s.settleCharge(ctx, q, n, st, callErr, &e)
			if err := finishAttempt(dctx, tx, q.ID, a); err != nil {
				return err
			}
			if err := updatePayment(dctx, tx, q); err != nil {
				return err
			}
		}
		if err := e.flush(tx); err != nil {
			return err
		}
		return complete(dctx, tx, done, status, q)
	})
	if err != nil {
		return nil, err
	}
	s.d.Publisher.Kick()
	return out, nil
}

// settleCharge applies the outcome of attempt n to p, adds its events to
// e, and returns the attempt's record.
func (s *service) settleCharge(_ context.Context, p *payments.Payment, n int, st payments.GatewayState, callErr error, e *emitter) payments.Attempt {
	now := s.now()
	a := payments.Attempt{N: n, FinishedAt: &now}
	var c payments.Change
	switch {
	case callErr == nil:
		c = payments.ApplyGateway(p, st, true, n, now)
		a.Status = payments.AttemptStatus(st.Status)
		if st.Status == payments.Processing {
			a.FinishedAt = nil
		}
		if d := st.Decline; d != nil && st.Status == payments.RequiresPaymentMethod {
			reason := payments.DeclineReason(d)
			a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage = &d.Code, payments.Nullable(d.DeclineCode), &reason, payments.Nullable(d.Message)
		}
	case payments.UnknownOutcome(callErr):
		// The gateway may have acted: the payment stays processing until
		// reconciliation or a webhook says.
		a.Status, a.FinishedAt = "processing", nil
		if p.Status != payments.Processing { // a webhook told the truth meanwhile
			a.Status, a.FinishedAt = payments.AttemptStatus(p.Status), &now
		}
	default: // a gateway-side error and no gateway left
		a = payments.FailedAttempt(p, now, callErr)
		var ge *payments.GatewayError
		errors.As(callErr, &ge)
		d := &payments.Decline{Code: ge.Code, DeclineCode: "gateway_unavailable", Message: ge.Message}
		if ge.Rejected {
			d.DeclineCode = ""
		}
		c = payments.ApplyGateway(p, payments.GatewayState{Status: payments.RequiresPaymentMethod, Decline: d, At: payments.SyncTime(now)}, true, n, now)
		reason := payments.DeclineReason(d)
		a.FailureReason = &reason
	}
	a.GatewayPaymentID = p.GatewayPaymentID
	p.SetOp("", now)
	p.UpdatedAt = now
	e.changed(p, c)
	return a
}

// pipeline writes a flow's finishing record as one pipeline in one
// implicit transaction: the payment (only if still at version) and its
// attempt, the outbox events, the idempotent response. It reports false,
// having written nothing, when the payment moved since.
func (s *service) pipeline(ctx context.Context, p *payments.Payment, version time.Time, a payments.Attempt, e *emitter, done completer, status int) (bool, error) {
	b := &pgx.Batch{}
	guardedUpdate(b, p, version, a)
	q := pgbatch.Queue(b)
	if err := e.flush(q); err != nil {
		return false, err
	}
	if err := complete(ctx, q, done, status, p); err != nil {
		return false, err
	}
	err := pgbatch.Send(ctx, s.d.Pool, b)
	if staleVersion(err) {
		return false, nil
	}
	return err == nil, err
}

// capture captures amount (0 = all) of an authorization.
func (s *service) capture(ctx context.Context, id string, can payments.Access, amount int64, done completer) (*payments.Payment, error) {
	// One statement marks the capture, or finds why it cannot be.
	now := s.now()
	b := &pgx.Batch{}
	// Asynchronous for the sandbox (see asyncCommit): a lost mark is
	// harmless, the capture's key is fixed and the sandbox is in the WAL.
	b.Queue(`SELECT set_config('synchronous_commit', CASE (SELECT gateway FROM payments WHERE id = $1)
		WHEN 'sandbox' THEN 'off' ELSE 'on' END, true)`, id)
	b.Queue(`UPDATE payments SET pending_op = 'capture', op_started_at = $2, updated_at = $2
		WHERE id = $1 AND status = 'requires_capture' AND pending_op IS NULL AND ($3 = '' OR user_id::text = $3)
		AND ($4 = 0 OR amount_capturable >= $4) RETURNING `+paymentCols, id, now, can.User, amount)
	br := s.d.Pool.SendBatch(ctx, b)
	_, err := br.Exec()
	var p *payments.Payment
	if err == nil {
		p, err = scanPayment(br.QueryRow())
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) {
		cur, err := getPayment(ctx, s.d.Pool, id, false)
		if err != nil {
			return nil, err
		}
		if !can.Allows(cur) {
			return nil, payments.ErrNotFound
		}
		if _, err := payments.CheckCapture(cur, amount); err != nil {
			return nil, err
		}
		return nil, problem.New(payments.CodeOpInProgress, "the payment changed while capturing; retry")
	}
	if err != nil {
		return nil, err
	}
	amt := amount
	if amt == 0 {
		amt = p.AmountCapturable
	}
	st, cerr := s.call(ctx, p, func(ctx context.Context, gw payments.Gateway) (payments.GatewayState, error) {
		return gw.Capture(ctx, payments.CaptureRequest{PaymentID: id, GatewayPaymentID: p.GatewayObject(), Key: payments.GatewayKey(id, "capture"), Amount: amt})
	})
	return s.finishOp(ctx, s.fresh(), p, payments.OpCapture, st, cerr, done)
}

// call runs one gateway call for p with the gateway timeout.
func (s *service) call(ctx context.Context, p *payments.Payment, fn func(context.Context, payments.Gateway) (payments.GatewayState, error)) (payments.GatewayState, error) {
	gw := s.gateways[p.GatewayName()]
	if gw == nil {
		return payments.GatewayState{}, &payments.GatewayError{Gateway: p.GatewayName(), Code: "not_configured", Message: "the gateway is not configured"}
	}
	cctx, cancel := detached(ctx, s.cfg.GatewayTimeout.D())
	defer cancel()
	t0 := time.Now()
	st, err := fn(cctx, gw)
	observeCall(gw.Name(), "operation", t0, st.Status, err)
	return st, err
}

// finishOp records the answer to a capture or cancel of p (the payment as
// the flow marked it), pipelined when nothing else wrote it since.
func (s *service) finishOp(ctx context.Context, run txRunner, p *payments.Payment, op string, st payments.GatewayState, callErr error, done completer) (*payments.Payment, error) {
	dctx, cancel := detached(ctx, 10*time.Second)
	defer cancel()
	if run.pipelined() {
		q := *p
		e := emitter{ctx: dctx}
		status, opErr := s.settleOp(ctx, &q, op, st, callErr, &e)
		if opErr != nil {
			done = nil // an error answer is not the operation's result
		}
		ok, err := s.pipeline(dctx, &q, p.UpdatedAt, payments.Attempt{}, &e, done, status)
		if err != nil {
			return nil, err
		}
		if ok {
			s.d.Publisher.Kick()
			if opErr != nil {
				return nil, opErr
			}
			q.Finish()
			return &q, nil
		}
	}
	var (
		out   *payments.Payment
		opErr error
	)
	err := run.run(dctx, func(tx pgx.Tx) error {
		q, err := getPayment(dctx, tx, p.ID, true)
		if err != nil {
			return err
		}
		out, opErr = q, nil
		status := 200
		e := emitter{ctx: dctx}
		if q.Op() == op {
			status, opErr = s.settleOp(ctx, q, op, st, callErr, &e)
			if err := updatePayment(dctx, tx, q); err != nil {
				return err
			}
		}
		if err := e.flush(tx); err != nil {
			return err
		}
		if opErr != nil {
			return nil
		}
		return complete(dctx, tx, done, status, q)
	})
	if err != nil {
		return nil, err
	}
	s.d.Publisher.Kick()
	if opErr != nil {
		return nil, opErr
	}
	out.Finish()
	return out, nil
}

// settleOp applies the answer to operation op to p and returns the status
// of the answer, or the error to answer instead.
func (s *service) settleOp(ctx context.Context, p *payments.Payment, op string, st payments.GatewayState, callErr error, e *emitter) (int, error) {
	now := s.now()
	p.UpdatedAt = now
	switch {
	case callErr == nil:
		e.changed(p, payments.ApplyGateway(p, st, true, p.Attempts, now))
		p.SetOp("", now)
		return 200, nil
	case payments.UnknownOutcome(callErr):
		// Reconciliation asks the gateway and clears the mark; the same
		// key makes a repeated call harmless.
		slog.WarnContext(ctx, "gateway outcome unknown", "payment_id", p.ID, "operation", op, "err", callErr.Error())
		return 202, nil
	}
	p.SetOp("", now)
	return 0, gatewayProblem(callErr)
}

// gatewayProblem is the answer to an operation a gateway refused or could
// not take.
func gatewayProblem(err error) error {
	var ge *payments.GatewayError
	if errors.As(err, &ge) && ge.Rejected {
		return (&problem.Error{Code: payments.CodeGatewayRejected, Detail: "the gateway refused: " + ge.Message, Err: err}).
			With("gateway", ge.Gateway).With("gateway_code", ge.Code)
	}
	return &problem.Error{Code: payments.CodeGatewayUnavailable, Detail: "the payment gateway could not be reached; retry", RetryAfter: time.Second, Err: err}
}

// cancel cancels a payment, at the gateway when an object exists there.
func (s *service) cancel(ctx context.Context, run txRunner, id string, can payments.Access, reason string, done completer) (*payments.Payment, error) {
	var (
		p     *payments.Payment
		local bool
	)
	err := run.run(ctx, func(tx pgx.Tx) error {
		var err error
		if p, err = getPayment(ctx, tx, id, true); err != nil {
			return err
		}
		if !can.Allows(p) {
			return payments.ErrNotFound
		}
		if err := payments.CheckCancel(p); err != nil {
			return err
		}
		now := s.now()
		p.CancellationReason = payments.Nullable(reason)
		if p.GatewayPaymentID == nil {
			// Nothing at any gateway: cancel here.
			local = true
			e := emitter{ctx: ctx}
			e.changed(p, payments.ApplyGateway(p, payments.GatewayState{Status: payments.Canceled, At: payments.SyncTime(now)}, true, p.Attempts, now))
			if err := updatePayment(ctx, tx, p); err != nil {
				return err
			}
			if err := e.flush(tx); err != nil {
				return err
			}
			return complete(ctx, tx, done, 200, p)
		}
		p.SetOp(payments.OpCancel, now)
		p.UpdatedAt = now
		return updatePayment(ctx, tx, p)
	})
	if err != nil || local {
		if err == nil {
			s.d.Publisher.Kick()
		}
		return p, err
	}
	st, cerr := s.call(ctx, p, func(ctx context.Context, gw payments.Gateway) (payments.GatewayState, error) {
		return gw.Cancel(ctx, payments.CancelRequest{PaymentID: id, GatewayPaymentID: p.GatewayObject(), Key: payments.GatewayKey(id, "cancel"), Reason: reason})
	})
	var ge *payments.GatewayError
	if errors.As(cerr, &ge) && ge.Rejected && ge.Code == "resource_missing" {
		// The gateway never saw this payment (its attempt failed before
		// reaching it): nothing to cancel there.
		st, cerr = payments.GatewayState{Status: payments.Canceled, At: payments.SyncTime(s.now())}, nil
	}
	return s.finishOp(ctx, run, p, payments.OpCancel, st, cerr, done)
}

// refund refunds amount (0 = all that is left) of a captured payment.
func (s *service) refund(ctx context.Context, paymentID, refundID string, can payments.Access, amount int64, reason string, done completer) (*payments.Refund, error) {
	var (
		p     *payments.Payment
		r     *payments.Refund
		final bool
	)
	err := s.newTx(ctx, func(tx pgx.Tx) error {
		var err error
		final = false
		if p, err = getPayment(ctx, tx, paymentID, true); err != nil {
			return err
		}
		if !can.Allows(p) {
			return payments.ErrNotFound
		}
		if r, err = getRefund(ctx, tx, refundID, true); err == nil {
			// The same request ran before and stopped: carry on.
			if r.Status == "pending" && r.GatewayRefundID == nil {
				return nil
			}
			final = true
			return complete(ctx, tx, done, 201, r)
		} else if !errors.Is(err, payments.ErrNoRefund) {
			return err
		}
		amt, err := payments.CheckRefund(p, amount)
		if err != nil {
			return err
		}
		src, err := holdSource(ctx, tx, p, amt)
		if err != nil {
			return err
		}
		now := s.now()
		p.RefundCount++
		p.AmountRefundPending += amt
		p.UpdatedAt = now
		r = &payments.Refund{ID: refundID, PaymentID: p.ID, N: p.RefundCount, AccountID: p.AccountID, UserID: p.UserID,
			InvoiceID: p.InvoiceID, Amount: amt, Currency: string(p.Currency), Gateway: p.GatewayName(),
			GatewayPaymentID: p.GatewayPaymentID, Status: "pending", Reason: reason, CreatedAt: now, UpdatedAt: now, HoldSource: &src}
		if _, err := insertRefund(ctx, tx, r); err != nil {
			return err
		}
		return updatePayment(ctx, tx, p)
	})
	if err != nil || final {
		return r, err
	}
	if r.LedgerHoldID == nil {
		if err := s.reserveRefund(ctx, p, r); err != nil {
			return nil, err
		}
	}
	var (
		res  payments.RefundResult
		cerr error
	)
	if gw := s.gateways[r.Gateway]; gw == nil {
		cerr = &payments.GatewayError{Gateway: r.Gateway, Code: "not_configured", Message: "the gateway is not configured"}
	} else {
		cctx, cancel := detached(ctx, s.cfg.GatewayTimeout.D())
		t0 := time.Now()
		res, cerr = gw.Refund(cctx, payments.RefundRequest{PaymentID: p.ID, RefundID: r.ID, GatewayPaymentID: p.GatewayObject(),
			Key: payments.GatewayKey(p.ID, "refund-"+r.ID), Amount: r.Amount, Currency: p.Currency, Reason: r.Reason})
		observeCall(gw.Name(), "refund", t0, "", cerr)
		cancel()
	}
	return s.finishRefund(ctx, s.fresh(), r.ID, res, cerr, done)
}

// reserveRefund reserves r's amount in the ledger before the gateway is
// asked (see ledger.go). A refusal removes the pending refund, so a
// refused request leaves nothing behind; an unreachable ledger leaves it
// pending, and a retry with the same Idempotency-Key carries on.
func (s *service) reserveRefund(ctx context.Context, p *payments.Payment, r *payments.Refund) error {
	dctx, cancel := detached(ctx, 10*time.Second)
	defer cancel()
	hold, rerr := s.reserve(dctx, p, r)
	var pe *problem.Error
	if rerr != nil && (!errors.As(rerr, &pe) || pe.Status() >= 500) {
		return rerr
	}
	err := s.newTx(dctx, func(tx pgx.Tx) error {
		pp, rr, err := lockRefund(dctx, tx, r.ID)
		if err != nil {
			return err
		}
		if rerr != nil {
			if rr.Status == "pending" && rr.GatewayRefundID == nil && rr.LedgerHoldID == nil {
				pp.AmountRefundPending -= rr.Amount
				if err := deleteRefund(dctx, tx, rr.ID); err != nil {
					return err
				}
				return updatePayment(dctx, tx, pp)
			}
			return nil
		}
		rr.LedgerHoldID = &hold
		r.LedgerHoldID = &hold
		return updateRefund(dctx, tx, rr)
	})
	if err != nil {
		return err
	}
	return rerr
}

// finishRefund records a gateway's answer to a refund.
func (s *service) finishRefund(ctx context.Context, run txRunner, id string, res payments.RefundResult, callErr error, done completer) (*payments.Refund, error) {
	var r *payments.Refund
	dctx, cancel := detached(ctx, 10*time.Second)
	defer cancel()
	err := run.run(dctx, func(tx pgx.Tx) error {
		p, rr, err := lockRefund(dctx, tx, id)
		if err != nil {
			return err
		}
		r = rr
		e := emitter{ctx: dctx}
		if r.Status == "pending" {
			now := s.now()
			switch {
			case callErr == nil:
				r.GatewayRefundID = payments.Nullable(res.GatewayRefundID)
				settleRefund(p, r, res.Status, res.FailureReason, now, &e)
			case payments.UnknownOutcome(callErr):
				slog.WarnContext(ctx, "gateway outcome unknown; the refund stays pending", "refund_id", id, "err", callErr.Error())
			default:
				var ge *payments.GatewayError
				errors.As(callErr, &ge)
				reason := "gateway_unavailable"
				if ge.Rejected {
					reason = ge.Code
				}
				settleRefund(p, r, "failed", reason, now, &e)
			}
			r.UpdatedAt = now
			if err := updateRefund(dctx, tx, r); err != nil {
				return err
			}
			if err := updatePayment(dctx, tx, p); err != nil {
				return err
			}
		}
		if err := e.flush(tx); err != nil {
			return err
		}
		return complete(dctx, tx, done, 201, r)
	})
	if err != nil {
		return nil, err
	}
	s.d.Publisher.Kick()
	return r, nil
}

// lockRefund locks a refund and its payment (payment first, as every
// other writer does).
func lockRefund(ctx context.Context, tx pgx.Tx, id string) (*payments.Payment, *payments.Refund, error) {
	var pid string
	if err := tx.QueryRow(ctx, `SELECT payment_id FROM refunds WHERE id = $1`, id).Scan(&pid); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, payments.ErrNoRefund
		}
		return nil, nil, err
	}
	p, err := getPayment(ctx, tx, pid, true)
	if err != nil {
		return nil, nil, err
	}
	r, err := getRefund(ctx, tx, id, true)
	return p, r, err
}

// settleRefund applies a refund's new status to it and its payment.
func settleRefund(p *payments.Payment, r *payments.Refund, status, failure string, now time.Time, e *emitter) {
	switch status {
	case "succeeded":
		p.AmountRefundPending -= r.Amount
		p.AmountRefunded += r.Amount
		r.Status = "succeeded"
		if r.LedgerHoldID != nil {
			e.resolveHold(p, r, true)
		} else {
			e.refundPostings(p, r) // a refund the gateway reported on its own
		}
		e.refund(evRefundOK, r)
	case "failed", "canceled":
		p.AmountRefundPending -= r.Amount
		r.Status = status
		r.FailureReason = payments.Nullable(failure)
		if r.FailureReason == nil {
			r.FailureReason = payments.Nullable(status)
		}
		e.resolveHold(p, r, false)
		e.refund(evRefundFail, r)
	default: // pending or requires_action: a webhook or reconciliation settles it
	}
	p.UpdatedAt, r.UpdatedAt = now, now
}
