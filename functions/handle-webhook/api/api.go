// Package api is handle-webhook's HTTP side: the route table, the gateway
// endpoints (rate limit, signature, store, receipt), the admin's delivery
// log, the event handlers that learn the payment map, and the one table
// from the function's error codes to HTTP statuses (errors.go). The rules
// are package webhooks', the SQL package store's.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/store"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/egress"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/sandbox"
)

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

	// AllowedHosts are the hosts (or host:port) outgoing webhooks may
	// reach although they are not public addresses (loopback, private,
	// link-local): comma-separated; make run allows loopback.
	AllowedHosts string `envconfig:"WEBHOOK_ALLOWED_HOSTS"`
	// SendTimeout bounds one attempt to deliver to an endpoint.
	SendTimeout config.Duration `envconfig:"WEBHOOK_SEND_TIMEOUT" default:"15s"`
	// StartDelay is how long after start the background work waits
	// before it first reaches Postgres: the endpoints' listener, and the
	// outgoing sender's first pass unless deliveries are queued sooner.
	// A start opens one Postgres connection, which the readiness probe
	// uses; each of those two beside it would fork a backend more.
	StartDelay config.Duration `envconfig:"WEBHOOK_START_DELAY" default:"1s"`
	// DeliveryRetention is how long a finished outgoing delivery
	// (succeeded or failed) stays in the delivery log after its last
	// attempt; the tick deletes older ones. 0 keeps them for ever.
	DeliveryRetention config.Duration `envconfig:"WEBHOOK_DELIVERY_RETENTION" default:"720h"`
	// SecretsKey seals the endpoints' signing secrets at rest
	// (store.Sealer): keys of at least 32 random characters, comma-separated,
	// the first sealing, all opening (a rotation). Empty: stored as they are.
	SecretsKey string `envconfig:"WEBHOOK_SECRETS_KEY" secret:"endpoint-secrets-key"`
	// EndpointsMaxAge bounds how long a replica decides which events
	// concern the endpoints from its copy of them (store.Interests),
	// kept by a LISTEN on their changes; it is reloaded at half of it
	// anyway. EndpointsRetry is how long the listener waits to connect
	// again after a failure (meanwhile the endpoints are read each time).
	EndpointsMaxAge config.Duration `envconfig:"WEBHOOK_ENDPOINTS_MAX_AGE" default:"30s"`
	EndpointsRetry  config.Duration `envconfig:"WEBHOOK_ENDPOINTS_RETRY" default:"1s"`
}

// API is handle-webhook's handlers over its store.
type API struct {
	d   *platform.Deps
	cfg Config
	now func() time.Time
	// The gateways' signing secrets in force: the secret files are
	// followed (secrets), so a rotation — the new secret added beside
	// the old, then the old removed — needs no restart.
	stripe  atomic.Pointer[[]string]
	sandbox atomic.Pointer[[][]byte]
	secrets []*config.Watched
	limiter *limiter
	store   *store.Store
	guard   *egress.Guard
	client  *http.Client
	wake    chan struct{}
	taught  taughtRefs // wanted's decoded references, for onEvents
	// startDelay holds the sender's first pass (WEBHOOK_START_DELAY).
	startDelay time.Duration
}

// New builds the handlers and registers the event handlers and the tick
// with d.Events.
func New(d *platform.Deps, cfg Config, now func() time.Time) (*API, error) {
	if cfg.Tolerance <= 0 {
		return nil, errors.New("WEBHOOK_TOLERANCE must be positive")
	}
	if cfg.RateLimit < 0 {
		return nil, errors.New("WEBHOOK_RATE_LIMIT must be 0 (off) or positive")
	}
	if cfg.SendTimeout <= 0 {
		return nil, errors.New("WEBHOOK_SEND_TIMEOUT must be positive")
	}
	if cfg.StartDelay < 0 {
		return nil, errors.New("WEBHOOK_START_DELAY must be 0 or positive")
	}
	if cfg.EndpointsMaxAge == 0 {
		cfg.EndpointsMaxAge = config.Duration(30 * time.Second)
	}
	if cfg.EndpointsRetry == 0 {
		cfg.EndpointsRetry = config.Duration(time.Second)
	}
	if cfg.EndpointsMaxAge < 0 || cfg.EndpointsRetry < 0 {
		return nil, errors.New("WEBHOOK_ENDPOINTS_MAX_AGE and WEBHOOK_ENDPOINTS_RETRY must be positive")
	}
	hosts, err := egress.ParseHosts(cfg.AllowedHosts)
	if err != nil {
		return nil, fmt.Errorf("WEBHOOK_ALLOWED_HOSTS: %w", err)
	}
	sealer, err := store.NewSealer(cfg.SecretsKey)
	if err != nil {
		return nil, err
	}
	if !sealer.Seals() {
		slog.Warn("WEBHOOK_SECRETS_KEY is not set: the endpoints' signing secrets are stored in clear")
	}
	clock := func() time.Time { return now().UTC().Truncate(time.Microsecond) }
	a := &API{d: d, cfg: cfg, now: clock, store: store.New(d.Pool, d.Publisher.Writer(), clock)}
	if err := a.followSecrets(); err != nil {
		return nil, err
	}
	a.guard = egress.NewGuard(hosts, "WEBHOOK_ALLOWED_HOSTS")
	a.client = a.guard.Client(time.Duration(cfg.SendTimeout))
	a.wake, a.startDelay = make(chan struct{}, 1), time.Duration(cfg.StartDelay)
	a.store.Secrets = sealer
	a.store.Unparked = func(gateway string, n int) { webhooksTotal.WithLabelValues(gateway, "unparked").Add(float64(n)) }
	a.limiter = &limiter{rdb: d.Redis, prefix: d.Config.Redis.Prefix + webhooks.Name + ":rl:", limit: cfg.RateLimit, now: clock}
	for _, typ := range append(outgoing.Deliverable(), webhooks.LearnTypes...) {
		d.Events.On(typ, a.store.Handler(a.onEvent))
	}
	d.Events.Batch = a.store.Batch(a.onEvents)
	d.Events.Wanted = a.wanted
	d.Events.Tick = a.Tick
	d.Collect(webhooksTotal, outgoingTotal, endpointsDisabled, deliveriesPruned)
	a.store.Interests.MaxAge, a.store.Interests.Retry = time.Duration(cfg.EndpointsMaxAge), time.Duration(cfg.EndpointsRetry)
	a.store.Interests.Delay = time.Duration(cfg.StartDelay)
	a.store.Interests.Start()
	// Before the pool closes (closers run newest first).
	d.OnClose(func(context.Context) { a.store.Interests.Close() })
	return a, nil
}

