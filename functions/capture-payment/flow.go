package main

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

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

var (
	paymentNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/capture-payment/payment"))
	refundNS  = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/capture-payment/refund"))
	invoiceNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/capture-payment/invoice"))
)

// derivedID is the id of the resource a request creates: the same for a
// retry with the same Idempotency-Key by the same caller.
func derivedID(ns uuid.UUID, scope, key string) string {
	return uuid.NewSHA1(ns, []byte(scope+"\x00"+key)).String()
}

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

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_]{3,255}$`)

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
		if errors.Is(err, errNoMethod) || (err == nil && (m.AccountID != accountID || m.UserID != userID)) {
			return method{}, problem.New(codeMethodInvalid, "no saved payment method %s on account %s", given, accountID)
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
	if !tokenRE.MatchString(given) {
		return method{}, problem.Invalid(problem.Field("payment_method", "must be a gateway token (pm_…) or a saved payment method id"))
	}
	return method{token: given}, nil
}

// plan returns the gateways to try in order.
func (s *service) plan(c money.Currency, requested string, m method) ([]string, error) {
	switch {
	case requested != "" && m.gateway != "" && requested != m.gateway:
		return nil, problem.New(codeMethodInvalid, "the saved payment method belongs to gateway %s, not %s", m.gateway, requested)
	case requested != "":
		return []string{requested}, nil
	case m.gateway != "":
		if s.gateways[m.gateway] == nil {
			return nil, problem.New(codeMethodInvalid, "the saved payment method's gateway %s is not configured", m.gateway)
		}
		return []string{m.gateway}, nil
	}
	gws := s.routing.For(c)
	if len(gws) == 0 {
		return nil, problem.New(codeNoRoute, "no gateway takes %s (GATEWAY_ROUTES)", c)
	}
	return gws, nil
}

// startAttempt marks p as confirming at gateway with a new attempt.
func startAttempt(p *Payment, gateway string, now time.Time) Attempt {
	p.Status = Processing
	p.Attempts++
	p.setOp(opConfirm, now)
	if p.gateway() != gateway {
		p.Gateway, p.GatewayPaymentID = &gateway, nil
	}
	if gateway == gwSandbox && p.GatewayPaymentID == nil {
		id := sandboxIntentID(p.ID)
		p.GatewayPaymentID = &id
	}
	p.UpdatedAt = now
	return Attempt{N: p.Attempts, Gateway: gateway, Status: "pending", StartedAt: now}
}

// create records a payment and, with confirm, charges it.
func (s *service) create(ctx context.Context, run txRunner, in createInput, done completer) (*Payment, error) {
	now := s.now()
	p := &Payment{ID: in.ID, AccountID: in.AccountID, UserID: in.UserID, InvoiceID: in.InvoiceID, Amount: in.Amount,
		Currency: in.Currency, Status: RequiresPaymentMethod, CaptureMethod: in.CaptureMethod, Description: in.Description,
		Metadata: in.Metadata, CreatedAt: now, UpdatedAt: now, requestedGateway: in.Gateway, announced: true}
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
		p.PaymentMethod, p.Status = &pm, RequiresConfirmation
	}
	if !in.Confirm {
		err := run.run(ctx, func(tx pgx.Tx) error {
			q := *p
			q.finish()
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
	a := startAttempt(p, plan[0], now)
	a.PaymentMethod = m.token
	p.announced = false
	p.finish()
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
			if p.op() == opConfirm {
				cur, err := currentAttempt(ctx, tx, p)
				if err != nil {
					return err
				}
				m, plan, resume = method{token: cur.PaymentMethod}, []string{p.gateway()}, true
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
	if p, ok := body.(*Payment); ok {
		p.finish()
	}
	return done(ctx, tx, status, body)
}

func currentAttempt(ctx context.Context, q db, p *Payment) (Attempt, error) {
	as, err := listAttempts(ctx, q, p.ID)
	if err != nil {
		return Attempt{}, err
	}
	for _, a := range as {
		if a.N == p.Attempts {
			return a, nil
		}
	}
	return Attempt{}, errors.New("payment " + p.ID + " has no attempt " + strconv.Itoa(p.Attempts))
}

// access decides whether the caller may act on a payment (someone else's
// answers 404, as a missing one).
type access struct {
	user string // "" for admin, service and the function itself
}

func (a access) ok(p *Payment) bool { return a.user == "" || p.UserID == a.user }

var anyone = access{}

// confirm starts a new attempt of an existing payment.
func (s *service) confirm(ctx context.Context, run txRunner, id string, can access, given string, done completer) (*Payment, error) {
	var (
		p    *Payment
		m    method
		plan []string
	)
	err := run.run(ctx, func(tx pgx.Tx) error {
		var err error
		if p, err = getPayment(ctx, tx, id, true); err != nil {
			return err
		}
		if !can.ok(p) {
			return errNotFound
		}
		if err := s.chargeable(ctx, p.AccountID); err != nil {
			return err
		}
		if given == "" {
			given = p.method()
		}
		if err := checkConfirm(p, given); err != nil {
			return err
		}
		if err := s.gateInvoice(ctx, tx, p, false); err != nil {
			return err
		}
		if m, err = resolveMethod(ctx, tx, p.AccountID, p.UserID, given); err != nil {
			return err
		}
		if p.Status == RequiresAction {
			plan = []string{p.gateway()} // the action belongs to that gateway's object
		} else if plan, err = s.plan(p.Currency, p.requestedGateway, m); err != nil {
			return err
		}
		now := s.now()
		p.PaymentMethod = &given
		a := startAttempt(p, plan[0], now)
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
func (s *service) charge(ctx context.Context, run txRunner, p *Payment, token string, plan []string, status int, done completer) (*Payment, error) {
	for i := 0; ; i++ {
		gw := s.gateways[p.gateway()]
		var (
			st  GatewayState
			err error
		)
		if gw == nil {
			err = &GatewayError{Gateway: p.gateway(), Code: "not_configured", Message: "the gateway is not configured"}
		} else {
			req := ChargeRequest{PaymentID: p.ID, Key: gatewayKey(p.ID, "a"+strconv.Itoa(p.Attempts)),
				GatewayPaymentID: p.gatewayPaymentID(), Amount: p.Amount, Currency: p.Currency, PaymentMethod: token,
				CaptureMethod: p.CaptureMethod, Description: p.Description}
			cctx, cancel := detached(ctx, s.cfg.GatewayTimeout.D())
			t0 := time.Now()
			st, err = gw.Charge(cctx, req)
			observeCall(gw.Name(), "charge", t0, st.Status, err)
			cancel()
		}
		if definite(err) && i+1 < len(plan) {
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
func (s *service) failover(ctx context.Context, run txRunner, p *Payment, next, token string, cause error) (*Payment, error) {
	var out *Payment
	dctx, cancel := detached(ctx, 10*time.Second)
	defer cancel()
	err := run.run(dctx, func(tx pgx.Tx) error {
		out = nil
		q, err := getPayment(dctx, tx, p.ID, true)
		if err != nil || q.op() != opConfirm || q.Attempts != p.Attempts {
			return err
		}
		now := s.now()
		if err := finishAttempt(dctx, tx, q.ID, failedAttempt(q, now, cause)); err != nil {
			return err
		}
		slog.WarnContext(ctx, "gateway failed; trying the next", "payment_id", q.ID, "gateway", q.gateway(), "next", next, "err", cause.Error())
		a := startAttempt(q, next, now)
		a.PaymentMethod = token
		if err := insertAttempt(dctx, tx, q.ID, a); err != nil {
			return err
		}
		out = q
		return updatePayment(dctx, tx, q)
	})
	return out, err
}

func failedAttempt(p *Payment, now time.Time, cause error) Attempt {
	a := Attempt{N: p.Attempts, Status: "failed", GatewayPaymentID: p.GatewayPaymentID, GatewayError: true, FinishedAt: &now}
	var ge *GatewayError
	if errors.As(cause, &ge) {
		a.FailureCode, a.FailureMessage = &ge.Code, nullable(ge.Message)
	}
	reason := "gateway_unavailable"
	a.FailureReason = &reason
	return a
}

// attemptStatus is an attempt's status after a gateway state.
func attemptStatus(s Status) string {
	switch s {
	case Succeeded, RequiresCapture, RequiresAction, Processing, Canceled:
		return string(s)
	case RequiresPaymentMethod:
		return "failed"
	}
	return "processing"
}

// finishCharge records the answer (or the failure) of p's current attempt.
// p is the payment as the flow last wrote it: when nothing else wrote it
// since, the whole record (payment, attempt, events, response) goes to
// Postgres as one pipeline; otherwise it is applied to the locked row.
func (s *service) finishCharge(ctx context.Context, run txRunner, p *Payment, st GatewayState, callErr error, status int, done completer) (*Payment, error) {
	n := p.Attempts
	if unknownOutcome(callErr) {
		slog.WarnContext(ctx, "gateway outcome unknown: reconciliation or a webhook will settle the payment",
			"payment_id", p.ID, "gateway", p.gateway(), "err", callErr.Error())
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
	var out *Payment
	err := run.run(dctx, func(tx pgx.Tx) error {
		q, err := getPayment(dctx, tx, p.ID, true)
		if err != nil {
			return err
		}
		out = q
		e := emitter{ctx: dctx}
		if q.op() == opConfirm && q.Attempts == n { // else settled meanwhile (reconciliation)
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
func (s *service) settleCharge(_ context.Context, p *Payment, n int, st GatewayState, callErr error, e *emitter) Attempt {
	now := s.now()
	a := Attempt{N: n, FinishedAt: &now}
	var c change
	switch {
	case callErr == nil:
		c = applyGateway(p, st, true, n, now)
		a.Status = attemptStatus(st.Status)
		if st.Status == Processing {
			a.FinishedAt = nil
		}
		if d := st.Decline; d != nil && st.Status == RequiresPaymentMethod {
			reason := declineReason(d)
			a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage = &d.Code, nullable(d.DeclineCode), &reason, nullable(d.Message)
		}
	case unknownOutcome(callErr):
		// The gateway may have acted: the payment stays processing until
		// reconciliation or a webhook says.
		a.Status, a.FinishedAt = "processing", nil
		if p.Status != Processing { // a webhook told the truth meanwhile
			a.Status, a.FinishedAt = attemptStatus(p.Status), &now
		}
	default: // a gateway-side error and no gateway left
		a = failedAttempt(p, now, callErr)
		var ge *GatewayError
		errors.As(callErr, &ge)
		d := &Decline{Code: ge.Code, DeclineCode: "gateway_unavailable", Message: ge.Message}
		if ge.Rejected {
			d.DeclineCode = ""
		}
		c = applyGateway(p, GatewayState{Status: RequiresPaymentMethod, Decline: d, At: syncTime(now)}, true, n, now)
		reason := declineReason(d)
		a.FailureReason = &reason
	}
	a.GatewayPaymentID = p.GatewayPaymentID
	p.setOp("", now)
	p.UpdatedAt = now
	e.changed(p, c)
	return a
}

// pipeline writes a flow's finishing record as one pipeline in one
// implicit transaction: the payment (only if still at version) and its
// attempt, the outbox events, the idempotent response. It reports false,
// having written nothing, when the payment moved since.
func (s *service) pipeline(ctx context.Context, p *Payment, version time.Time, a Attempt, e *emitter, done completer, status int) (bool, error) {
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
func (s *service) capture(ctx context.Context, id string, can access, amount int64, done completer) (*Payment, error) {
	// One statement marks the capture, or finds why it cannot be.
	now := s.now()
	b := &pgx.Batch{}
	// Asynchronous for the sandbox (see asyncCommit): a lost mark is
	// harmless, the capture's key is fixed and the sandbox is in the WAL.
	b.Queue(`SELECT set_config('synchronous_commit', CASE (SELECT gateway FROM payments WHERE id = $1)
		WHEN 'sandbox' THEN 'off' ELSE 'on' END, true)`, id)
	b.Queue(`UPDATE payments SET pending_op = 'capture', op_started_at = $2, updated_at = $2
		WHERE id = $1 AND status = 'requires_capture' AND pending_op IS NULL AND ($3 = '' OR user_id::text = $3)
		AND ($4 = 0 OR amount_capturable >= $4) RETURNING `+paymentCols, id, now, can.user, amount)
	br := s.d.Pool.SendBatch(ctx, b)
	_, err := br.Exec()
	var p *Payment
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
		if !can.ok(cur) {
			return nil, errNotFound
		}
		if _, err := checkCapture(cur, amount); err != nil {
			return nil, err
		}
		return nil, problem.New(codeOpInProgress, "the payment changed while capturing; retry")
	}
	if err != nil {
		return nil, err
	}
	amt := amount
	if amt == 0 {
		amt = p.AmountCapturable
	}
	st, cerr := s.call(ctx, p, func(ctx context.Context, gw Gateway) (GatewayState, error) {
		return gw.Capture(ctx, CaptureRequest{PaymentID: id, GatewayPaymentID: p.gatewayPaymentID(), Key: gatewayKey(id, "capture"), Amount: amt})
	})
	return s.finishOp(ctx, s.fresh(), p, opCapture, st, cerr, done)
}

// call runs one gateway call for p with the gateway timeout.
func (s *service) call(ctx context.Context, p *Payment, fn func(context.Context, Gateway) (GatewayState, error)) (GatewayState, error) {
	gw := s.gateways[p.gateway()]
	if gw == nil {
		return GatewayState{}, &GatewayError{Gateway: p.gateway(), Code: "not_configured", Message: "the gateway is not configured"}
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
func (s *service) finishOp(ctx context.Context, run txRunner, p *Payment, op string, st GatewayState, callErr error, done completer) (*Payment, error) {
	dctx, cancel := detached(ctx, 10*time.Second)
	defer cancel()
	if run.pipelined() {
		q := *p
		e := emitter{ctx: dctx}
		status, opErr := s.settleOp(ctx, &q, op, st, callErr, &e)
		if opErr != nil {
			done = nil // an error answer is not the operation's result
		}
		ok, err := s.pipeline(dctx, &q, p.UpdatedAt, Attempt{}, &e, done, status)
		if err != nil {
			return nil, err
		}
		if ok {
			s.d.Publisher.Kick()
			if opErr != nil {
				return nil, opErr
			}
			q.finish()
			return &q, nil
		}
	}
	var (
		out   *Payment
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
		if q.op() == op {
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
	out.finish()
	return out, nil
}

// settleOp applies the answer to operation op to p and returns the status
// of the answer, or the error to answer instead.
func (s *service) settleOp(ctx context.Context, p *Payment, op string, st GatewayState, callErr error, e *emitter) (int, error) {
	now := s.now()
	p.UpdatedAt = now
	switch {
	case callErr == nil:
		e.changed(p, applyGateway(p, st, true, p.Attempts, now))
		p.setOp("", now)
		return 200, nil
	case unknownOutcome(callErr):
		// Reconciliation asks the gateway and clears the mark; the same
		// key makes a repeated call harmless.
		slog.WarnContext(ctx, "gateway outcome unknown", "payment_id", p.ID, "operation", op, "err", callErr.Error())
		return 202, nil
	}
	p.setOp("", now)
	return 0, gatewayProblem(callErr)
}

// gatewayProblem is the answer to an operation a gateway refused or could
// not take.
func gatewayProblem(err error) error {
	var ge *GatewayError
	if errors.As(err, &ge) && ge.Rejected {
		return (&problem.Error{Code: codeGatewayRejected, Detail: "the gateway refused: " + ge.Message, Err: err}).
			With("gateway", ge.Gateway).With("gateway_code", ge.Code)
	}
	return &problem.Error{Code: codeGatewayUnavailable, Detail: "the payment gateway could not be reached; retry", RetryAfter: time.Second, Err: err}
}

// cancel cancels a payment, at the gateway when an object exists there.
func (s *service) cancel(ctx context.Context, run txRunner, id string, can access, reason string, done completer) (*Payment, error) {
	var (
		p     *Payment
		local bool
	)
	err := run.run(ctx, func(tx pgx.Tx) error {
		var err error
		if p, err = getPayment(ctx, tx, id, true); err != nil {
			return err
		}
		if !can.ok(p) {
			return errNotFound
		}
		if err := checkCancel(p); err != nil {
			return err
		}
		now := s.now()
		p.CancellationReason = nullable(reason)
		if p.GatewayPaymentID == nil {
			// Nothing at any gateway: cancel here.
			local = true
			e := emitter{ctx: ctx}
			e.changed(p, applyGateway(p, GatewayState{Status: Canceled, At: syncTime(now)}, true, p.Attempts, now))
			if err := updatePayment(ctx, tx, p); err != nil {
				return err
			}
			if err := e.flush(tx); err != nil {
				return err
			}
			return complete(ctx, tx, done, 200, p)
		}
		p.setOp(opCancel, now)
		p.UpdatedAt = now
		return updatePayment(ctx, tx, p)
	})
	if err != nil || local {
		if err == nil {
			s.d.Publisher.Kick()
		}
		return p, err
	}
	st, cerr := s.call(ctx, p, func(ctx context.Context, gw Gateway) (GatewayState, error) {
		return gw.Cancel(ctx, CancelRequest{PaymentID: id, GatewayPaymentID: p.gatewayPaymentID(), Key: gatewayKey(id, "cancel"), Reason: reason})
	})
	var ge *GatewayError
	if errors.As(cerr, &ge) && ge.Rejected && ge.Code == "resource_missing" {
		// The gateway never saw this payment (its attempt failed before
		// reaching it): nothing to cancel there.
		st, cerr = GatewayState{Status: Canceled, At: syncTime(s.now())}, nil
	}
	return s.finishOp(ctx, run, p, opCancel, st, cerr, done)
}

// refund refunds amount (0 = all that is left) of a captured payment.
func (s *service) refund(ctx context.Context, paymentID, refundID string, can access, amount int64, reason string, done completer) (*Refund, error) {
	var (
		p     *Payment
		r     *Refund
		final bool
	)
	err := s.newTx(ctx, func(tx pgx.Tx) error {
		var err error
		final = false
		if p, err = getPayment(ctx, tx, paymentID, true); err != nil {
			return err
		}
		if !can.ok(p) {
			return errNotFound
		}
		if r, err = getRefund(ctx, tx, refundID, true); err == nil {
			// The same request ran before and stopped: carry on.
			if r.Status == "pending" && r.GatewayRefundID == nil {
				return nil
			}
			final = true
			return complete(ctx, tx, done, 201, r)
		} else if !errors.Is(err, errNoRefund) {
			return err
		}
		amt, err := checkRefund(p, amount)
		if err != nil {
			return err
		}
		src, err := holdSource(ctx, tx, p, amt)
		if err != nil {
			return err
		}
		now := s.now()
		p.refundCount++
		p.AmountRefundPending += amt
		p.UpdatedAt = now
		r = &Refund{ID: refundID, PaymentID: p.ID, n: p.refundCount, AccountID: p.AccountID, UserID: p.UserID,
			InvoiceID: p.InvoiceID, Amount: amt, Currency: string(p.Currency), Gateway: p.gateway(),
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
		res  RefundResult
		cerr error
	)
	if gw := s.gateways[r.Gateway]; gw == nil {
		cerr = &GatewayError{Gateway: r.Gateway, Code: "not_configured", Message: "the gateway is not configured"}
	} else {
		cctx, cancel := detached(ctx, s.cfg.GatewayTimeout.D())
		t0 := time.Now()
		res, cerr = gw.Refund(cctx, RefundRequest{PaymentID: p.ID, RefundID: r.ID, GatewayPaymentID: p.gatewayPaymentID(),
			Key: gatewayKey(p.ID, "refund-"+r.ID), Amount: r.Amount, Currency: p.Currency, Reason: r.Reason})
		observeCall(gw.Name(), "refund", t0, "", cerr)
		cancel()
	}
	return s.finishRefund(ctx, s.fresh(), r.ID, res, cerr, done)
}

// reserveRefund reserves r's amount in the ledger before the gateway is
// asked (see ledger.go). A refusal removes the pending refund, so a
// refused request leaves nothing behind; an unreachable ledger leaves it
// pending, and a retry with the same Idempotency-Key carries on.
func (s *service) reserveRefund(ctx context.Context, p *Payment, r *Refund) error {
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
func (s *service) finishRefund(ctx context.Context, run txRunner, id string, res RefundResult, callErr error, done completer) (*Refund, error) {
	var r *Refund
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
				r.GatewayRefundID = nullable(res.GatewayRefundID)
				settleRefund(p, r, res.Status, res.FailureReason, now, &e)
			case unknownOutcome(callErr):
				slog.WarnContext(ctx, "gateway outcome unknown; the refund stays pending", "refund_id", id, "err", callErr.Error())
			default:
				var ge *GatewayError
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
func lockRefund(ctx context.Context, tx pgx.Tx, id string) (*Payment, *Refund, error) {
	var pid string
	if err := tx.QueryRow(ctx, `SELECT payment_id FROM refunds WHERE id = $1`, id).Scan(&pid); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, errNoRefund
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
func settleRefund(p *Payment, r *Refund, status, failure string, now time.Time, e *emitter) {
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
		r.FailureReason = nullable(failure)
		if r.FailureReason == nil {
			r.FailureReason = nullable(status)
		}
		e.resolveHold(p, r, false)
		e.refund(evRefundFail, r)
	default: // pending or requires_action: a webhook or reconciliation settles it
	}
	p.UpdatedAt, r.UpdatedAt = now, now
}
