package platform_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestOpenWiresAWorkingFunction(t *testing.T) {
	d, kit := testenv.Platform(t, "demo")
	var got string
	d.Events.On("billfn.demo.happened", func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		got = ev.ID()
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("POST /{$}", d.Events)
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(mux)).Handler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/_/ready", nil))
	if rec.Code != 200 {
		t.Fatalf("ready = %d %s", rec.Code, rec.Body)
	}
	ev, _ := events.New(context.Background(), "other", "billfn.demo.happened", "x", map[string]int{"n": 1})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, kit.Delivery(t, ev))
	if rec.Code != 200 || got != ev.ID() {
		t.Fatalf("delivery: %d %s (handled %q)", rec.Code, rec.Body, got)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !bytes.Contains(rec.Body.Bytes(), []byte(`billfn_events_received_total{consumer="demo",result="processed",type="billfn.demo.happened"} 1`)) {
		t.Fatalf("metrics lack the event counter:\n%s", rec.Body)
	}
}

func TestOpenNamesEveryMissingVariable(t *testing.T) {
	t.Setenv(config.SecretsDirEnv, t.TempDir())
	for _, k := range []string{"DATABASE_URL", "EVENT_SIGNING_KEYS", "JWT_SECRET"} {
		t.Setenv(k, "")
	}
	_, err := platform.Open(context.Background(), "demo")
	if err == nil {
		t.Fatal("Open succeeded without configuration")
	}
	for _, want := range []string{"DATABASE_URL", "EVENT_SIGNING_KEYS"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

// Issue 15, item 4: a function refuses to start with a weak event signing
// key or an empty iss/aud check, naming the variable to fix.
func TestOpenRefusesWeakKeys(t *testing.T) {
	good := func() platform.Config {
		return platform.Config{
			Auth:      auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()},
			EventKeys: testenv.EventKey, OriginPublicKeys: testenv.OriginPublicKeys("demo"), OriginPrivateKey: testenv.OriginKeyPEM("demo"),
		}
	}
	tests := []struct {
		name, variable string
		mutate         func(*platform.Config)
	}{
		{"an event key of 31 bytes", "EVENT_SIGNING_KEYS", func(c *platform.Config) { c.EventKeys = strings.Repeat("k", 31) }},
		{"a short second key during a rotation", "EVENT_SIGNING_KEYS", func(c *platform.Config) { c.EventKeys = testenv.EventKey + ",tiny-key-value" }},
		{"no event key at all", "EVENT_SIGNING_KEYS", func(c *platform.Config) { c.EventKeys = " , " }},
		{"a JWT secret of 31 bytes", "JWT_SECRET", func(c *platform.Config) { c.Auth.Secret = strings.Repeat("s", 31) }},
		{"an empty JWT issuer", "JWT_ISSUER", func(c *platform.Config) { c.Auth.Issuer = "" }},
		{"an empty JWT audience", "JWT_AUDIENCE", func(c *platform.Config) { c.Auth.Audience = "" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.mutate(&cfg)
			d, err := platform.OpenWith(context.Background(), "demo", cfg)
			if err == nil {
				d.Close()
				t.Fatal("OpenWith succeeded")
			}
			if !strings.Contains(err.Error(), tc.variable) {
				t.Fatalf("error %q does not name %s", err, tc.variable)
			}
			if strings.Contains(err.Error(), "tiny-key-value") || strings.Contains(err.Error(), strings.Repeat("k", 31)) {
				t.Fatalf("error %q shows the key", err)
			}
		})
	}
}

// TICK_MIN_INTERVAL sets how often a function instance's tick may run.
func TestOpenSetsTheTickMinimumInterval(t *testing.T) {
	cfg := platform.Config{
		Auth:      auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()},
		EventKeys: testenv.EventKey, OriginPublicKeys: testenv.OriginPublicKeys("demo"), OriginPrivateKey: testenv.OriginKeyPEM("demo"),
		TickMinInterval: config.Duration(3 * time.Second),
	}
	cfg.Postgres.URL = testenv.DatabaseURL(t)
	rdb, prefix := testenv.Redis(t)
	cfg.Redis.URL, cfg.Redis.Prefix = "redis://"+rdb.Options().Addr+"/0", prefix
	d, err := platform.OpenWith(context.Background(), "demo", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Events.TickEvery != 3*time.Second {
		t.Fatalf("Events.TickEvery = %v, want 3s from TICK_MIN_INTERVAL", d.Events.TickEvery)
	}
}

// Issue 15: a function signs what it publishes with its own origin key and
// trusts only the origin public keys it is given. It refuses to start
// without them, or with a private key the public keys do not hold for its
// source (its every event would be parked); and its receiver parks an
// event without a proof.
func TestOpenNeedsItsOwnOriginKey(t *testing.T) {
	good := func() platform.Config {
		c := platform.Config{
			Auth:             auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()},
			EventKeys:        testenv.EventKey,
			OriginPublicKeys: testenv.OriginPublicKeys("demo"),
			OriginPrivateKey: testenv.OriginKeyPEM("demo"),
		}
		c.Postgres.URL = testenv.DatabaseURL(t)
		rdb, prefix := testenv.Redis(t)
		c.Redis.URL, c.Redis.Prefix = "redis://"+rdb.Options().Addr+"/0", prefix
		return c
	}
	for name, mutate := range map[string]func(*platform.Config){
		"no origin public keys":          func(c *platform.Config) { c.OriginPublicKeys = "" },
		"no private key":                 func(c *platform.Config) { c.OriginPrivateKey = "" },
		"another function's private key": func(c *platform.Config) { c.OriginPrivateKey = testenv.OriginKeyPEM("capture-payment") },
		"a private key that is not a key": func(c *platform.Config) {
			c.OriginPrivateKey = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
		},
		"public keys without its own key":  func(c *platform.Config) { c.OriginPublicKeys = testenv.OriginPublicKeys() },
		"public keys that are not Ed25519": func(c *platform.Config) { c.OriginPublicKeys = "/functions/demo c2hvcnQ=" },
	} {
		cfg := good()
		mutate(&cfg)
		if d, err := platform.OpenWith(context.Background(), "demo", cfg); err == nil {
			d.Close()
			t.Errorf("%s: OpenWith succeeded", name)
		}
	}
	// Open reads the private key from the secret file origin-key-<name>.
	dir := openEnv(t)
	if _, err := platform.Open(context.Background(), "demo"); err == nil || !strings.Contains(err.Error(), "origin-key-demo") {
		t.Fatalf("Open without origin-key-demo: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, platform.OriginKeySecret("demo")), []byte(testenv.OriginKeyPEM("demo")), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := platform.Open(context.Background(), "demo")
	if err != nil {
		t.Fatalf("Open with origin-key-demo: %v", err)
	}
	defer d.Close()
	if d.Publisher.Signer == nil || d.Publisher.Signer.KeyID() != testenv.OriginSigner(events.Source("demo")).KeyID() {
		t.Fatal("the publisher does not sign with the function's key")
	}
	d.Events.On("billfn.demo.happened", func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		t.Error("an unsigned event ran")
		return nil
	})
	ev, _ := events.New(context.Background(), "other", "billfn.demo.happened", "x", map[string]int{"n": 1})
	res, err := d.Events.Deliver(context.Background(), []events.Event{ev})
	if err != nil || res.Parked != 1 {
		t.Fatalf("an unsigned event: %+v %v, want parked", res, err)
	}
}

// startConfig is a working configuration on the test database and Redis.
func startConfig(t *testing.T) platform.Config {
	cfg := platform.Config{
		Auth:      auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()},
		EventKeys: testenv.EventKey, OriginPublicKeys: testenv.OriginPublicKeys("demo"), OriginPrivateKey: testenv.OriginKeyPEM("demo"),
	}
	cfg.Postgres.URL = testenv.DatabaseURL(t)
	rdb, prefix := testenv.Redis(t)
	cfg.Redis.URL, cfg.Redis.Prefix = "redis://"+rdb.Options().Addr+"/0", prefix
	return cfg
}