// Interests is this replica's copy of the endpoints and known payment
// references that decide which events concern it (wanted).
func (a *API) Interests() *store.Interests { return a.store.Interests }

// followSecrets takes the gateways' signing secrets from the configuration
// and follows their secret files (stripe-webhook-secret,
// sandbox-webhook-secret): a file that changes replaces the list, an empty
// one is refused and the list in force stays.
func (a *API) followSecrets() error {
	stripe := func(v string) []string {
		var out []string
		for _, k := range strings.Split(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				out = append(out, k)
			}
		}
		return out
	}
	st, sb := stripe(a.cfg.StripeSecrets), sandbox.Secrets(a.cfg.SandboxSecrets)
	a.stripe.Store(&st)
	a.sandbox.Store(&sb)
	for name, apply := range map[string]func(string) error{
		"stripe-webhook-secret": func(v string) error {
			l := stripe(v)
			if len(l) == 0 {
				return errors.New("no secret in the file")
			}
			a.stripe.Store(&l)
			return nil
		},
		"sandbox-webhook-secret": func(v string) error {
			l := sandbox.Secrets(v)
			if len(l) == 0 {
				return errors.New("no secret in the file")
			}
			a.sandbox.Store(&l)
			return nil
		},
	} {
		w, err := config.WatchSecret(name, 0, apply)
		if err != nil {
			return err
		}
		if w != nil {
			a.secrets = append(a.secrets, w)
		}
	}
	return nil
}

// signingSecrets are the gateways' secrets in force.
func (a *API) signingSecrets() ([]string, [][]byte) {
	for _, w := range a.secrets {
		w.Check()
	}
	return *a.stripe.Load(), *a.sandbox.Load()
}

// Routes is handle-webhook's HTTP surface, its problems mapped by Statuses.
func (a *API) Routes() *http.ServeMux { return a.d.Mux(a.RouteTable(), Statuses) }

