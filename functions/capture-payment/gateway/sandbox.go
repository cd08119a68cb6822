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

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/functions/capture-payment/store"
	"github.com/billfn/billfn/shared/sandbox"
	"github.com/billfn/billfn/shared/telemetry"
)

// Sandbox is the built-in gateway for local use and demos. It takes
// Stripe's documented test PaymentMethod ids with Stripe's outcomes, plus
// pm_sandbox_timeout (records the charge, never answers),
// pm_sandbox_delayed (answers processing, settles SANDBOX_SETTLE_DELAY later
// and says so with a signed webhook) and pm_sandbox_unavailable (the gateway
// is down: a gateway-side error, for failover demos).
//
// It keeps its own books (Books: the sandbox_* tables), as a real gateway would,
// so reconciliation can ask it for the truth and every call is idempotent
// by its key. Webhooks it owes go to SANDBOX_WEBHOOK_URL (handle-webhook's
// /sandbox), signed with SANDBOX_WEBHOOK_SECRET, with retries.
type Sandbox struct {
	books       Books
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

// Books is where the sandbox keeps its books (store.SandboxBooks). A
// store.Hook given to a write tells it the webhook the change owes.
type Books interface {
	InsertIntent(ctx context.Context, in *intent, hook store.Hook) (bool, error)
	UpdateIntent(ctx context.Context, id string, hook store.Hook, fn func(*intent) (bool, error)) (*intent, error)
	CaptureIntent(ctx context.Context, id string, amount int64, now time.Time, hook store.Hook) (*intent, error)
	CancelIntent(ctx context.Context, id string, now time.Time, hook store.Hook) (*intent, error)
	Intent(ctx context.Context, id string) (*intent, error)
	SettleIntents(ctx context.Context, id string, now time.Time, hook store.Hook) ([]*intent, error)
	RefundIntent(ctx context.Context, r store.SandboxRefund, hook store.Hook) (*intent, error)
	RefundByKey(ctx context.Context, key string) (id, status string, err error)
	RefundStatus(ctx context.Context, id string) (string, error)
	SendWebhooks(ctx context.Context, max int, now func() time.Time, send func(payload []byte) error) (sent int, sendErr, err error)
	PruneWebhooks(ctx context.Context, before time.Time) error
}

// NewSandbox returns the sandbox gateway keeping its books in books.
func NewSandbox(books Books, now func() time.Time, cfg SandboxConfig) *Sandbox {
	return &Sandbox{books: books, now: now, settleDelay: cfg.SettleDelay, webhookURL: cfg.WebhookURL,
		secrets: sandbox.Secrets(cfg.WebhookSecret), mode: cfg.Webhooks,
		client: &http.Client{Timeout: 5 * time.Second, Transport: telemetry.Transport(nil)}, kick: make(chan struct{}, 1)}
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

// intent is a row of the sandbox's books.
type intent = store.SandboxIntent

// succeed applies a successful authorization.
func succeed(in *intent) {
	in.LastError = nil
	if in.CaptureMethod == payments.CaptureManual {
		in.Status, in.AmountCapturable = string(payments.RequiresCapture), in.Amount
	} else {
		in.Status, in.AmountReceived, in.AmountCapturable = string(payments.Succeeded), in.Amount, 0
	}
}

// confirm applies the outcome of a confirmation.
func confirm(in *intent, out outcome, now time.Time, delay time.Duration) {
	in.SettleAt = nil
	switch out.kind {
	case outSuccess, outTimeout:
		succeed(in)
	case outAction:
		if in.Status == string(payments.RequiresAction) {
			succeed(in) // confirmed again: the customer authenticated
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

func state(in *intent) payments.GatewayState {
	st := payments.GatewayState{GatewayPaymentID: in.ID, Status: payments.Status(in.Status), AmountCapturable: in.AmountCapturable,
		AmountReceived: in.AmountReceived, At: payments.SyncTime(in.UpdatedAt)}
	if in.Status == string(payments.RequiresPaymentMethod) && in.LastError != nil {
		st.Decline = &payments.Decline{Code: in.LastError.Code, DeclineCode: in.LastError.DeclineCode, Message: in.LastError.Message}
	}
	return st
}

// webhookType is the Stripe event type announcing in's state.
func webhookType(in *intent) string {
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

func object(in *intent) sandbox.PaymentIntent {
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

// hook is the store.Hook of a change: nil when no webhook is owed (see
// owes), else one announcing the intent's new state.
func (g *Sandbox) hook(async bool, now time.Time) store.Hook {
	if !g.owes(async) {
		return nil
	}
	return func(in *intent) (*store.SandboxWebhook, error) {
		return newWebhook(webhookType(in), now, object(in))
	}
}

// newWebhook is a webhook of type typ about object.
func newWebhook(typ string, at time.Time, object any) (*store.SandboxWebhook, error) {
	id := "evt_sbx_" + randomHex(12)
	body, err := sandbox.NewEvent(id, typ, at, object)
	if err != nil {
		return nil, err
	}
	return &store.SandboxWebhook{ID: id, Type: typ, Payload: body, At: at}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

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
	confirm(in, out, now, g.settleDelay)
	async := out.kind == outTimeout
	replayed := false
	inserted, err := g.books.InsertIntent(ctx, in, g.hook(async, now))
	if err == nil && !inserted { // exists: confirm it again, or replay
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
	return state(in), nil
}

// reconfirm confirms an existing intent again, or replays the answer to
// the same key.
func (g *Sandbox) reconfirm(ctx context.Context, id string, req payments.ChargeRequest, out outcome, now time.Time) (*intent, bool, error) {
	replayed := false
	in, err := g.books.UpdateIntent(ctx, id, g.hook(out.kind == outTimeout, now), func(in *intent) (bool, error) {
		if in.ConfirmKey == req.Key {
			replayed = true
			return false, nil
		}
		switch payments.Status(in.Status) {
		case payments.RequiresPaymentMethod, payments.RequiresConfirmation, payments.RequiresAction:
		default:
			return false, &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "payment_intent_unexpected_state", Rejected: true,
				Message: "a payment intent in status " + in.Status + " cannot be confirmed"}
		}
		in.PaymentMethod, in.ConfirmKey = req.PaymentMethod, req.Key
		confirm(in, out, now, g.settleDelay)
		return true, nil
	})
	return in, replayed, err
}

// storeError turns a failure of the sandbox's own storage into a gateway
// error: the sandbox "is down", the call did nothing.
func (g *Sandbox) storeError(err error) error {
	var ge *payments.GatewayError
	if errors.As(err, &ge) {
		return err
	}
	if errors.Is(err, store.ErrNoIntent) {
		return &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "resource_missing", Rejected: true, Message: "no such payment intent"}
	}
	return &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "unavailable", Err: err}
}

// Capture captures amount of a requires_capture intent.
func (g *Sandbox) Capture(ctx context.Context, req payments.CaptureRequest) (payments.GatewayState, error) {
	now := g.now()
	in, err := g.books.CaptureIntent(ctx, req.GatewayPaymentID, req.Amount, now, g.hook(false, now))
	if errors.Is(err, store.ErrNoIntent) {
		return g.replayOr(ctx, req.GatewayPaymentID, payments.Succeeded, "captured")
	}
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	g.kickIfOwed(false)
	return state(in), nil
}

// Cancel cancels an intent that has not succeeded.
func (g *Sandbox) Cancel(ctx context.Context, req payments.CancelRequest) (payments.GatewayState, error) {
	now := g.now()
	in, err := g.books.CancelIntent(ctx, req.GatewayPaymentID, now, g.hook(false, now))
	if errors.Is(err, store.ErrNoIntent) {
		return g.replayOr(ctx, req.GatewayPaymentID, payments.Canceled, "canceled")
	}
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	g.kickIfOwed(false)
	return state(in), nil
}

// replayOr answers a capture or cancel that found the intent in another
// state: the same answer when it is already in the target state (a
// replay), a rejection otherwise.
func (g *Sandbox) replayOr(ctx context.Context, id string, want payments.Status, verb string) (payments.GatewayState, error) {
	in, err := g.books.Intent(ctx, id)
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	if payments.Status(in.Status) == want {
		return state(in), nil
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
	in, err := g.books.Intent(ctx, id)
	if err != nil {
		return payments.GatewayState{}, g.storeError(err)
	}
	if in.SettleAt != nil && !in.SettleAt.After(g.now()) {
		if _, err := g.settle(ctx, id); err != nil {
			return payments.GatewayState{}, g.storeError(err)
		}
		g.kickIfOwed(true)
		if in, err = g.books.Intent(ctx, id); err != nil {
			return payments.GatewayState{}, g.storeError(err)
		}
	}
	return state(in), nil
}

// SettleDue settles every delayed intent whose time has come and queues
// their webhooks; the schedule tick and a timer call it.
func (g *Sandbox) SettleDue(ctx context.Context) (int, error) {
	return g.settle(ctx, "")
}

func (g *Sandbox) settle(ctx context.Context, id string) (int, error) {
	now := g.now()
	settled, err := g.books.SettleIntents(ctx, id, now, g.hook(true, now))
	return len(settled), err
}

// Refund refunds part of a succeeded intent, once per key.
func (g *Sandbox) Refund(ctx context.Context, req payments.RefundRequest) (payments.RefundResult, error) {
	now := g.now()
	res := payments.RefundResult{GatewayRefundID: "re_sbx_" + strings.ReplaceAll(req.RefundID, "-", ""), Status: "succeeded"}
	replay := func() error {
		id, status, err := g.books.RefundByKey(ctx, req.Key)
		if err == nil {
			res.GatewayRefundID, res.Status = id, status
		}
		return err
	}
	if err := replay(); err == nil {
		return res, nil
	}
	var hook store.Hook
	if g.owes(false) {
		hook = func(in *intent) (*store.SandboxWebhook, error) {
			return newWebhook("charge.refund.updated", now, sandbox.Refund{ID: res.GatewayRefundID, Object: "refund",
				Amount: req.Amount, Currency: in.Currency, Status: res.Status, PaymentIntent: in.ID, Reason: req.Reason,
				Metadata: map[string]string{sandbox.MetadataPaymentID: in.PaymentID, sandbox.MetadataRefundID: req.RefundID},
				Created:  now.Unix()})
		}
	}
	_, err := g.books.RefundIntent(ctx, store.SandboxRefund{ID: res.GatewayRefundID, IntentID: req.GatewayPaymentID, Key: req.Key,
		Amount: req.Amount, Status: res.Status, CreatedAt: now}, hook)
	switch {
	case errors.Is(err, store.ErrNoIntent):
		err = &payments.GatewayError{Gateway: payments.GatewaySandbox, Code: "charge_not_refundable", Rejected: true,
			Message: "no succeeded payment intent " + req.GatewayPaymentID + " with that much left to refund"}
	case errors.Is(err, store.ErrRefundKey):
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
	status, err := g.books.RefundStatus(ctx, id)
	if err != nil {
		return res, g.storeError(err)
	}
	res.Status = status
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
	sent, sendErr, err := g.books.SendWebhooks(ctx, 50, g.now, func(payload []byte) error { return g.send(ctx, payload) })
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
	return g.books.PruneWebhooks(ctx, before)
}
