package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/functions/capture-payment/store"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/sandbox"
)

// Sandbox is the built-in gateway for local use and demos. It takes
// Stripe's documented test PaymentMethod ids with Stripe's outcomes, plus
// pm_sandbox_timeout (records the charge, never answers),
// pm_sandbox_delayed (answers processing, settles SANDBOX_SETTLE_DELAY later
// and says so with a signed webhook) and pm_sandbox_unavailable (the gateway
// is down: a gateway-side error, for failover demos).
//
// It keeps its own books in the sandbox_* tables, as a real gateway would,
// so reconciliation can ask it for the truth and every call is idempotent
// by its key. Webhooks it owes go to SANDBOX_WEBHOOK_URL (handle-webhook's
// /sandbox), signed with SANDBOX_WEBHOOK_SECRET, with retries.
type Sandbox struct {
	pool        *pgxpool.Pool
	now         func() time.Time
	settleDelay time.Duration
	webhookURL  string
	secrets     [][]byte
	mode        string // off, async (only what the caller could not see), all
	client      *http.Client

	kick    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
	flushMu sync.Mutex
}

// Webhook modes.
const (
	WebhooksOff   = "off"
	WebhooksAsync = "async"
	WebhooksAll   = "all"
)

// SandboxConfig configures the sandbox gateway.
type SandboxConfig struct {
	SettleDelay   time.Duration
	WebhookURL    string
	WebhookSecret string
	Webhooks      string // off, async, all
}

// NewSandbox returns the sandbox gateway keeping its books in pool.
func NewSandbox(pool *pgxpool.Pool, now func() time.Time, cfg SandboxConfig) *Sandbox {
	return &Sandbox{pool: pool, now: now, settleDelay: cfg.SettleDelay, webhookURL: cfg.WebhookURL,
		secrets: sandbox.Secrets(cfg.WebhookSecret), mode: cfg.Webhooks,
		client: &http.Client{Timeout: 5 * time.Second}, kick: make(chan struct{}, 1)}
}

func (g *Sandbox) Name() string { return payments.GatewaySandbox }

// outcome kinds of a test payment method.
const (
	outSuccess = iota
	outDecline
	outAction
	outTimeout
	outDelayed
	outUnavailable
)

type outcome struct {
	kind                       int
	code, declineCode, message string
}

// sandboxOutcome is the behaviour of a test PaymentMethod id: Stripe's
// documented outcomes, then billfn's own pm_sandbox_* ids.
func sandboxOutcome(token string) outcome {
	decline := func(code, decline, msg string) outcome { return outcome{outDecline, code, decline, msg} }
	switch token {
	case "pm_card_visa_chargeDeclined", "pm_card_chargeDeclined":
		return decline("card_declined", "generic_decline", "Your card was declined.")
	case "pm_card_chargeDeclinedInsufficientFunds":
		return decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")
	case "pm_card_chargeDeclinedExpiredCard":
		return decline("expired_card", "expired_card", "Your card has expired.")
	case "pm_card_chargeDeclinedFraudulent":
		return decline("card_declined", "fraudulent", "Your card was declined.")
	case "pm_card_chargeDeclinedIncorrectCvc":
		return decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")
	case "pm_card_chargeDeclinedProcessingError":
		return decline("processing_error", "processing_error", "An error occurred while processing your card. Try again in a little bit.")
	case "pm_card_chargeDeclinedLostCard":
		return decline("card_declined", "lost_card", "Your card was declined.")
	case "pm_card_chargeDeclinedStolenCard":
		return decline("card_declined", "stolen_card", "Your card was declined.")
	case "pm_card_chargeDeclinedVelocityLimitExceeded":
		return decline("card_declined", "card_velocity_exceeded", "Your card was declined for making repeated attempts too frequently.")
	case "pm_card_authenticationRequired", "pm_card_threeDSecure2Required", "pm_card_threeDSecureRequired":
		return outcome{kind: outAction}
	case "pm_sandbox_timeout":
		return outcome{kind: outTimeout}
	case "pm_sandbox_delayed":
		return outcome{kind: outDelayed}
	case "pm_sandbox_unavailable":
		return outcome{kind: outUnavailable}
	}
	if strings.HasPrefix(token, "pm_card_") {
		return outcome{kind: outSuccess}
	}
	return decline("resource_missing", "", "No such PaymentMethod: '"+token+"'")
}

