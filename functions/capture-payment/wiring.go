package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
)

// Config is capture-payment's own configuration (besides platform.Config).
type Config struct {
	// Routes: "<CURRENCY|*>=<gateway>[,<gateway>…];…" (see ParseRoutes).
	Routes string `envconfig:"GATEWAY_ROUTES" default:"*=sandbox"`
	// GatewayTimeout bounds one gateway call, retries included.
	GatewayTimeout config.Duration `envconfig:"GATEWAY_TIMEOUT" default:"8s"`

	StripeKey     string `envconfig:"STRIPE_API_KEY" secret:"stripe-api-key"`
	StripeBase    string `envconfig:"STRIPE_API_BASE"` // e.g. http://127.0.0.1:12111 (stripe-mock)
	StripeRetries int64  `envconfig:"STRIPE_MAX_NETWORK_RETRIES" default:"2"`

	SandboxWebhookURL    string          `envconfig:"SANDBOX_WEBHOOK_URL" default:"http://127.0.0.1:8080/function/handle-webhook/sandbox"`
	SandboxWebhookSecret string          `envconfig:"SANDBOX_WEBHOOK_SECRET" secret:"sandbox-webhook-secret"`
	SandboxWebhooks      string          `envconfig:"SANDBOX_WEBHOOKS" default:"async"` // off, async, all
	SandboxSettleDelay   config.Duration `envconfig:"SANDBOX_SETTLE_DELAY" default:"2s"`

	// ReconcileAfter is how long a payment may wait on a gateway before
	// the tick asks the gateway for the truth.
	ReconcileAfter config.Duration `envconfig:"RECONCILE_AFTER" default:"30s"`
	// AuthorizationTTL is how long an uncaptured authorization lives
	// before the tick cancels it (Stripe: 7 days).
	AuthorizationTTL config.Duration `envconfig:"AUTHORIZATION_TTL" default:"168h"`

	// Accounts is where the read-through of an account the read model
	// does not know yet asks (process-transaction, with a service token).
	Accounts accounts.Config

	// Invoices is where the read-through of an invoice the read model does
	// not know yet asks (generate-invoice, with the service token).
	Invoices InvoicesConfig
}

// service is capture-payment.
type service struct {
	d        *platform.Deps
	cfg      Config
	now      func() time.Time
	gateways map[string]payments.Gateway
	routing  payments.Routes
	sandbox  *sandboxGateway
	// accounts is the read model of the accounts capture-payment charges
	// and pays into: who owns each, its currency and status. Ownership is
	// decided from it, never from what the caller says.
	accounts *accounts.Directory
	// invoiceSource reads an invoice whose event has not arrived (nil: none).
	invoiceSource invoiceSource
}

// newService wires the gateways and the event handlers. The sandbox's
// webhook sender starts here and stops with the function.
func newService(ctx context.Context, d *platform.Deps, cfg Config, now func() time.Time) (*service, error) {
	switch cfg.SandboxWebhooks {
	case webhooksOff, webhooksAsync, webhooksAll:
	default:
		return nil, fmt.Errorf("SANDBOX_WEBHOOKS: %q is not off, async or all", cfg.SandboxWebhooks)
	}
	if cfg.GatewayTimeout <= 0 {
		return nil, errors.New("GATEWAY_TIMEOUT must be positive")
	}
	// Postgres keeps microseconds: so do we, so an answer and a later read agree.
	clock := func() time.Time { return now().UTC().Truncate(time.Microsecond) }
	s := &service{d: d, cfg: cfg, now: clock, gateways: map[string]payments.Gateway{}}
	s.sandbox = newSandbox(d.Pool, clock, cfg)
	s.gateways[payments.GatewaySandbox] = s.sandbox
	if cfg.StripeKey != "" {
		s.gateways[payments.GatewayStripe] = newStripe(cfg.StripeKey, cfg.StripeBase, cfg.StripeRetries, cfg.GatewayTimeout.D(), clock, nil)
	}
	known := map[string]bool{}
	for n := range s.gateways {
		known[n] = true
	}
	var err error
	if s.routing, err = payments.ParseRoutes(cfg.Routes, known); err != nil {
		if cfg.StripeKey == "" {
			err = fmt.Errorf("%w (stripe needs STRIPE_API_KEY or the secret file stripe-api-key)", err)
		}
		return nil, err
	}
	if cfg.SandboxWebhooks != webhooksOff && len(cfg.SandboxWebhookSecret) == 0 {
		return nil, errors.New("SANDBOX_WEBHOOK_SECRET (or the secret file sandbox-webhook-secret) is required unless SANDBOX_WEBHOOKS=off")
	}
	s.sandbox.Start(ctx)
	d.OnClose(s.sandbox.Close)

	s.accounts = accounts.New(d.Pool, "payment_accounts", cfg.Accounts.Source())
	s.accounts.Register(d.Events)
	s.registerInvoices(d.Events, cfg.Invoices)
	d.Events.On(events.TypeGatewayUpdated, s.onGatewayUpdated)
	d.Events.On("billfn.invoice.finalized", s.onInvoiceFinalized)
	d.Events.On("billfn.invoice.payment_retry_requested", s.onPaymentRetry)
	d.Events.Tick = s.tick
	d.Collect(gatewayCalls)
	return s, nil
}

