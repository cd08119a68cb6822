package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/api"
	"github.com/billfn/billfn/functions/capture-payment/gateway"
	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/functions/capture-payment/remote"
	"github.com/billfn/billfn/functions/capture-payment/store"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/readthrough"
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
	Invoices remote.InvoicesConfig
}

// service is capture-payment wired: the domain's service over the store,
// the gateways and the read models, served by the api. main serves it; the
// tests drive it.
type service struct {
	cfg      Config
	svc      *payments.Service
	api      *api.API
	sandbox  *gateway.Sandbox
	accounts *accounts.Directory
}

// newService wires the gateways, the store, the domain and the api. The
// sandbox's webhook sender starts here and stops with the function.
func newService(ctx context.Context, d *platform.Deps, cfg Config, now func() time.Time) (*service, error) {
	switch cfg.SandboxWebhooks {
	case gateway.WebhooksOff, gateway.WebhooksAsync, gateway.WebhooksAll:
	default:
		return nil, fmt.Errorf("SANDBOX_WEBHOOKS: %q is not off, async or all", cfg.SandboxWebhooks)
	}
	if cfg.GatewayTimeout <= 0 {
		return nil, errors.New("GATEWAY_TIMEOUT must be positive")
	}
	// Postgres keeps microseconds: so do we, so an answer and a later read agree.
	clock := func() time.Time { return now().UTC().Truncate(time.Microsecond) }
	st := store.New(d.Pool, d.Publisher.Writer())
	sandbox := gateway.NewSandbox(st.SandboxBooks(), clock, gateway.SandboxConfig{SettleDelay: cfg.SandboxSettleDelay.D(),
		WebhookURL: cfg.SandboxWebhookURL, WebhookSecret: cfg.SandboxWebhookSecret, Webhooks: cfg.SandboxWebhooks})
	gateways := map[string]payments.Gateway{payments.GatewaySandbox: sandbox}
	if cfg.StripeKey != "" {
		gateways[payments.GatewayStripe] = gateway.NewStripe(config.Follow("stripe-api-key", cfg.StripeKey), cfg.StripeBase, cfg.StripeRetries, cfg.GatewayTimeout.D(), clock, nil)
	}
	known := map[string]bool{}
	for n := range gateways {
		known[n] = true
	}
	routing, err := payments.ParseRoutes(cfg.Routes, known)
	if err != nil {
		if cfg.StripeKey == "" {
			err = fmt.Errorf("%w (stripe needs STRIPE_API_KEY or the secret file stripe-api-key)", err)
		}
		return nil, err
	}
	if cfg.SandboxWebhooks != gateway.WebhooksOff && len(cfg.SandboxWebhookSecret) == 0 {
		return nil, errors.New("SANDBOX_WEBHOOK_SECRET (or the secret file sandbox-webhook-secret) is required unless SANDBOX_WEBHOOKS=off")
	}
	sandbox.Start(ctx)
	d.OnClose(sandbox.Close)

	dir := accounts.New(d.Pool, "payment_accounts", cfg.Accounts.Source())
	dir.Register(d.Events)
	st.Accounts = dir
	// A request's claim of its Idempotency-Key commits with the claims and
	// finishing records of concurrent requests (the store's group).
	d.Idempotency.Group = st.Group()
	svc := &payments.Service{Store: st, Gateways: gateways, Routing: routing, Accounts: dir,
		Ledger: remote.Ledger{URL: cfg.Accounts.LedgerURL, ServiceToken: config.Follow(readthrough.ServiceTokenSecret, cfg.Accounts.ServiceToken)},
		Now:    clock, GatewayTimeout: cfg.GatewayTimeout.D(), ReconcileAfter: cfg.ReconcileAfter.D(),
		AuthorizationTTL: cfg.AuthorizationTTL.D(), Kick: d.Publisher.Kick, Observe: gateway.Observe}
	if src := cfg.Invoices.Source(); src != nil {
		svc.Invoices = src
	}
	d.Collect(gateway.Calls)
	return &service{cfg: cfg, svc: svc, api: api.New(d, svc, st, sandbox), sandbox: sandbox, accounts: dir}, nil
}