// intent is a row of sandbox_intents.
type intent struct {
	ID, PaymentID, Currency, CaptureMethod, PaymentMethod, Status string
	Amount, AmountCapturable, AmountReceived, AmountRefunded      int64
	LastError                                                     *sandbox.PaymentError
	ConfirmKey                                                    string
	SettleAt                                                      *time.Time
	CreatedAt, UpdatedAt                                          time.Time
}

const intentCols = `id, payment_id, amount, currency, capture_method, payment_method, status, amount_capturable,
	amount_received, amount_refunded, last_error, confirm_key, settle_at, created_at, updated_at`

func scanIntent(row pgx.Row) (*intent, error) {
	in := &intent{}
	err := row.Scan(&in.ID, &in.PaymentID, &in.Amount, &in.Currency, &in.CaptureMethod, &in.PaymentMethod, &in.Status,
		&in.AmountCapturable, &in.AmountReceived, &in.AmountRefunded, &in.LastError, &in.ConfirmKey, &in.SettleAt,
		&in.CreatedAt, &in.UpdatedAt)
	return in, err
}

// succeed applies a successful authorization.
func (in *intent) succeed() {
	in.LastError = nil
	if in.CaptureMethod == payments.CaptureManual {
		in.Status, in.AmountCapturable = string(payments.RequiresCapture), in.Amount
	} else {
		in.Status, in.AmountReceived, in.AmountCapturable = string(payments.Succeeded), in.Amount, 0
	}
}

// confirm applies the outcome of a confirmation.
func (in *intent) confirm(out outcome, now time.Time, delay time.Duration) {
	in.SettleAt = nil
	switch out.kind {
	case outSuccess, outTimeout:
		in.succeed()
	case outAction:
		if in.Status == string(payments.RequiresAction) {
			in.succeed() // confirmed again: the customer authenticated
		} else {
			in.Status, in.LastError = string(payments.RequiresAction), nil
		}
	case outDelayed:
		at := now.Add(delay)
		in.Status, in.LastError, in.SettleAt = string(payments.Processing), nil, &at
	case outDecline:
		in.Status = string(payments.RequiresPaymentMethod)
		in.LastError = &sandbox.PaymentError{Type: "card_error", Code: out.code, DeclineCode: out.declineCode, Message: out.message}
		if out.code == "resource_missing" {
			in.LastError.Type = "invalid_request_error"
		}
	}
	in.UpdatedAt = now
}

func (in *intent) state() payments.GatewayState {
	st := payments.GatewayState{GatewayPaymentID: in.ID, Status: payments.Status(in.Status), AmountCapturable: in.AmountCapturable,
		AmountReceived: in.AmountReceived, At: payments.SyncTime(in.UpdatedAt)}
	if in.Status == string(payments.RequiresPaymentMethod) && in.LastError != nil {
		st.Decline = &payments.Decline{Code: in.LastError.Code, DeclineCode: in.LastError.DeclineCode, Message: in.LastError.Message}
	}
	return st
}

// webhookType is the Stripe event type announcing in's state.
func (in *intent) webhookType() string {
	switch payments.Status(in.Status) {
	case payments.Succeeded:
		return "payment_intent.succeeded"
	case payments.RequiresCapture:
		return "payment_intent.amount_capturable_updated"
	case payments.RequiresPaymentMethod:
		return "payment_intent.payment_failed"
	case payments.Canceled:
		return "payment_intent.canceled"
	case payments.RequiresAction:
		return "payment_intent.requires_action"
	}
	return "payment_intent.processing"
}

func (in *intent) object() sandbox.PaymentIntent {
	return sandbox.PaymentIntent{ID: in.ID, Object: "payment_intent", Amount: in.Amount, AmountCapturable: in.AmountCapturable,
		AmountReceived: in.AmountReceived, Currency: in.Currency, Status: in.Status, CaptureMethod: in.CaptureMethod,
		Metadata: map[string]string{sandbox.MetadataPaymentID: in.PaymentID}, LastPaymentError: in.LastError,
		Created: in.CreatedAt.Unix()}
}

// owes reports whether a state change must be announced by webhook: always
// in mode all; in mode async only what the caller could not see (a call
// that never answered, a delayed settlement).
func (g *Sandbox) owes(async bool) bool {
	return g.mode == WebhooksAll || (async && g.mode == WebhooksAsync)
}