// RouteTable is who may call what (docs/handle-webhook.md carries the same
// table). The gateways' webhooks are public: they prove themselves with
// their own signature, behind the per-address limiter; the delivery log is
// the admin's.
func (a *API) RouteTable() []platform.Route {
	delivery := map[string]string{"{id}": "webhook-delivery"}
	endpoint := map[string]string{"{id}": "webhook-endpoint"}
	outDelivery := map[string]string{"{id}": "webhook-endpoint-delivery"}
	return []platform.Route{
		{Pattern: "POST /stripe", Access: platform.Public, Refs: map[string]string{}, Handler: a.limited(http.HandlerFunc(a.receiveStripe))},
		{Pattern: "POST /sandbox", Access: platform.Public, Refs: map[string]string{}, Handler: a.limited(http.HandlerFunc(a.receiveSandbox))},
		{Pattern: "GET /events", Access: platform.Admin, Refs: map[string]string{}, Handler: http.HandlerFunc(a.listEvents)},
		{Pattern: "GET /events/{id}", Access: platform.Admin, Refs: delivery, Handler: http.HandlerFunc(a.getEvent)},
		{Pattern: "POST /events/{id}/replay", Access: platform.Admin, Refs: delivery, Handler: a.d.Idempotency.Middleware(true)(noMembers(a.replay))},
		{Pattern: "POST /endpoints", Access: platform.Admin, Refs: map[string]string{}, Handler: a.openReplayedSecret(a.d.Idempotency.Middleware(false)(http.HandlerFunc(a.createEndpoint)))},
		{Pattern: "GET /endpoints", Access: platform.Admin, Refs: map[string]string{}, Handler: http.HandlerFunc(a.listEndpoints)},
		{Pattern: "GET /endpoints/{id}", Access: platform.Admin, Refs: endpoint, Handler: http.HandlerFunc(a.getEndpoint)},
		{Pattern: "PATCH /endpoints/{id}", Access: platform.Admin, Refs: endpoint, Handler: http.HandlerFunc(a.updateEndpoint)},
		{Pattern: "DELETE /endpoints/{id}", Access: platform.Admin, Refs: endpoint, Handler: http.HandlerFunc(a.deleteEndpoint)},
		{Pattern: "POST /endpoints/{id}/rotate-secret", Access: platform.Admin, Refs: endpoint, Handler: a.openReplayedSecret(a.d.Idempotency.Middleware(false)(noMembers(a.rotateSecret)))},
		{Pattern: "POST /endpoints/{id}/test", Access: platform.Admin, Refs: endpoint, Handler: a.d.Idempotency.Middleware(false)(noMembers(a.testEndpoint))},
		{Pattern: "GET /endpoints/{id}/deliveries", Access: platform.Admin, Refs: endpoint, Handler: http.HandlerFunc(a.listDeliveries)},
		{Pattern: "GET /deliveries/{id}", Access: platform.Admin, Refs: outDelivery, Handler: http.HandlerFunc(a.getDelivery)},
		{Pattern: "POST /deliveries/{id}/retry", Access: platform.Admin, Refs: outDelivery, Handler: a.d.Idempotency.Middleware(false)(noMembers(a.retryDelivery))},
		{Pattern: "POST /{$}", Access: platform.Delivery, Refs: map[string]string{}, Handler: http.HandlerFunc(a.events)},
	}
}

// events receives CloudEvents (payment-events, which teach the payment
// map) and ticks, then publishes what they wrote. A delivery kicks the
// outbox publisher only when it wrote outbox events (released parked
// webhooks) and wakes the sender only when it queued deliveries (onEvents):
// most of a payment's events write neither (no endpoint subscribes, the
// payment is known or only learned), and each kick would run a
// transaction that finds nothing (issue 20). A tick publishes and wakes
// the sender itself (Tick).
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	var published outbox.Written
	var k kicks
	ctx := outbox.Tracking(context.WithValue(r.Context(), kicksKey{}, &k), &published)
	a.d.Events.ServeHTTP(w, r.WithContext(ctx))
	if published.Load() {
		a.d.Publisher.Kick()
	}
	if k.send.Load() {
		a.kick()
	}
}

// kicks is what a delivery's handlers wrote that the sender must act on
// (outbox events are noted in the delivery's outbox.Written).
type kicks struct{ send atomic.Bool }

// kicksKey is the context key of a delivery's kicks.
type kicksKey struct{}

// wrote notes in ctx's delivery that outbox events (publish: outbox.Wrote)
// or outgoing deliveries (send) were written.
func wrote(ctx context.Context, publish, send bool) {
	if publish {
		outbox.Wrote(ctx)
	}
	if k, ok := ctx.Value(kicksKey{}).(*kicks); ok && send {
		k.send.Store(true)
	}
}

// Tick releases parked deliveries whose payment is known, publishes
// what the fast path missed, prunes the outgoing delivery log and wakes
// the webhook sender.
func (a *API) Tick(ctx context.Context) error {
	err := a.store.ReleaseParked(ctx)
	_, perr := a.d.Publisher.Sweep(ctx)
	_, prerr := a.PruneDeliveries(ctx)
	a.kick()
	return errors.Join(err, perr, prerr)
}

// Pruning: a tick deletes at most pruneRounds × pruneBatch finished
// deliveries, in short transactions; a backlog (the first tick after
// retention was shortened) goes over the next ticks.
const (
	pruneBatch  = 5000
	pruneRounds = 10
)

// PruneDeliveries deletes the finished outgoing deliveries whose last
// attempt is older than WEBHOOK_DELIVERY_RETENTION (none when it is 0)
// and answers how many.
func (a *API) PruneDeliveries(ctx context.Context) (int, error) {
	keep := time.Duration(a.cfg.DeliveryRetention)
	if keep <= 0 {
		return 0, nil
	}
	total := 0
	for range pruneRounds {
		n, err := a.store.PruneDeliveries(ctx, a.now().Add(-keep), pruneBatch)
		total += n
		if err != nil || n < pruneBatch {
			if total > 0 {
				deliveriesPruned.Add(float64(total))
			}
			return total, err
		}
	}
	deliveriesPruned.Add(float64(total))
	return total, nil
}

// Start runs the outgoing webhooks' sender until the function stops.
func (a *API) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.RunSender(ctx)
	}()
	a.d.OnClose(func(context.Context) {
		cancel()
		<-done
	})
}
