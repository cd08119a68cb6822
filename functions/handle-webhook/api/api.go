package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/sandbox"
)

const name = "handle-webhook"

// Config is handle-webhook's own configuration (besides platform.Config).
type Config struct {
	// StripeSecrets are the endpoint's signing secrets (whsec_…),
	// comma-separated: several are active while a secret rotates.
	StripeSecrets string `envconfig:"STRIPE_WEBHOOK_SECRET" secret:"stripe-webhook-secret"`
	// SandboxSecrets verify capture-payment's sandbox gateway, likewise.
	SandboxSecrets string `envconfig:"SANDBOX_WEBHOOK_SECRET" secret:"sandbox-webhook-secret"`
	// Tolerance is how far a signature's timestamp may be from now, either way.
	Tolerance config.Duration `envconfig:"WEBHOOK_TOLERANCE" default:"300s"`
	// RateLimit is the deliveries a source address may make per second
	// (0: no limit). Sized far above a gateway's burst.
	RateLimit int `envconfig:"WEBHOOK_RATE_LIMIT" default:"5000"`
	// TrustForwardedFor takes the client address from X-Forwarded-For as
	// far as the trusted proxies (TRUSTED_PROXIES) appended it; off, the
	// peer address is the client.
	TrustForwardedFor bool `envconfig:"WEBHOOK_TRUST_FORWARDED_FOR" default:"true"`
}

// service is handle-webhook.
type service struct {
	d       *platform.Deps
	cfg     Config
	now     func() time.Time
	stripe  []string
	sandbox [][]byte
	limiter *limiter
}

func newService(d *platform.Deps, cfg Config, now func() time.Time) (*service, error) {
	if cfg.Tolerance <= 0 {
		return nil, errors.New("WEBHOOK_TOLERANCE must be positive")
	}
	if cfg.RateLimit < 0 {
		return nil, errors.New("WEBHOOK_RATE_LIMIT must be 0 (off) or positive")
	}
	clock := func() time.Time { return now().UTC().Truncate(time.Microsecond) }
	s := &service{d: d, cfg: cfg, now: clock, sandbox: sandbox.Secrets(cfg.SandboxSecrets)}
	for _, k := range strings.Split(cfg.StripeSecrets, ",") {
		if k = strings.TrimSpace(k); k != "" {
			s.stripe = append(s.stripe, k)
		}
	}
	s.limiter = &limiter{rdb: d.Redis, prefix: d.Config.Redis.Prefix + name + ":rl:", limit: cfg.RateLimit, now: clock}
	for _, typ := range learnTypes {
		d.Events.On(typ, s.onPaymentEvent)
	}
	d.Events.Batch = s.onPaymentEvents
	d.Events.Tick = s.tick
	d.Collect(webhooksTotal)
	return s, nil
}

// routes is handle-webhook's HTTP surface.
func (s *service) routes() *http.ServeMux { return s.d.Mux(s.routeTable()) }

// routeTable is who may call what (docs/handle-webhook.md carries the same
// table). The gateways' webhooks are public: they prove themselves with
// their own signature, behind the per-address limiter; the delivery log is
// the admin's.
func (s *service) routeTable() []platform.Route {
	delivery := map[string]string{"{id}": "webhook-delivery"}
	return []platform.Route{
		{Pattern: "POST /stripe", Access: platform.Public, Refs: map[string]string{}, Handler: s.limited(http.HandlerFunc(s.receiveStripe))},
		{Pattern: "POST /sandbox", Access: platform.Public, Refs: map[string]string{}, Handler: s.limited(http.HandlerFunc(s.receiveSandbox))},
		{Pattern: "GET /events", Access: platform.Admin, Refs: map[string]string{}, Handler: http.HandlerFunc(s.listEvents)},
		{Pattern: "GET /events/{id}", Access: platform.Admin, Refs: delivery, Handler: http.HandlerFunc(s.getEvent)},
		{Pattern: "POST /events/{id}/replay", Access: platform.Admin, Refs: delivery, Handler: s.d.Idempotency.Middleware(true)(http.HandlerFunc(s.replay))},
		{Pattern: "POST /{$}", Access: platform.Delivery, Refs: map[string]string{}, Handler: http.HandlerFunc(s.events)},
	}
}

// events receives CloudEvents (payment-events, which teach the payment
// map) and ticks, then publishes what they wrote.
func (s *service) events(w http.ResponseWriter, r *http.Request) {
	s.d.Events.ServeHTTP(w, r)
	s.d.Publisher.Kick()
}

// tick releases parked deliveries whose payment is known and publishes
// what the fast path missed.
func (s *service) tick(ctx context.Context) error {
	err := s.releaseParked(ctx)
	_, perr := s.d.Publisher.Sweep(ctx)
	return errors.Join(err, perr)
}