// enqueue stores a webhook the sandbox owes, in the transaction of the change.
func (g *Sandbox) enqueue(ctx context.Context, q store.DB, typ string, at time.Time, object any) error {
	id := "evt_sbx_" + randomHex(12)
	body, err := sandbox.NewEvent(id, typ, at, object)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO sandbox_webhooks (id, type, payload, created_at) VALUES ($1, $2, $3, $4)`, id, typ, body, at)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var errReplay = errors.New("replay")

// Charge creates and confirms a sandbox intent, or confirms it again.
func (g *Sandbox) Charge(ctx context.Context, req payments.ChargeRequest) (payments.GatewayState, error) {
	out := sandboxOutcome(req.PaymentMethod)
	if out.kind == outUnavailable {
		return payments.GatewayState{}, &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "unavailable", Message: "the sandbox gateway is down (pm_sandbox_unavailable)"}
	}
	id := req.GatewayPaymentID
	if id == "" {
		id = payments.SandboxObjectID(req.PaymentID)
	}
	now := g.now()
	in := &intent{ID: id, PaymentID: req.PaymentID, Amount: req.Amount, Currency: strings.ToLower(string(req.Currency)),
		CaptureMethod: req.CaptureMethod, PaymentMethod: req.PaymentMethod, Status: string(payments.RequiresConfirmation),
		ConfirmKey: req.Key, CreatedAt: now}
	in.confirm(out, now, g.settleDelay)
	async := out.kind == outTimeout
	replayed := false
	err := g.write(ctx, async, func(q store.DB) error {
		tag, err := q.Exec(ctx, `INSERT INTO sandbox_intents (`+intentCols+`)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) ON CONFLICT (id) DO NOTHING`,
			in.ID, in.PaymentID, in.Amount, in.Currency, in.CaptureMethod, in.PaymentMethod, in.Status, in.AmountCapturable,
			in.AmountReceived, in.AmountRefunded, in.LastError, in.ConfirmKey, in.SettleAt, in.CreatedAt, in.UpdatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errReplay // exists: confirm it again, or replay
		}
		if g.owes(async) {
			return g.enqueue(ctx, q, in.webhookType(), now, in.object())
		}
		return nil
	})
	if errors.Is(err, errReplay) {
		in, replayed, err = g.reconfirm(ctx, id, req, out, now)
	}
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	if !replayed && g.owes(async) {
		g.Kick()
	}
	if !replayed && out.kind == outDelayed && in.Status == string(payments.Processing) {
		time.AfterFunc(g.settleDelay, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if n, _ := g.SettleDue(ctx); n > 0 {
				g.Kick()
			}
		})
	}
	if !replayed && out.kind == outTimeout {
		<-ctx.Done() // the gateway never answers
		return payments.GatewayState{}, &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "timeout", Unknown: true,
			Message: "no answer from the sandbox (pm_sandbox_timeout)", Err: ctx.Err()}
	}
	return in.state(), nil
}

// reconfirm confirms an existing intent again, or replays the answer to
// the same key.
func (g *Sandbox) reconfirm(ctx context.Context, id string, req payments.ChargeRequest, out outcome, now time.Time) (*intent, bool, error) {
	var (
		in       *intent
		replayed bool
	)
	err := g.tx(ctx, func(tx pgx.Tx) error {
		var err error
		in, err = scanIntent(tx.QueryRow(ctx, `SELECT `+intentCols+` FROM sandbox_intents WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if in.ConfirmKey == req.Key {
			replayed = true
			return nil
		}
		switch payments.Status(in.Status) {
		case payments.RequiresPaymentMethod, payments.RequiresConfirmation, payments.RequiresAction:
		default:
			return &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "payment_intent_unexpected_state", Rejected: true,
				Message: "a payment intent in status " + in.Status + " cannot be confirmed"}
		}
		in.PaymentMethod, in.ConfirmKey = req.PaymentMethod, req.Key
		in.confirm(out, now, g.settleDelay)
		if _, err := tx.Exec(ctx, `UPDATE sandbox_intents SET payment_method = $2, status = $3, amount_capturable = $4,
			amount_received = $5, last_error = $6, confirm_key = $7, settle_at = $8, updated_at = $9 WHERE id = $1`,
			in.ID, in.PaymentMethod, in.Status, in.AmountCapturable, in.AmountReceived, in.LastError, in.ConfirmKey,
			in.SettleAt, in.UpdatedAt); err != nil {
			return err
		}
		if g.owes(out.kind == outTimeout) {
			return g.enqueue(ctx, tx, in.webhookType(), now, in.object())
		}
		return nil
	})
	return in, replayed, err
}

