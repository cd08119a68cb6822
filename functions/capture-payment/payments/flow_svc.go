package payments

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/postgres"
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

// CreateInput is a validated payment creation.
type CreateInput struct {
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

// made reports whether p is the payment in asks for, as far as money goes
// (account, amount, currency, invoice): over HTTP (an Answer to give) p
// has in's id, derived from the caller and the Idempotency-Key, so p is
// either this request's, run before, or an earlier request's whose key
// record has expired (24 h) and came again with another body. An event's
// payment takes its id from the invoice (one payment per invoice), which
// it is whatever the amount: the check is the HTTP paths' only.
func (in CreateInput) made(p *Payment) bool {
	return (in.AccountID == "" || p.AccountID == in.AccountID) && p.Amount == in.Amount && p.Currency == in.Currency &&
		ptrEqual(p.InvoiceID, in.InvoiceID)
}

func ptrEqual(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// errKeyReused refuses a request whose id, derived from its caller and
// Idempotency-Key, names what an earlier, different request made: its key
// record expired (the idempotency layer answers a live one itself), and
// answering the earlier payment or refund would tell the client a charge
// or a refund happened that it did not ask for.
func errKeyReused(what string) error {
	return apperr.KeyReused(what + " (its record has expired)")
}

// method is a payment method resolved to what a gateway takes.
type method struct {
	token   string
	gateway string // "" when any gateway may take it
}

// resolveMethod turns a payment_method (a saved method id of the account
// and owner, or a gateway token) into a token.
func resolveMethod(ctx context.Context, q Tx, accountID, userID, given string) (method, error) {
	if ids.Valid(given) {
		m, err := q.Method(ctx, accountID, given)
		if errors.Is(err, ErrNoMethod) || (err == nil && (m.AccountID != accountID || m.UserID != userID)) {
			return method{}, apperr.New(CodeMethodInvalid, "no saved payment method %s on account %s", given, accountID)
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
	if !ValidToken(given) {
		return method{}, apperr.Invalid(apperr.Field("payment_method", "must be a gateway token (pm_…) or a saved payment method id"))
	}
	return method{token: given}, nil
}

// stripeOtherUnits are the currencies Stripe counts in other units than
// ISO 4217's minor units (ISK in hundredths, though ISO has no decimals;
// MGA in whole ariary, though ISO has two). billfn sends ISO minor units
// and does not convert, so Stripe would charge 500 ISK as 5 ISK, 500.00
// MGA as 50,000 MGA, without an error: they are not routed to Stripe.
var stripeOtherUnits = map[money.Currency]bool{"ISK": true, "MGA": true}

func errStripeUnits(c money.Currency) error {
	return apperr.New(CodeNoRoute, "Stripe counts %s in other units than ISO 4217's minor units, and billfn does not convert: route %s to another gateway (GATEWAY_ROUTES)", c, c)
}

// stripeTenths are Stripe's three-decimal currencies: Stripe takes their
// amounts (PaymentIntents, captures, refunds, disputes) only in multiples
// of 10 minor units, "to ensure compatibility with Stripe's payments
// partners" (https://docs.stripe.com/currencies#three-decimal). billfn
// keeps exact fils and baisa (a half-even tax gives 1.005 KWD easily) and
// does not round what it charges: such an amount is not sent to Stripe.
var stripeTenths = map[money.Currency]bool{"BHD": true, "JOD": true, "KWD": true, "OMR": true, "TND": true}

// stripeTenthsCodes are stripeTenths' codes, for MarkCapture: its one
// statement refuses what stripeAmount refuses.
var stripeTenthsCodes = func() []string {
	codes := make([]string, 0, len(stripeTenths))
	for c := range stripeTenths {
		codes = append(codes, string(c))
	}
	slices.Sort(codes)
	return codes
}()

// stripeAmount says why Stripe cannot take amount of c (nil when it can):
// a charge, a capture or a refund.
func stripeAmount(c money.Currency, amount int64) error {
	if stripeTenths[c] && amount%10 != 0 {
		down := amount - amount%10
		return apperr.New(CodeAmountPrecision, "Stripe takes %s amounts only in multiples of 10 minor units, and %d is not one: "+
			"ask for %d or %d, or route %s to another gateway (GATEWAY_ROUTES)", c, amount, down, down+10, c).
			With("currency", string(c)).With("multiple_of", 10)
	}
	return nil
}

// stripeMinimum is Stripe's minimum charge amount per currency, in ISO
// minor units, from Stripe's "Minimum and maximum charge amounts" table
// (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts):
// Stripe refuses a PaymentIntent below it with amount_too_small. Stripe
// applies the minimum of the Stripe account's settlement currency (a charge
// converted into it must meet its equivalent), which billfn does not know:
// the table is each listed currency's own minimum, right when the account
// settles in the charge's currency; a currency not listed has no minimum
// here, and for a converted charge Stripe's answer stands. Stripe only:
// the sandbox has none.
var stripeMinimum = map[money.Currency]int64{
	"USD": 50, "AED": 200, "AUD": 50, "BGN": 100, "BRL": 50, "CAD": 50, "CHF": 50, "CZK": 1500,
	"DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50, "JPY": 50, "MXN": 1000,
	"MYR": 200, "NOK": 300, "NZD": 50, "PLN": 200, "RON": 200, "SEK": 300, "SGD": 50, "THB": 1000,
}

// stripeRefusal says why Stripe cannot charge amount of c (nil when it can).
func stripeRefusal(c money.Currency, amount int64) error {
	if stripeOtherUnits[c] {
		return errStripeUnits(c)
	}
	if min := stripeMinimum[c]; amount < min {
		return apperr.New(CodeAmountTooSmall, "Stripe charges %s at least %d minor units, and %d is less: "+
			"route %s to another gateway (GATEWAY_ROUTES), or collect it with a later charge", c, min, amount, c).
			With("currency", string(c)).With("minimum_amount", min)
	}
	return stripeAmount(c, amount)
}

// plan returns the gateways to try in order for a charge of amount of c:
// Stripe is left out of a route for an amount it cannot take
// (stripeRefusal), and asked for by name or by a saved Stripe method the
// charge is refused with the reason.
func (s *Service) plan(c money.Currency, amount int64, requested string, m method) ([]string, error) {
	refusal := stripeRefusal(c, amount)
	if refusal != nil && (requested == GatewayStripe || m.gateway == GatewayStripe) {
		return nil, refusal
	}
	switch {
	case requested != "" && m.gateway != "" && requested != m.gateway:
		return nil, apperr.New(CodeMethodInvalid, "the saved payment method belongs to gateway %s, not %s", m.gateway, requested)
	case requested != "":
		return []string{requested}, nil
	case m.gateway != "":
		if s.Gateways[m.gateway] == nil {
			return nil, apperr.New(CodeMethodInvalid, "the saved payment method's gateway %s is not configured", m.gateway)
		}
		return []string{m.gateway}, nil
	}
	gws := s.Routing.For(c)
	if refusal != nil && slices.Contains(gws, GatewayStripe) {
		if gws = slices.DeleteFunc(slices.Clone(gws), func(g string) bool { return g == GatewayStripe }); len(gws) == 0 {
			return nil, refusal
		}
	}
	if len(gws) == 0 {
		return nil, apperr.New(CodeNoRoute, "no gateway takes %s (GATEWAY_ROUTES)", c)
	}
	return gws, nil
}

// CreateFor is POST /payments: pr creates in (its id set, its user_id the
// one the caller sent, if any).
//
// The account's rules (AuthorizeAccount's) are checked by the payment's
// first write itself when the request names neither an invoice nor a
// saved payment method: the payment (and its attempt) is inserted only if
// the read model has the account, active, in the payment's currency, and
// pr may use it (AccountGuard); its owner is the account's. So a known
// account costs no read of its own. When the guard refuses (or the read
// model does not know the account yet), AuthorizeAccount gives today's
// answer (404, 422 naming the field, 409 account_not_active; an unknown
// account read through), and if it passes the payment is written again,
// unguarded, as before the guard existed. An invoice's gate and a saved
// method's lookup answer about the account's things, so with either the
// account is authorized first, as before. Any other refusal before the
// write (no gateway for the currency) is answered only after
// AuthorizeAccount passed, as before.
func (s *Service) CreateFor(ctx context.Context, run Runner, pr auth.Principal, in CreateInput, done Answer) (*Payment, error) {
	if in.InvoiceID == nil && !ids.Valid(in.PaymentMethod) {
		g := AccountGuard{UserID: in.UserID}
		if !pr.Privileged() {
			g.Owner = &pr.Subject
		}
		p, err := s.create(ctx, run, in, &g, done)
		var early *beforeWrite
		switch {
		case errors.As(err, &early):
			if aerr := s.AuthorizeAccount(ctx, pr, &in); aerr != nil {
				return nil, aerr
			}
			return nil, early.err
		case !errors.Is(err, ErrAccountUnchecked):
			return p, err
		}
	}
	if err := s.AuthorizeAccount(ctx, pr, &in); err != nil {
		return nil, err
	}
	return s.Create(ctx, run, in, done)
}

// beforeWrite is a guarded create's refusal before its first write: it is
// answered only once the account is authorized (CreateFor).
type beforeWrite struct{ err error }

func (e *beforeWrite) Error() string { return e.err.Error() }
func (e *beforeWrite) Unwrap() error { return e.err }

// Create records a payment and, with confirm, charges it; in's account
// and owner are already decided (AuthorizeAccount, or an invoice's).
func (s *Service) Create(ctx context.Context, run Runner, in CreateInput, done Answer) (*Payment, error) {
	return s.create(ctx, run, in, nil, done)
}

// create is Create, with the payment's first write guarded by the
// account's facts when g is set (CreateFor): then a refusal before that
// write is a beforeWrite, and the guard's is ErrAccountUnchecked.
func (s *Service) create(ctx context.Context, run Runner, in CreateInput, g *AccountGuard, done Answer) (*Payment, error) {
	now := s.now()
	p := &Payment{ID: in.ID, AccountID: in.AccountID, UserID: in.UserID, InvoiceID: in.InvoiceID, Amount: in.Amount,
		Currency: in.Currency, Status: RequiresPaymentMethod, CaptureMethod: in.CaptureMethod, Description: in.Description,
		Metadata: in.Metadata, CreatedAt: now, UpdatedAt: now, RequestedGateway: in.Gateway, Announced: true}
	var (
		m    method
		plan []string
		err  error
	)
	early := func(err error) error {
		if g != nil {
			return &beforeWrite{err}
		}
		return err
	}
	if in.PaymentMethod != "" {
		if m, err = resolveMethod(ctx, run.DB(), in.AccountID, in.UserID, in.PaymentMethod); err != nil {
			return nil, early(err)
		}
		if plan, err = s.plan(in.Currency, in.Amount, in.Gateway, m); err != nil {
			return nil, early(err)
		}
		pm := in.PaymentMethod
		p.PaymentMethod, p.Status = &pm, RequiresConfirmation
	}
	if !in.Confirm && g != nil && in.InvoiceID == nil && run.Pipelined() && g.Expected() != "" {
		// The owner is known before the write (the guard passes only for
		// it): the payment, its event and the answer go as one write.
		q := *p
		q.UserID = g.Expected()
		q.Finish()
		e := emitter{ctx: ctx}
		e.payment(events.TypePaymentCreated, &q, nil)
		if e.err != nil {
			return nil, e.err
		}
		var answer any
		if done != nil {
			answer = done(Created, &q)
		}
		inserted, err := s.Store.InsertCreated(ctx, &q, *g, e.msgs, answer)
		if err != nil {
			return nil, err
		}
		if inserted {
			*p = q
			return p, nil
		}
		// A re-run: the transaction below answers what is there.
	}
	if !in.Confirm {
		err := run.Run(ctx, func(tx Tx) error {
			q := *p
			q.Finish()
			if err := s.gateInvoice(ctx, tx, &q, true); err != nil {
				return err
			}
			var (
				inserted bool
				err      error
			)
			if g != nil {
				inserted, err = tx.InsertPaymentFor(ctx, &q, *g)
			} else {
				inserted, err = tx.InsertPayment(ctx, &q)
			}
			if err != nil {
				return err
			}
			if !inserted { // a re-run: answer what is there
				existing, err := tx.Payment(ctx, in.ID, true)
				if err != nil {
					return err
				}
				if done != nil && !in.made(existing) {
					return errKeyReused("payment")
				}
				*p = *existing
				return complete(ctx, tx, done, Created, p)
			}
			*p = q
			e := emitter{ctx: ctx}
			e.payment(events.TypePaymentCreated, p, nil)
			if err := e.flush(tx); err != nil {
				return err
			}
			return complete(ctx, tx, done, Created, p)
		})
		return p, err
	}
	// The intent to charge is recorded before the gateway is called; the
	// payment is announced (payment.created) with the attempt's outcome.
	a := StartAttempt(p, plan[0], now)
	a.PaymentMethod = m.token
	p.Announced = false
	p.Finish()
	inserted, err := s.insertCharging(ctx, run, p, a, g)
	if err != nil {
		return nil, err
	}
	if !inserted {
		// The same request ran before and stopped (a crash): carry on.
		resume := false
		err := run.Run(ctx, func(tx Tx) error {
			existing, err := tx.Payment(ctx, in.ID, true)
			if err != nil {
				return err
			}
			if done != nil && !in.made(existing) {
				return errKeyReused("payment")
			}
			p, resume = existing, false
			if p.Op() == OpConfirm {
				cur, err := tx.CurrentAttempt(ctx, p)
				if err != nil {
					return err
				}
				m, plan, resume = method{token: cur.PaymentMethod}, []string{p.GatewayName()}, true
				return nil
			}
			return complete(ctx, tx, done, Created, p)
		})
		if err != nil || !resume {
			return p, err
		}
	}
	return s.charge(ctx, run, p, m.token, plan, Created, done)
}

func complete(ctx context.Context, tx Tx, done Answer, o Outcome, body any) error {
	if done == nil {
		return nil
	}
	if p, ok := body.(*Payment); ok {
		p.Finish()
	}
	return tx.Record(ctx, done(o, body))
}

// Confirm starts a new attempt of an existing payment.
func (s *Service) Confirm(ctx context.Context, run Runner, id string, can Access, given string, done Answer) (*Payment, error) {
	var (
		p    *Payment
		m    method
		plan []string
	)
	err := run.Run(ctx, func(tx Tx) error {
		var err error
		var (
			f     accounts.Facts
			known bool
		)
		if p, f, known, err = tx.PaymentWithAccount(ctx, id, true); err != nil {
			return err
		}
		if !can.Allows(p) {
			return ErrNotFound
		}
		if err := s.chargeable(ctx, tx, p.AccountID, f, known); err != nil {
			return err
		}
		if given == "" {
			given = p.Method()
		}
		if err := CheckConfirm(p, given); err != nil {
			return err
		}
		if err := s.gateInvoice(ctx, tx, p, false); err != nil {
			return err
		}
		if m, err = resolveMethod(ctx, tx, p.AccountID, p.UserID, given); err != nil {
			return err
		}
		if p.Status == RequiresAction {
			plan = []string{p.GatewayName()} // the action belongs to that gateway's object
		} else if plan, err = s.plan(p.Currency, p.Amount, p.RequestedGateway, m); err != nil {
			return err
		}
		now := s.now()
		p.PaymentMethod = &given
		a := StartAttempt(p, plan[0], now)
		a.PaymentMethod = m.token
		return tx.UpdatePaymentStarting(ctx, p, a)
	})
	if err != nil {
		return nil, err
	}
	return s.charge(ctx, run, p, m.token, plan, Done, done)
}

// charge calls the gateways of plan in order for p's current attempt,
// failing over on gateway-side errors (never on a decline, never after an
// unknown outcome), and records the answer.
func (s *Service) charge(ctx context.Context, run Runner, p *Payment, token string, plan []string, o Outcome, done Answer) (*Payment, error) {
	for i := 0; ; i++ {
		gw := s.Gateways[p.GatewayName()]
		var (
			st  GatewayState
			err error
		)
		if gw == nil {
			err = &GatewayError{Gateway: p.GatewayName(), Code: "not_configured", Message: "the gateway is not configured"}
		} else {
			req := ChargeRequest{PaymentID: p.ID, Key: GatewayKey(p.ID, "a"+strconv.Itoa(p.Attempts)),
				GatewayPaymentID: p.GatewayObject(), Amount: p.Amount, Currency: p.Currency, PaymentMethod: token,
				CaptureMethod: p.CaptureMethod, Description: p.Description}
			cctx, cancel := postgres.DetachedFor(ctx, s.GatewayTimeout)
			t0 := time.Now()
			st, err = gw.Charge(cctx, req)
			s.observe(gw.Name(), "charge", t0, st.Status, err)
			cancel()
		}
		if Definite(err) && i+1 < len(plan) {
			next, ferr := s.failover(ctx, run, p, plan[i+1], token, err)
			if ferr != nil {
				return nil, ferr
			}
			if next != nil {
				p = next
				continue
			}
		}
		return s.finishCharge(ctx, run, p, st, err, o, done)
	}
}

// failover closes the current attempt as a gateway error and opens the
// next on gateway next. It returns nil when another actor settled the
// attempt meanwhile.
func (s *Service) failover(ctx context.Context, run Runner, p *Payment, next, token string, cause error) (*Payment, error) {
	var out *Payment
	dctx, cancel := postgres.Detached(ctx)
	defer cancel()
	err := run.Run(dctx, func(tx Tx) error {
		out = nil
		q, err := tx.Payment(dctx, p.ID, true)
		if err != nil || q.Op() != OpConfirm || q.Attempts != p.Attempts {
			return err
		}
		now := s.now()
		if err := tx.FinishAttempt(dctx, q.ID, FailedAttempt(q, now, cause)); err != nil {
			return err
		}
		slog.WarnContext(ctx, "gateway failed; trying the next", "payment_id", q.ID, "gateway", q.GatewayName(), "next", next, "err", cause.Error())
		a := StartAttempt(q, next, now)
		a.PaymentMethod = token
		out = q
		return tx.UpdatePaymentStarting(dctx, q, a)
	})
	return out, err
}

// finishCharge records the answer (or the failure) of p's current attempt.
// p is the payment as the flow last wrote it: when nothing else wrote it
// since, the whole record (payment, attempt, events, response) goes to
// Postgres as one pipeline; otherwise it is applied to the locked row.
func (s *Service) finishCharge(ctx context.Context, run Runner, p *Payment, st GatewayState, callErr error, o Outcome, done Answer) (*Payment, error) {
	n := p.Attempts
	if UnknownOutcome(callErr) {
		slog.WarnContext(ctx, "gateway outcome unknown: reconciliation or a webhook will settle the payment",
			"payment_id", p.ID, "gateway", p.GatewayName(), "err", callErr.Error())
	}
	dctx, cancel := postgres.Detached(ctx)
	defer cancel()
	if run.Pipelined() {
		q := *p
		e := emitter{ctx: dctx}
		a := s.settleCharge(ctx, &q, n, st, callErr, &e)
		ok, err := s.pipeline(dctx, &q, p.UpdatedAt, a, &e, done, o)
		if err != nil {
			return nil, err
		}
		if ok {
			s.kick()
			return &q, nil
		}
	}
	var out *Payment
	err := run.Run(dctx, func(tx Tx) error {
		q, err := tx.Payment(dctx, p.ID, true)
		if err != nil {
			return err
		}
		out = q
		e := emitter{ctx: dctx}
		if q.Op() == OpConfirm && q.Attempts == n { // else settled meanwhile (reconciliation)
			a := s.settleCharge(ctx, q, n, st, callErr, &e)
			if err := tx.FinishAttempt(dctx, q.ID, a); err != nil {
				return err
			}
			if err := tx.UpdatePayment(dctx, q); err != nil {
				return err
			}
		}
		if err := e.flush(tx); err != nil {
			return err
		}
		return complete(dctx, tx, done, o, q)
	})
	if err != nil {
		return nil, err
	}
	s.kick()
	return out, nil
}

// settleCharge applies the outcome of attempt n to p, adds its events to
// e, and returns the attempt's record.
func (s *Service) settleCharge(_ context.Context, p *Payment, n int, st GatewayState, callErr error, e *emitter) Attempt {
	now := s.now()
	a := Attempt{N: n, FinishedAt: &now}
	var c Change
	switch {
	case callErr == nil:
		c = ApplyGateway(p, st, true, n, now)
		a.Status = AttemptStatus(st.Status)
		if st.Status == Processing {
			a.FinishedAt = nil
		}
		if d := st.Decline; d != nil && st.Status == RequiresPaymentMethod {
			reason := DeclineReason(d)
			a.FailureCode, a.DeclineCode, a.FailureReason, a.FailureMessage = &d.Code, Nullable(d.DeclineCode), &reason, Nullable(d.Message)
		}
	case UnknownOutcome(callErr):
		// The gateway may have acted: the payment stays processing until
		// reconciliation or a webhook says.
		a.Status, a.FinishedAt = "processing", nil
		if p.Status != Processing { // a webhook told the truth meanwhile
			a.Status, a.FinishedAt = AttemptStatus(p.Status), &now
		}
	default: // a gateway-side error and no gateway left
		a = FailedAttempt(p, now, callErr)
		var ge *GatewayError
		errors.As(callErr, &ge)
		d := &Decline{Code: ge.Code, DeclineCode: "gateway_unavailable", Message: ge.Message}
		if ge.Rejected {
			d.DeclineCode = ""
		}
		c = ApplyGateway(p, GatewayState{Status: RequiresPaymentMethod, Decline: d, At: SyncTime(now)}, true, n, now)
		reason := DeclineReason(d)
		a.FailureReason = &reason
	}
	a.GatewayPaymentID = p.GatewayPaymentID
	p.SetOp("", now)
	p.Touch(now)
	e.changed(p, c)
	return a
}

// pipeline writes a flow's finishing record as one pipeline in one
// implicit transaction (Store.Pipeline): the payment (only if still at
// version) and its attempt, the outbox events, the request's answer. It
// reports false, having written nothing, when the payment moved since.
func (s *Service) pipeline(ctx context.Context, p *Payment, version time.Time, a Attempt, e *emitter, done Answer, o Outcome) (bool, error) {
	if e.err != nil {
		return false, e.err
	}
	var answer any
	if done != nil {
		p.Finish()
		answer = done(o, p)
	}
	return s.Store.Pipeline(ctx, p, version, a, e.msgs, answer)
}

// Capture captures amount (0 = all) of an authorization.
func (s *Service) Capture(ctx context.Context, id string, can Access, amount int64, done Answer) (*Payment, error) {
	// One statement marks the capture, or finds why it cannot be. It
	// also refuses a Stripe payment in a three-decimal currency for an
	// amount Stripe cannot take (stripeAmount), so no read precedes it.
	now := s.now()
	p, err := s.Store.MarkCapture(ctx, id, now, can.User, amount, stripeTenthsCodes)
	if errors.Is(err, ErrNotMarked) {
		return nil, s.captureRefusal(ctx, id, can, amount)
	}
	if err != nil {
		return nil, err
	}
	amt := amount
	if amt == 0 {
		amt = p.AmountCapturable
	}
	st, cerr := s.call(ctx, p, func(ctx context.Context, gw Gateway) (GatewayState, error) {
		return gw.Capture(ctx, CaptureRequest{PaymentID: id, GatewayPaymentID: p.GatewayObject(), Key: GatewayKey(id, "capture"), Amount: amt})
	})
	return s.finishOp(ctx, s.Store.Fresh(), p, OpCapture, st, cerr, done)
}

// captureRefusal says why MarkCapture could not mark payment id for a
// capture of amount, from a fresh read of the payment: not the caller's
// (404), not capturable now (CheckCapture), an amount Stripe cannot take
// (stripeAmount), an account no longer active, else a write that raced
// the mark (retry). The checks run in that order, the order of the
// problems a caller sees.
func (s *Service) captureRefusal(ctx context.Context, id string, can Access, amount int64) error {
	cur, err := s.db().Payment(ctx, id, false)
	if err != nil {
		return err
	}
	if !can.Allows(cur) {
		return ErrNotFound
	}
	if _, err := CheckCapture(cur, amount); err != nil {
		return err
	}
	if cur.GatewayName() == GatewayStripe {
		if err := stripeAmount(cur.Currency, amount); err != nil {
			return err
		}
	}
	if err := s.chargeable(ctx, s.db(), cur.AccountID, accounts.Facts{}, false); err != nil {
		return err // an authorization on an account no longer active: cancel it, or let it expire
	}
	return apperr.New(CodeOpInProgress, "the payment changed while capturing; retry")
}

// call runs one gateway call for p with the gateway timeout.
func (s *Service) call(ctx context.Context, p *Payment, fn func(context.Context, Gateway) (GatewayState, error)) (GatewayState, error) {
	gw := s.Gateways[p.GatewayName()]
	if gw == nil {
		return GatewayState{}, &GatewayError{Gateway: p.GatewayName(), Code: "not_configured", Message: "the gateway is not configured"}
	}
	cctx, cancel := postgres.DetachedFor(ctx, s.GatewayTimeout)
	defer cancel()
	t0 := time.Now()
	st, err := fn(cctx, gw)
	s.observe(gw.Name(), "operation", t0, st.Status, err)
	return st, err
}

// finishOp records the answer to a capture or cancel of p (the payment as
// the flow marked it), pipelined when nothing else wrote it since.
func (s *Service) finishOp(ctx context.Context, run Runner, p *Payment, op string, st GatewayState, callErr error, done Answer) (*Payment, error) {
	dctx, cancel := postgres.Detached(ctx)
	defer cancel()
	if run.Pipelined() {
		q := *p
		e := emitter{ctx: dctx}
		o, opErr := s.settleOp(ctx, &q, op, st, callErr, &e)
		if opErr != nil {
			done = nil // an error answer is not the operation's result
		}
		ok, err := s.pipeline(dctx, &q, p.UpdatedAt, Attempt{}, &e, done, o)
		if err != nil {
			return nil, err
		}
		if ok {
			s.kick()
			if opErr != nil {
				return nil, opErr
			}
			q.Finish()
			return &q, nil
		}
	}
	var (
		out   *Payment
		opErr error
	)
	err := run.Run(dctx, func(tx Tx) error {
		q, err := tx.Payment(dctx, p.ID, true)
		if err != nil {
			return err
		}
		out, opErr = q, nil
		o := Done
		e := emitter{ctx: dctx}
		if q.Op() == op {
			o, opErr = s.settleOp(ctx, q, op, st, callErr, &e)
			if err := tx.UpdatePayment(dctx, q); err != nil {
				return err
			}
		}
		if err := e.flush(tx); err != nil {
			return err
		}
		if opErr != nil {
			return nil
		}
		return complete(dctx, tx, done, o, q)
	})
	if err != nil {
		return nil, err
	}
	s.kick()
	if opErr != nil {
		return nil, opErr
	}
	out.Finish()
	return out, nil
}

// settleOp applies the answer to operation op to p and returns the outcome
// of the answer, or the error to answer instead.
func (s *Service) settleOp(ctx context.Context, p *Payment, op string, st GatewayState, callErr error, e *emitter) (Outcome, error) {
	now := s.now()
	p.Touch(now)
	switch {
	case callErr == nil:
		e.changed(p, ApplyGateway(p, st, true, p.Attempts, now))
		p.SetOp("", now)
		return Done, nil
	case UnknownOutcome(callErr):
		// Reconciliation asks the gateway and clears the mark; the same
		// key makes a repeated call harmless.
		slog.WarnContext(ctx, "gateway outcome unknown", "payment_id", p.ID, "operation", op, "err", callErr.Error())
		return Pending, nil
	}
	p.SetOp("", now)
	return 0, gatewayProblem(callErr)
}

// gatewayProblem is the answer to an operation a gateway refused or could
// not take.
func gatewayProblem(err error) error {
	var ge *GatewayError
	if errors.As(err, &ge) && ge.Rejected {
		return (&apperr.Error{Code: CodeGatewayRejected, Detail: "the gateway refused: " + ge.Message, Err: err}).
			With("gateway", ge.Gateway).With("gateway_code", ge.Code)
	}
	return &apperr.Error{Code: CodeGatewayUnavailable, Detail: "the payment gateway could not be reached; retry", RetryAfter: time.Second, Err: err}
}

// Cancel cancels a payment, at the gateway when an object exists there.
func (s *Service) Cancel(ctx context.Context, run Runner, id string, can Access, reason string, done Answer) (*Payment, error) {
	var (
		p     *Payment
		local bool
	)
	err := run.Run(ctx, func(tx Tx) error {
		var err error
		if p, err = tx.Payment(ctx, id, true); err != nil {
			return err
		}
		if !can.Allows(p) {
			return ErrNotFound
		}
		if err := CheckCancel(p); err != nil {
			return err
		}
		now := s.now()
		p.CancellationReason = Nullable(reason)
		if p.GatewayPaymentID == nil {
			// Nothing at any gateway: cancel here.
			local = true
			e := emitter{ctx: ctx}
			e.changed(p, ApplyGateway(p, GatewayState{Status: Canceled, At: SyncTime(now)}, true, p.Attempts, now))
			if err := tx.UpdatePayment(ctx, p); err != nil {
				return err
			}
			if err := e.flush(tx); err != nil {
				return err
			}
			return complete(ctx, tx, done, Done, p)
		}
		p.SetOp(OpCancel, now)
		p.Touch(now)
		return tx.UpdatePayment(ctx, p)
	})
	if err != nil || local {
		if err == nil {
			s.kick()
		}
		return p, err
	}
	st, cerr := s.call(ctx, p, func(ctx context.Context, gw Gateway) (GatewayState, error) {
		return gw.Cancel(ctx, CancelRequest{PaymentID: id, GatewayPaymentID: p.GatewayObject(), Key: GatewayKey(id, "cancel"), Reason: reason})
	})
	var ge *GatewayError
	if errors.As(cerr, &ge) && ge.Rejected && ge.Code == "resource_missing" {
		// The gateway never saw this payment (its attempt failed before
		// reaching it): nothing to cancel there.
		st, cerr = GatewayState{Status: Canceled, At: SyncTime(s.now())}, nil
	}
	return s.finishOp(ctx, run, p, OpCancel, st, cerr, done)
}

// Refund refunds amount (0 = all that is left) of a captured payment.
func (s *Service) Refund(ctx context.Context, paymentID, refundID string, can Access, amount int64, reason string, done Answer) (*Refund, error) {
	var (
		p     *Payment
		r     *Refund
		final bool
	)
	err := s.Store.Fresh().Run(ctx, func(tx Tx) error {
		var err error
		final = false
		if p, err = tx.Payment(ctx, paymentID, true); err != nil {
			return err
		}
		if !can.Allows(p) {
			return ErrNotFound
		}
		if r, err = tx.Refund(ctx, refundID, true); err == nil {
			if r.PaymentID != p.ID || (amount != 0 && r.Amount != amount) {
				return errKeyReused("refund")
			}
			// The same request ran before and stopped: carry on.
			if r.Status == "pending" && r.GatewayRefundID == nil {
				return nil
			}
			final = true
			return complete(ctx, tx, done, Created, r)
		} else if !errors.Is(err, ErrNoRefund) {
			return err
		}
		amt, err := CheckRefund(p, amount)
		if err != nil {
			return err
		}
		if p.GatewayName() == GatewayStripe {
			if err := stripeAmount(p.Currency, amt); err != nil {
				return err
			}
		}
		src, err := HoldSource(ctx, tx, p, amt)
		if err != nil {
			return err
		}
		now := s.now()
		p.RefundCount++
		p.AmountRefundPending += amt
		p.Touch(now)
		r = &Refund{ID: refundID, PaymentID: p.ID, N: p.RefundCount, AccountID: p.AccountID, UserID: p.UserID,
			InvoiceID: p.InvoiceID, Amount: amt, Currency: string(p.Currency), Gateway: p.GatewayName(),
			GatewayPaymentID: p.GatewayPaymentID, Status: "pending", Reason: reason, CreatedAt: now, UpdatedAt: now, HoldSource: &src}
		if _, err := tx.InsertRefund(ctx, r); err != nil {
			return err
		}
		return tx.UpdatePayment(ctx, p)
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
	if gw := s.Gateways[r.Gateway]; gw == nil {
		cerr = &GatewayError{Gateway: r.Gateway, Code: "not_configured", Message: "the gateway is not configured"}
	} else {
		cctx, cancel := postgres.DetachedFor(ctx, s.GatewayTimeout)
		t0 := time.Now()
		res, cerr = gw.Refund(cctx, RefundRequest{PaymentID: p.ID, RefundID: r.ID, GatewayPaymentID: p.GatewayObject(),
			Key: GatewayKey(p.ID, "refund-"+r.ID), Amount: r.Amount, Currency: p.Currency, Reason: r.Reason})
		s.observe(gw.Name(), "refund", t0, "", cerr)
		cancel()
	}
	return s.finishRefund(ctx, s.Store.Fresh(), r.ID, res, cerr, done)
}

// reserveRefund reserves r's amount in the ledger before the gateway is
// asked (see ledger.go). A refusal removes the pending refund, so a
// refused request leaves nothing behind; an unreachable ledger leaves it
// pending, and a retry with the same Idempotency-Key carries on.
func (s *Service) reserveRefund(ctx context.Context, p *Payment, r *Refund) error {
	dctx, cancel := postgres.Detached(ctx)
	defer cancel()
	hold, rerr := s.Ledger.Reserve(dctx, Hold{TransferRequest: refundHold(p, r), ExpiresAt: s.now().Add(refundHoldTTL).UTC(), RefundID: r.ID})
	if rerr != nil && !s.refused(rerr) {
		return rerr
	}
	err := s.Store.Fresh().Run(dctx, func(tx Tx) error {
		pp, rr, err := tx.LockRefund(dctx, r.ID)
		if err != nil {
			return err
		}
		if rerr != nil {
			if rr.Status == "pending" && rr.GatewayRefundID == nil && rr.LedgerHoldID == nil {
				pp.AmountRefundPending -= rr.Amount
				if err := tx.DeleteRefund(dctx, rr.ID); err != nil {
					return err
				}
				e := emitter{ctx: dctx}
				if credited := giveBackWithheld(pp, rr, &e); credited > 0 {
					if err := tx.AddUnapplied(dctx, pp.ID, credited); err != nil {
						return err
					}
				}
				if err := e.flush(tx); err != nil {
					return err
				}
				return tx.UpdatePayment(dctx, pp)
			}
			return nil
		}
		rr.LedgerHoldID = &hold
		r.LedgerHoldID = &hold
		return tx.UpdateRefund(dctx, rr)
	})
	if err != nil {
		return err
	}
	return rerr
}

// finishRefund records a gateway's answer to a refund.
func (s *Service) finishRefund(ctx context.Context, run Runner, id string, res RefundResult, callErr error, done Answer) (*Refund, error) {
	var r *Refund
	dctx, cancel := postgres.Detached(ctx)
	defer cancel()
	err := run.Run(dctx, func(tx Tx) error {
		p, rr, err := tx.LockRefund(dctx, id)
		if err != nil {
			return err
		}
		r = rr
		e := emitter{ctx: dctx}
		if r.Status == "pending" {
			now := s.now()
			var credited int64
			switch {
			case callErr == nil:
				r.GatewayRefundID = Nullable(res.GatewayRefundID)
				credited = settleRefund(p, r, res.Status, res.FailureReason, now, &e)
			case UnknownOutcome(callErr):
				slog.WarnContext(ctx, "gateway outcome unknown; the refund stays pending", "refund_id", id, "err", callErr.Error())
			default:
				var ge *GatewayError
				errors.As(callErr, &ge)
				reason := "gateway_unavailable"
				if ge.Rejected {
					reason = ge.Code
				}
				credited = settleRefund(p, r, "failed", reason, now, &e)
			}
			if credited > 0 {
				if err := tx.AddUnapplied(dctx, p.ID, credited); err != nil {
					return err
				}
			}
			r.UpdatedAt = now
			if err := tx.UpdateRefund(dctx, r); err != nil {
				return err
			}
			if err := tx.UpdatePayment(dctx, p); err != nil {
				return err
			}
		}
		if err := e.flush(tx); err != nil {
			return err
		}
		return complete(dctx, tx, done, Created, r)
	})
	if err != nil {
		return nil, err
	}
	s.kick()
	return r, nil
}

// settleRefund applies a refund's new status to it and its payment. It
// returns what a failed refund gives back to the account's credit: what
// the report of money its invoice did not need withheld for it (the
// caller adds it to the payment's amount_unapplied; the posting is here).
func settleRefund(p *Payment, r *Refund, status, failure string, now time.Time, e *emitter) (credited int64) {
	switch status {
	case "succeeded":
		p.AmountRefundPending -= r.Amount
		p.AmountRefunded += r.Amount
		r.Status = "succeeded"
		if r.LedgerHoldID != nil {
			e.resolveHold(p, r, true)
		} else {
			fromRevenue := r.Amount // a refund the gateway reported on its own
			if r.HoldSource != nil && *r.HoldSource == "account" {
				fromRevenue = 0 // the account's credit (HoldSource)
			}
			e.refundPostings(p, r, fromRevenue)
		}
		e.refund(events.TypeRefundSucceeded, r)
	case "failed", "canceled":
		p.AmountRefundPending -= r.Amount
		r.Status = status
		r.FailedAt = &now
		r.FailureReason = Nullable(failure)
		if r.FailureReason == nil {
			r.FailureReason = Nullable(status)
		}
		e.resolveHold(p, r, false)
		e.refund(events.TypeRefundFailed, r)
		credited = giveBackWithheld(p, r, e)
	default: // pending or requires_action: a webhook or reconciliation settles it
	}
	p.Touch(now)
	r.UpdatedAt = now
	return credited
}

// reverseRefund fails refund r, which had succeeded, on the gateway's
// word that it failed after all (Stripe: "refunds can fail after
// succeeding"; the amount returns to the merchant's balance), or was
// canceled: status is "failed" or "canceled". The payment
// refunded that much less, billfn.refund.failed is emitted, and one
// posting returns what the refund moved: SYS-CLEARING → what it drew on
// (refundSource), kind refund_reversal, n = the refund's n, so a
// redelivered or replayed report posts nothing more (and finds the refund
// failed already). at is when the gateway says it failed. Of an invoice
// payment's refund on revenue, what it kept out of the account's credit
// (Withheld: the report of money the invoice did not need withheld it,
// or a refund made at the gateway took it) goes back to the account, as
// when a refund fails before it succeeds; the amount is returned for the
// payment's amount_unapplied.
func reverseRefund(p *Payment, r *Refund, status, failure string, at, now time.Time, e *emitter) (credited int64) {
	p.AmountRefunded -= r.Amount
	r.Status = status
	r.FailedAt = &at
	r.FailureReason = Nullable(failure)
	if r.FailureReason == nil {
		r.FailureReason = Nullable(status)
	}
	e.posting(p, KindRefundReversal, r.N, "clearing", refundSource(p, r), r.Amount, r.ID)
	e.refundReversed(r)
	credited = giveBackWithheld(p, r, e)
	p.Touch(now)
	r.UpdatedAt = now
	return credited
}

// refundSource is what a succeeded refund drew on in the ledger, "account"
// or "revenue": its hold's source (refundHold), or for a refund without a
// hold, where its postings took it from (settleRefund, refundPostings).
func refundSource(p *Payment, r *Refund) string {
	switch {
	case p.InvoiceID == nil:
		return "account"
	case r.HoldSource != nil:
		return *r.HoldSource
	case r.LedgerHoldID != nil:
		return "account"
	}
	return "revenue"
}

// giveBackWithheld credits the account what the report of money r's
// invoice did not need withheld for r, which will not take it from
// revenue after all (it failed, or its hold was refused): revenue →
// account, kind invoice_unapplied, n = 1 + r.N (the report's is 1). It
// returns the amount, for the payment's amount_unapplied.
func giveBackWithheld(p *Payment, r *Refund, e *emitter) int64 {
	w := r.Withheld
	if w <= 0 {
		return 0
	}
	r.Withheld = 0
	e.posting(p, KindUnapplied, 1+r.N, "revenue", "account", w, "")
	return w
}
