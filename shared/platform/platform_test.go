package platform_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
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
			Auth:      auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn"},
			EventKeys: testenv.EventKey,
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
		Auth:            auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn"},
		EventKeys:       testenv.EventKey,
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