// write runs fn in a transaction when a webhook must commit with the
// change, and straight on the pool otherwise (one round trip).
func (g *Sandbox) write(ctx context.Context, async bool, fn func(q store.DB) error) error {
	if g.owes(async) {
		return g.tx(ctx, func(tx pgx.Tx) error { return fn(tx) })
	}
	return fn(store.Async(g.pool))
}

// tx runs fn in a transaction of the sandbox's books, committed
// asynchronously (see asyncCommit).
func (g *Sandbox) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return postgres.Tx(ctx, g.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, store.AsyncCommit); err != nil {
			return err
		}
		return fn(tx)
	})
}

// storeError turns a failure of the sandbox's own storage into a gateway
// error: the sandbox "is down", the call did nothing.
func (g *Sandbox) storeError(err error) error {
	var ge *payments.GatewayError
	if errors.As(err, &ge) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "resource_missing", Rejected: true, Message: "no such payment intent"}
	}
	return &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "unavailable", Err: err}
}

// Capture captures amount of a requires_capture intent.
func (g *Sandbox) Capture(ctx context.Context, req payments.CaptureRequest) (payments.GatewayState, error) {
	now := g.now()
	var in *intent
	err := g.write(ctx, false, func(q store.DB) error {
		var err error
		in, err = scanIntent(q.QueryRow(ctx, `UPDATE sandbox_intents SET status = 'succeeded', amount_received = $2,
			amount_capturable = 0, updated_at = $3 WHERE id = $1 AND status = 'requires_capture' AND amount_capturable >= $2
			RETURNING `+intentCols, req.GatewayPaymentID, req.Amount, now))
		if err == nil && g.owes(false) {
			return g.enqueue(ctx, q, in.webhookType(), now, in.object())
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return g.replayOr(ctx, req.GatewayPaymentID, payments.Succeeded, "captured")
	}
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	g.kickIfOwed(false)
	return in.state(), nil
}

// Cancel cancels an intent that has not succeeded.
func (g *Sandbox) Cancel(ctx context.Context, req payments.CancelRequest) (payments.GatewayState, error) {
	now := g.now()
	var in *intent
	err := g.write(ctx, false, func(q store.DB) error {
		var err error
		in, err = scanIntent(q.QueryRow(ctx, `UPDATE sandbox_intents SET status = 'canceled', amount_capturable = 0,
			settle_at = NULL, updated_at = $2 WHERE id = $1
			AND status IN ('requires_payment_method', 'requires_confirmation', 'requires_action', 'requires_capture')
			RETURNING `+intentCols, req.GatewayPaymentID, now))
		if err == nil && g.owes(false) {
			return g.enqueue(ctx, q, in.webhookType(), now, in.object())
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return g.replayOr(ctx, req.GatewayPaymentID, payments.Canceled, "canceled")
	}
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	g.kickIfOwed(false)
	return in.state(), nil
}

// replayOr answers a capture or cancel that found the intent in another
// state: the same answer when it is already in the target state (a
// replay), a rejection otherwise.
func (g *Sandbox) replayOr(ctx context.Context, id string, want payments.Status, verb string) (payments.GatewayState, error) {
	in, err := scanIntent(g.pool.QueryRow(ctx, `SELECT `+intentCols+` FROM sandbox_intents WHERE id = $1`, id))
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	if payments.Status(in.Status) == want {
		return in.state(), nil
	}
	return payments.GatewayState{}, &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "payment_intent_unexpected_state", Rejected: true,
		Message: "a payment intent in status " + in.Status + " cannot be " + verb}
}

func (g *Sandbox) kickIfOwed(async bool) {
	if g.owes(async) {
		g.Kick()
	}
}

// Retrieve returns an intent's state, settling a delayed one that is due.
func (g *Sandbox) Retrieve(ctx context.Context, id string) (payments.GatewayState, error) {
	in, err := scanIntent(g.pool.QueryRow(ctx, `SELECT `+intentCols+` FROM sandbox_intents WHERE id = $1`, id))
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	if in.SettleAt != nil && !in.SettleAt.After(g.now()) {
		if _, err := g.settle(ctx, id); err != nil {
			return payments.GatewayState{}, g.storeError(err)
		}
		g.kickIfOwed(true)
		if in, err = scanIntent(g.pool.QueryRow(ctx, `SELECT `+intentCols+` FROM sandbox_intents WHERE id = $1`, id)); err != nil {
			return payments.GatewayState{}, g.storeError(err)
		}
	}
	return in.state(), nil
}

// SettleDue settles every delayed intent whose time has come and queues
// their webhooks; the schedule tick and a timer call it.
func (g *Sandbox) SettleDue(ctx context.Context) (int, error) {
	return g.settle(ctx, "")
}

func (g *Sandbox) settle(ctx context.Context, id string) (int, error) {
	now := g.now()
	n := 0
	err := g.tx(ctx, func(tx pgx.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, `UPDATE sandbox_intents SET
			status = CASE capture_method WHEN 'manual' THEN 'requires_capture' ELSE 'succeeded' END,
			amount_capturable = CASE capture_method WHEN 'manual' THEN amount ELSE 0 END,
			amount_received = CASE capture_method WHEN 'manual' THEN 0 ELSE amount END,
			settle_at = NULL, updated_at = $1
			WHERE settle_at <= $1 AND status = 'processing' AND ($2 = '' OR id = $2) RETURNING `+intentCols, now, id)
		if err != nil {
			return err
		}
		settled, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*intent, error) { return scanIntent(r) })
		if err != nil {
			return err
		}
		for _, in := range settled {
			if g.owes(true) {
				if err := g.enqueue(ctx, tx, in.webhookType(), now, in.object()); err != nil {
					return err
				}
			}
		}
		n = len(settled)
		return nil
	})
	return n, err
}