// Issue 20: the platform's first readiness probe comes while the start-up
// warm-up is still dialing Postgres and Redis. It waits for those
// connections instead of dialing a second one of each beside them (twice
// the connection work at the moment a function starts, and a second
// Postgres backend), and it still answers only once both are reachable.
func TestTheFirstReadinessProbeUsesTheWarmUpsConnections(t *testing.T) {
	for i := range 5 {
		d, err := platform.OpenWith(context.Background(), "demo", startConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(http.NewServeMux())).Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/_/ready", nil))
		pg, rd := d.Pool.Stat().TotalConns(), d.Redis.PoolStats().TotalConns
		d.Close()
		if rec.Code != 200 {
			t.Fatalf("launch %d: ready = %d %s", i, rec.Code, rec.Body)
		}
		if pg != 1 || rd != 1 {
			t.Fatalf("launch %d: the first readiness probe left %d Postgres and %d Redis connections, want the warm-up's one of each", i, pg, rd)
		}
	}
}

// Readiness still means Postgres and Redis answer: while Postgres is not
// reachable, /_/ready is 503 naming it, during the warm-up and after it.
func TestReadinessFailsWhilePostgresIsUnreachable(t *testing.T) {
	cfg := startConfig(t)
	cfg.Postgres.URL = "postgres://postgres@127.0.0.1:1/billfn?sslmode=disable&connect_timeout=1"
	d, err := platform.OpenWith(context.Background(), "demo", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(http.NewServeMux())).Handler()
	for i := range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/_/ready", nil))
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "postgres is not reachable") {
			t.Fatalf("probe %d: ready = %d %s, want 503 naming postgres", i, rec.Code, rec.Body)
		}
	}
}

