// Package platform wires what every function needs from the shared library,
// so a function's main stays a few lines: configuration, the Postgres pool,
// Redis, the JWT verifier, the idempotency store, the outbox publisher and
// an event receiver, plus the readiness checks, metrics and closers the
// runtime needs.
//
// process-transaction's main, for instance (its package api holds the
// route table, the handlers and the code → status table):
//
//	func main() {
//		server.Main("process-transaction", func(ctx context.Context) (server.App, error) {
//			d, err := platform.Open(ctx, "process-transaction")
//			if err != nil {
//				return server.App{}, err
//			}
//			s := api.New(d, time.Now)
//			s.Start()
//			return d.App(s.Handler()), nil
//		})
//	}
package platform

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/kafkaauth"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/ratelimit"
	"github.com/billfn/billfn/shared/redis"
	"github.com/billfn/billfn/shared/server"
)

// Config is the configuration every function shares.
type Config struct {
	Postgres postgres.Config
	Redis    redis.Config
	Auth     auth.Config
	Kafka    outbox.Config
	// EventKeys verify signed event deliveries: comma-separated, several
	// during a rotation. The secret file holds the same list.
	EventKeys string `envconfig:"EVENT_SIGNING_KEYS" secret:"event-signing-key" required:"true"`
	// EventsTrustUnsigned accepts unsigned event deliveries. Only for a
	// deployment whose event endpoint is cluster-local (the Knative
	// <name>-events Services fed by KafkaSource and PingSource); never on
	// an endpoint the public can reach. See docs/platform.md.
	EventsTrustUnsigned bool `envconfig:"EVENTS_TRUST_UNSIGNED" default:"false"`
	// OriginPublicKeys are the public keys of every source whose events
	// the function accepts (events.ParseOriginKeys: "<source> <base64
	// Ed25519 key>" lines, several per source during a rotation). Public,
	// but mounted beside the secrets so one file serves every function.
	OriginPublicKeys string `envconfig:"EVENT_ORIGIN_PUBLIC_KEYS" secret:"origin-public-keys" required:"true"`
	// OriginPrivateKey is the function's own origin key (PEM PKCS#8
	// Ed25519), which signs every event it publishes. Open reads it from
	// the secret file origin-key-<function> only, never from the
	// environment.
	OriginPrivateKey string `ignored:"true"`
	// TickMinInterval is the least time between two runs of the
	// function's schedule tick in one instance: an authenticated tick that
	// comes sooner does nothing and answers 200, so a flood of ticks cannot
	// drive the tick's work (capture-payment's reconciliation calls to the
	// payment gateway) faster. A function may ask for a longer interval.
	TickMinInterval config.Duration `envconfig:"TICK_MIN_INTERVAL" default:"1s"`
	// ProcessedEventsRetention is how long the receiver keeps its
	// processed_events rows, the dedupe of the events it applied
	// (events.Receiver.ProcessedRetention); 0 keeps them forever. It must
	// outlast every redelivery of an event: a replay of the topic with
	// the longest retention (transaction-events, 90 days, plus up to a
	// Kafka segment's 7 days) from its oldest record. See docs/events.md.
	ProcessedEventsRetention config.Duration `envconfig:"PROCESSED_EVENTS_RETENTION" default:"2400h"`
	// TrustedProxies are the proxies whose X-Forwarded-For entries are
	// believed when finding a client's address (httpx.ClientIP):
	// comma-separated CIDRs. Empty means loopback, where the local
	// gateway runs.
	TrustedProxies string `envconfig:"TRUSTED_PROXIES" default:"127.0.0.0/8,::1/128"`
	// RateLimit is the per-caller rate limit of the routes served by Mux.
	RateLimit RateLimitConfig
}

// MinProcessedEventsRetention is the shortest ProcessedEventsRetention a
// function accepts: Kafka's default retention, and that of billfn's
// shortest-lived topic (user-events). A dedupe shorter than the topics'
// retention would apply a replayed event again.
const MinProcessedEventsRetention = 7 * 24 * time.Hour

// Keys splits EventKeys. OpenWith checks them with events.ParseKeys, which
// refuses a key shorter than events.MinKeyLen bytes.
func (c Config) Keys() [][]byte {
	var out [][]byte
	for _, k := range strings.Split(c.EventKeys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, []byte(k))
		}
	}
	return out
}

// OriginKeySecret names the secret file holding function's private origin
// key: one per function, so a function is given only its own.
func OriginKeySecret(function string) string { return "origin-key-" + function }