// routes is capture-payment's HTTP surface.
func (s *service) routes() *http.ServeMux { return s.d.Mux(s.routeTable()) }

// routeTable is every route with who may call it, its rate-limit class and
// the kind of resource each reference it takes names (the attack test puts
// another customer's resource of that kind in each).
func (s *service) routeTable() []platform.Route {
	idem := s.d.Idempotency.Middleware(true)
	write := func(h http.HandlerFunc) http.Handler { return idem(h) } // Mux refuses card numbers before (shared/pan)
	payment := map[string]string{"{id}": "payment"}
	account := map[string]string{"{id}": "account"}
	method := map[string]string{"{id}": "account", "{method}": "payment-method"}
	return []platform.Route{
		{Pattern: "POST /payments", Access: platform.Customer, Class: platform.Money, Handler: write(s.createPayment),
			Refs: map[string]string{"account_id": "account", "payment_method": "payment-method", "invoice_id": "invoice"}},
		{Pattern: "GET /payments", Access: platform.Customer, Handler: http.HandlerFunc(s.listPayments),
			Refs: map[string]string{"?account_id": "account"}},
		{Pattern: "GET /payments/{id}", Access: platform.Customer, Handler: http.HandlerFunc(s.getPayment), Refs: payment},
		{Pattern: "POST /payments/{id}/confirm", Access: platform.Customer, Class: platform.Money, Handler: write(s.confirmPayment),
			Refs: map[string]string{"{id}": "payment", "payment_method": "payment-method"}},
		{Pattern: "POST /payments/{id}/capture", Access: platform.Customer, Class: platform.Money, Handler: write(s.capturePayment), Refs: payment},
		{Pattern: "POST /payments/{id}/cancel", Access: platform.Customer, Class: platform.Write, Handler: write(s.cancelPayment), Refs: payment},
		{Pattern: "POST /payments/{id}/refunds", Access: platform.Privileged, Class: platform.Money, Handler: write(s.createRefund), Refs: payment},
		{Pattern: "GET /payments/{id}/refunds", Access: platform.Customer, Handler: http.HandlerFunc(s.listRefunds), Refs: payment},
		{Pattern: "GET /refunds/{id}", Access: platform.Customer, Handler: http.HandlerFunc(s.getRefund), Refs: map[string]string{"{id}": "refund"}},
		{Pattern: "POST /accounts/{id}/payment-methods", Access: platform.Customer, Class: platform.Write, Handler: write(s.createMethod), Refs: account},
		{Pattern: "GET /accounts/{id}/payment-methods", Access: platform.Customer, Handler: http.HandlerFunc(s.listMethods), Refs: account},
		{Pattern: "DELETE /accounts/{id}/payment-methods/{method}", Access: platform.Customer, Class: platform.Write,
			Handler: s.d.Idempotency.Middleware(false)(http.HandlerFunc(s.deleteMethod)), Refs: method},
		{Pattern: "POST /accounts/{id}/payment-methods/{method}/default", Access: platform.Customer, Class: platform.Write,
			Handler: write(s.defaultMethod), Refs: method},
		{Pattern: "POST /{$}", Access: platform.Delivery, Handler: http.HandlerFunc(s.events), Refs: map[string]string{}},
	}
}

// events receives CloudEvents and ticks, then publishes what they wrote.
func (s *service) events(w http.ResponseWriter, r *http.Request) {
	s.d.Events.ServeHTTP(w, r)
	s.d.Publisher.Kick()
}

// txRunner runs the steps of a flow: each in a new transaction (HTTP
// requests, whose gateway call happens between two of them), or all in the
// caller's (event handlers, inside the receiver's transaction).
type txRunner struct {
	pool *pgxpool.Pool
	tx   pgx.Tx
}

func (s *service) fresh() txRunner { return txRunner{pool: s.d.Pool} }

func (s *service) within(tx pgx.Tx) txRunner { return txRunner{pool: s.d.Pool, tx: tx} }

// run runs fn in the runner's transaction.
func (r txRunner) run(ctx context.Context, fn func(pgx.Tx) error) error {
	if r.tx != nil {
		return fn(r.tx)
	}
	return postgres.Tx(ctx, r.pool, fn)
}

// db is where a single statement runs (atomic on its own).
func (r txRunner) db() db {
	if r.tx != nil {
		return r.tx
	}
	return r.pool
}

// pipelined reports whether a finishing write may go as one pipeline of
// statements in an implicit transaction (not inside the caller's).
func (r txRunner) pipelined() bool { return r.tx == nil }

func (s *service) newTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return postgres.Tx(ctx, s.d.Pool, fn)
}

// detached is the context of work that must finish once started: a
// client's disconnect or the request deadline must not turn a gateway call
// that happened into a lost answer.
func detached(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}