// PROCESSED_EVENTS_RETENTION sets how long the receiver keeps its
// processed_events rows: 100 days unless set, 0 for ever, and a value
// shorter than a week (Kafka's default retention, the shortest of billfn's
// topics), or negative, is refused at start-up, naming the variable.
func TestOpenSetsTheProcessedEventsRetention(t *testing.T) {
	dir := openEnv(t)
	if err := os.WriteFile(filepath.Join(dir, platform.OriginKeySecret("demo")), []byte(testenv.OriginKeyPEM("demo")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"", 2400 * time.Hour, true},
		{"720h", 720 * time.Hour, true},
		{"168h", 168 * time.Hour, true},
		{"0", 0, true},
		{"167h", 0, false},
		{"24h", 0, false},
		{"-2400h", 0, false},
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Setenv("PROCESSED_EVENTS_RETENTION", tc.value)
			if tc.value == "" {
				os.Unsetenv("PROCESSED_EVENTS_RETENTION") // t.Setenv restores it
			}
			d, err := platform.Open(context.Background(), "demo")
			if !tc.ok {
				if err == nil {
					d.Close()
					t.Fatal("Open succeeded")
				}
				if !strings.Contains(err.Error(), "PROCESSED_EVENTS_RETENTION") {
					t.Fatalf("error %q does not name PROCESSED_EVENTS_RETENTION", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.Events.ProcessedRetention != tc.want {
				t.Fatalf("Events.ProcessedRetention = %v, want %v", d.Events.ProcessedRetention, tc.want)
			}
		})
	}
}

// openEnv is the environment Open reads for function "demo", but for its
// origin key: the secrets directory it returns holds no secret yet.
func openEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	t.Setenv("DATABASE_URL", testenv.DatabaseURL(t))
	t.Setenv("EVENT_SIGNING_KEYS", testenv.EventKey)
	t.Setenv("JWT_ALG", "HS256")
	t.Setenv("JWT_SECRET", testenv.JWTSecret)
	t.Setenv("EVENT_ORIGIN_PUBLIC_KEYS", strings.ReplaceAll(testenv.OriginPublicKeys("demo"), "\n", ";"))
	return dir
}