// Deps are a function's opened dependencies.
type Deps struct {
	Name        string
	Config      Config
	Pool        *pgxpool.Pool
	Redis       *goredis.Client
	Verifier    *auth.Verifier
	Idempotency *idempotency.Store
	Publisher   *outbox.Publisher
	// Events is a receiver with authentication, dedupe and parking set up;
	// register handlers with Events.On and set Events.Tick.
	Events *events.Receiver
	// Proxies are the parsed TrustedProxies, for httpx.ClientIP.
	Proxies []netip.Prefix

	rateLimits *rateLimits
	// warmPostgres and warmRedis close when the start-up warm-up's first
	// connection to each has answered (or failed): see App.
	warmPostgres, warmRedis chan struct{}
	stopWarm                func() // ends the warm-up (a start-up that fails)
	collectors              []prometheus.Collector
	closers                 []func(context.Context)
}

// Open loads Config from the environment and opens everything. Nothing
// connects yet (pools are lazy), so a function is ready to serve in
// milliseconds; readiness reports whether Postgres and Redis answer.
func Open(ctx context.Context, name string) (*Deps, error) {
	var cfg Config
	if err := config.Load(&cfg); err != nil {
		return nil, err
	}
	key, err := os.ReadFile(filepath.Join(config.SecretsDir(), OriginKeySecret(name)))
	if err != nil {
		return nil, fmt.Errorf("the origin key that signs %s's events: %w", name, err)
	}
	cfg.OriginPrivateKey = string(key)
	return OpenWith(ctx, name, cfg)
}

// OpenWith opens the dependencies described by cfg (tests build cfg directly).
func OpenWith(ctx context.Context, name string, cfg Config) (*Deps, error) {
	d := &Deps{Name: name, Config: cfg}
	connErr := d.connect(ctx)
	v, err := check(name, cfg)
	if err == nil {
		err = connErr // a configuration problem is named first, as before
	}
	if err != nil {
		if connErr == nil {
			d.stopWarm()
			d.Redis.Close()
			d.Pool.Close()
		}
		return nil, err
	}
	d.wire(ctx, v)
	return d, nil
}

// checked is what check makes of the configuration.
type checked struct {
	verifier *auth.Verifier
	keys     *events.KeyRing
	origins  *events.OriginKeys
	signer   *events.OriginSigner
	proxies  []netip.Prefix
	sasl     kafkaauth.Config // with its password
}

// check checks the configuration and parses its keys.
func check(name string, cfg Config) (v checked, err error) {
	if v.verifier, err = auth.NewVerifier(cfg.Auth); err != nil {
		return v, err
	}
	// The delivery-signing keys follow their secret file: a rotation
	// (new,old then new) needs no restart.
	if v.keys, err = events.WatchKeys(cfg.EventKeys, "EVENT_SIGNING_KEYS", "event-signing-key", cfg.Auth.ReloadEvery); err != nil {
		return v, err
	}
	// The origin public keys follow their secret file too: a new
	// integrator's key or a rotated function key needs no restart.
	if v.origins, err = events.WatchOriginKeys(cfg.OriginPublicKeys, "EVENT_ORIGIN_PUBLIC_KEYS (origin-public-keys)", "origin-public-keys", cfg.Auth.ReloadEvery); err != nil {
		return v, err
	}
	if v.signer, err = events.ParseOriginSigner([]byte(cfg.OriginPrivateKey)); err != nil {
		return v, fmt.Errorf("%s: %w", OriginKeySecret(name), err)
	}
	if !v.origins.Holds(events.Source(name), v.signer.Public()) {
		// Its events would all be parked: say so at start, not later.
		return v, fmt.Errorf("%s: its public key is not among the origin-public-keys of %s", OriginKeySecret(name), events.Source(name))
	}
	if r := cfg.ProcessedEventsRetention.D(); r != 0 && r < MinProcessedEventsRetention {
		return v, fmt.Errorf("PROCESSED_EVENTS_RETENTION is %v: the dedupe must last at least %v (the topics' retention), or 0 to keep it forever",
			r, MinProcessedEventsRetention)
	}
	v.sasl = cfg.Kafka.SASL
	if err := v.sasl.Load(); err != nil {
		return v, err
	}
	proxies := cfg.TrustedProxies
	if strings.TrimSpace(proxies) == "" {
		proxies = httpx.DefaultTrustedProxies
	}
	if v.proxies, err = httpx.ParsePrefixes(proxies); err != nil {
		return v, fmt.Errorf("TRUSTED_PROXIES: %w", err)
	}
	return v, nil
}