// Refund refunds part of a succeeded intent, once per key.
func (g *Sandbox) Refund(ctx context.Context, req payments.RefundRequest) (payments.RefundResult, error) {
	now := g.now()
	res := payments.RefundResult{GatewayRefundID: "re_sbx_" + strings.ReplaceAll(req.RefundID, "-", ""), Status: "succeeded"}
	replay := func() error {
		return g.pool.QueryRow(ctx, `SELECT id, status FROM sandbox_refunds WHERE key = $1`, req.Key).Scan(&res.GatewayRefundID, &res.Status)
	}
	if err := replay(); err == nil {
		return res, nil
	}
	err := g.tx(ctx, func(tx pgx.Tx) error {
		in, err := scanIntent(tx.QueryRow(ctx, `UPDATE sandbox_intents SET amount_refunded = amount_refunded + $2, updated_at = $3
			WHERE id = $1 AND status = 'succeeded' AND amount_received - amount_refunded >= $2 RETURNING `+intentCols,
			req.GatewayPaymentID, req.Amount, now))
		if errors.Is(err, pgx.ErrNoRows) {
			return &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "charge_not_refundable", Rejected: true,
				Message: "no succeeded payment intent " + req.GatewayPaymentID + " with that much left to refund"}
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sandbox_refunds (id, intent_id, key, amount, status, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, res.GatewayRefundID, in.ID, req.Key, req.Amount, res.Status, now); err != nil {
			return err
		}
		if g.owes(false) {
			return g.enqueue(ctx, tx, "charge.refund.updated", now, sandbox.Refund{ID: res.GatewayRefundID, Object: "refund",
				Amount: req.Amount, Currency: in.Currency, Status: res.Status, PaymentIntent: in.ID, Reason: req.Reason,
				Metadata: map[string]string{sandbox.MetadataPaymentID: in.PaymentID, sandbox.MetadataRefundID: req.RefundID},
				Created:  now.Unix()})
		}
		return nil
	})
	if _, dup := postgres.UniqueViolation(err); dup {
		err = replay() // the same key, concurrently: its refund won
	}
	if err != nil {
		return payments.RefundResult{}, g.storeError(err)
	}
	g.kickIfOwed(false)
	return res, nil
}

// RetrieveRefund returns a refund's state.
func (g *Sandbox) RetrieveRefund(ctx context.Context, id string) (payments.RefundResult, error) {
	res := payments.RefundResult{GatewayRefundID: id}
	err := g.pool.QueryRow(ctx, `SELECT status FROM sandbox_refunds WHERE id = $1`, id).Scan(&res.Status)
	if err != nil {
		return res, g.storeError(err)
	}
	return res, nil
}