// wire builds the function's dependencies on d's connections.
func (d *Deps) wire(ctx context.Context, v checked) {
	name, cfg := d.Name, d.Config
	d.Verifier, d.Proxies = v.verifier, v.proxies
	d.Idempotency = idempotency.New(d.Pool, name)
	d.Publisher = outbox.NewPublisher(d.Pool, name, cfg.Kafka.Brokers)
	d.Publisher.Signer = v.signer
	d.Publisher.Auth = v.sasl
	d.Publisher.Start(ctx)
	d.Events = &events.Receiver{Consumer: name, Pool: d.Pool, KeyRing: v.keys, Verifier: d.Verifier, TrustUnsigned: cfg.EventsTrustUnsigned,
		TickEvery: cfg.TickMinInterval.D(), ProcessedRetention: cfg.ProcessedEventsRetention.D(), Origins: v.origins}
	if cfg.EventsTrustUnsigned {
		slog.Warn("EVENTS_TRUST_UNSIGNED is set: unsigned event deliveries are accepted; this endpoint must be cluster-local", "function", name)
	}
	d.collectors = append(d.collectors, redis.Collectors()...)
	d.collectors = append(d.collectors, events.Collectors()...)
	d.collectors = append(d.collectors, outbox.Collectors()...)
	d.collectors = append(d.collectors, d.Publisher.Collector())
	d.collectors = append(d.collectors, ratelimit.Collectors()...)
	d.collectors = append(d.collectors, pgbatch.Collectors()...)
	d.closers = append(d.closers, d.Publisher.Close, func(context.Context) { d.Redis.Close() }, func(context.Context) { d.Pool.Close() })
}

// connect opens the Postgres pool, Redis and the rate limiter and starts
// connecting to Postgres and Redis in the background, so the platform's
// first readiness probe finds warm connections: Postgres and Redis at the
// same time (the readiness probe waits for the slower one, not for both
// in turn). OpenWith calls it first, before the keys and the verifier: a
// Postgres backend's start is the longest wait on the way to ready, and
// the rest of the start-up runs beside it.
func (d *Deps) connect(ctx context.Context) (err error) {
	cfg := d.Config
	if d.Pool, err = postgres.OpenWith(ctx, cfg.Postgres); err != nil {
		return err
	}
	if d.Redis, err = redis.Open(cfg.Redis.URL); err != nil {
		d.Pool.Close()
		return err
	}
	if d.rateLimits, err = newRateLimits(d); err != nil {
		d.Redis.Close()
		d.Pool.Close()
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	d.stopWarm = cancel
	var warm sync.WaitGroup
	d.warmPostgres, d.warmRedis = make(chan struct{}), make(chan struct{})
	warm.Go(func() {
		defer close(d.warmPostgres)
		// A connection, not a ping: its start-up already proves Postgres
		// answers, and the readiness probe pings on it next; a ping here
		// was one statement more before ready.
		if c, err := d.Pool.Acquire(wctx); err == nil {
			c.Release()
		}
	})
	warm.Go(func() {
		defer close(d.warmRedis)
		_ = d.Redis.Ping(wctx).Err()
		if d.rateLimits != nil {
			_ = d.rateLimits.limiter.Warm(wctx)
		}
	})
	go func() { warm.Wait(); cancel() }()
	return nil
}

// Cache returns a named cache on the function's Redis.
func (d *Deps) Cache(name string) *redis.Cache {
	return redis.NewCache(d.Redis, d.Config.Redis.Prefix, d.Name+":"+name)
}

// OnClose adds a closer that runs before the shared ones (pool last).
func (d *Deps) OnClose(fn func(context.Context)) {
	d.closers = append([]func(context.Context){fn}, d.closers...)
}

// Collect adds metrics served on /metrics.
func (d *Deps) Collect(c ...prometheus.Collector) { d.collectors = append(d.collectors, c...) }

// App builds the runtime's App around handler with the readiness checks,
// metrics and closers of the dependencies.
func (d *Deps) App(handler http.Handler) server.App {
	return server.App{
		Name:    d.Name,
		Handler: handler,
		// A check first waits for the warm-up's connection (a readiness
		// probe during start-up would otherwise dial a second connection
		// beside it), then pings as always: ready still means Postgres and
		// Redis answer now.
		Ready: []server.Check{
			{Name: "postgres", Fn: func(ctx context.Context) error {
				if err := warmedUp(ctx, d.warmPostgres); err != nil {
					return err
				}
				return d.Pool.Ping(ctx)
			}},
			{Name: "redis", Fn: func(ctx context.Context) error {
				if err := warmedUp(ctx, d.warmRedis); err != nil {
					return err
				}
				return d.Redis.Ping(ctx).Err()
			}},
		},
		Close:      d.closers,
		Collectors: d.collectors,
	}
}

// warmedUp waits until the warm-up's first connection behind done has
// answered or failed (nil done: no warm-up), or ctx ends.
func warmedUp(ctx context.Context, done <-chan struct{}) error {
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close releases everything (tests; in production the runtime runs the closers).
func (d *Deps) Close() {
	for _, c := range d.closers {
		c(context.Background())
	}
}

// Principal returns the request's authenticated principal; handlers behind
// Verifier.Middleware always have one.
func Principal(r *http.Request) auth.Principal {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		panic(fmt.Sprintf("platform: %s %s reached a handler without authentication", r.Method, r.URL.Path))
	}
	return p
}