// Start runs the webhook sender until Close: a pass after every Kick, and
// retries with backoff while handle-webhook cannot be reached.
func (g *Sandbox) Start(ctx context.Context) {
	ctx, g.stop = context.WithCancel(context.WithoutCancel(ctx))
	g.done = make(chan struct{})
	go func() {
		defer close(g.done)
		var retry <-chan time.Time
		backoff := time.Duration(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-g.kick:
				if retry != nil {
					continue
				}
			case <-retry:
			}
			retry = nil
			if _, err := g.Flush(ctx); err != nil && ctx.Err() == nil {
				backoff = min(max(2*backoff, 500*time.Millisecond), 30*time.Second)
				retry = time.After(backoff)
			} else {
				backoff = 0
			}
		}
	}()
}

// Close stops the sender.
func (g *Sandbox) Close(context.Context) {
	if g.stop != nil {
		g.stop()
		<-g.done
	}
}

// Kick asks for a webhook pass soon; it never blocks.
func (g *Sandbox) Kick() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// Flush sends the webhooks the sandbox owes, oldest first, and returns how
// many were delivered. It stops at the first failure (handle-webhook is
// down or refusing); the rest wait for the next pass.
func (g *Sandbox) Flush(ctx context.Context) (int, error) {
	if g.mode == WebhooksOff {
		return 0, nil
	}
	g.flushMu.Lock()
	defer g.flushMu.Unlock()
	sent := 0
	for {
		n, err := g.flushBatch(ctx)
		sent += n
		if err != nil || n < 50 {
			return sent, err
		}
	}
}

func (g *Sandbox) flushBatch(ctx context.Context) (int, error) {
	sent := 0
	var sendErr error
	err := g.tx(ctx, func(tx pgx.Tx) error {
		sent, sendErr = 0, nil
		rows, err := tx.Query(ctx, `SELECT id, payload FROM sandbox_webhooks WHERE sent_at IS NULL
			ORDER BY created_at, id LIMIT 50 FOR UPDATE SKIP LOCKED`)
		if err != nil {
			return err
		}
		type hook struct {
			id      string
			payload []byte
		}
		hooks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hook, error) {
			var h hook
			return h, r.Scan(&h.id, &h.payload)
		})
		if err != nil {
			return err
		}
		if len(hooks) > 0 {
			// The books these webhooks announce were committed
			// asynchronously: make the WAL durable before telling anyone
			// (a synchronous commit of a transaction with an id flushes
			// the WAL up to it).
			if _, err := g.pool.Exec(ctx, `SELECT txid_current()`); err != nil {
				return err
			}
		}
		for _, h := range hooks {
			if sendErr = g.send(ctx, h.payload); sendErr != nil {
				_, err := tx.Exec(ctx, `UPDATE sandbox_webhooks SET attempts = attempts + 1, last_error = $2 WHERE id = $1`,
					h.id, sendErr.Error())
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE sandbox_webhooks SET sent_at = $2, attempts = attempts + 1, last_error = NULL
				WHERE id = $1`, h.id, g.now()); err != nil {
				return err
			}
			sent++
		}
		return nil
	})
	if err == nil {
		err = sendErr
	}
	if sendErr != nil {
		slog.WarnContext(ctx, "sandbox: webhook not delivered; it will be retried", "url", g.webhookURL, "err", sendErr.Error())
	}
	return sent, err
}

// send POSTs one signed webhook; any 2xx is a delivery.
func (g *Sandbox) send(ctx context.Context, body []byte) error {
	if len(g.secrets) == 0 {
		return errors.New("SANDBOX_WEBHOOK_SECRET is not set: the sandbox cannot sign webhooks")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.webhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "billfn-sandbox/1.0 (+https://billfn.dev/webhooks)")
	req.Header.Set(sandbox.SignatureHeader, sandbox.Sign(g.secrets[0], time.Now(), body))
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("handle-webhook answered %s", resp.Status)
	}
	return nil
}

// Prune forgets the webhooks delivered before before (the sandbox keeps
// them as a gateway's log).
func (g *Sandbox) Prune(ctx context.Context, before time.Time) error {
	_, err := g.pool.Exec(ctx, `DELETE FROM sandbox_webhooks WHERE sent_at < $1`, before)
	return err
}
