package platform_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/redis"
	"github.com/billfn/billfn/shared/testenv"
)

// limited opens a function whose limits are small enough to reach in a
// test, with redisURL "" meaning the test's own Redis.
func limited(t *testing.T, mode, redisURL string) (*platform.Deps, http.Handler, *auth.Signer) {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	down := redisURL != ""
	if !down {
		redisURL = "redis://" + rdb.Options().Addr + "/0"
	}
	_, brokers := testenv.Kafka(t)
	cfg := platform.Config{
		Postgres:  postgres.Config{URL: testenv.DatabaseURL(t), MaxConns: 4},
		Redis:     redis.Config{URL: redisURL, Prefix: prefix},
		Auth:      auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn", Leeway: 30 * time.Second, MaxLifetime: auth.DefaultMaxLifetimes()},
		Kafka:     outbox.Config{Brokers: brokers},
		EventKeys: testenv.EventKey, OriginPublicKeys: testenv.OriginPublicKeys("demo"), OriginPrivateKey: testenv.OriginKeyPEM("demo"),
		RateLimit: platform.RateLimitConfig{Mode: mode, Read: "1/m:3", Write: "1/m:3", Money: "1/m:2", Address: "1/m:6", ServiceFactor: 2},
	}
	d, err := platform.OpenWith(context.Background(), "demo", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux := d.Mux([]platform.Route{
		{Pattern: "GET /things", Access: platform.Customer, Handler: ok},
		{Pattern: "POST /things", Access: platform.Customer, Handler: ok},
		{Pattern: "POST /pay", Access: platform.Customer, Class: platform.Money, Handler: ok},
		{Pattern: "GET /admin", Access: platform.Privileged, Handler: ok},
		{Pattern: "GET /public", Access: platform.Public, Handler: ok},
		{Pattern: "POST /{$}", Access: platform.Delivery, Handler: ok},
	}, nil)
	s := auth.NewHS256Signer(testenv.JWTSecret, "billfn", "billfn")
	if down {
		return d, mux, s
	}
	// The first decision connects and loads the script: not within the
	// 50ms a decision may wait on a busy test machine, so do it here.
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	caller{t: t, h: mux, s: s, addr: "198.18.0.1:1"}.do("GET", "/public")
	return d, mux, s
}

type caller struct {
	t     *testing.T
	h     http.Handler
	s     *auth.Signer
	sub   string
	role  auth.Role
	token string // overrides sub and role
	addr  string // RemoteAddr
	xff   string
}

func (c caller) do(method, path string) *httptest.ResponseRecorder {
	c.t.Helper()
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = c.addr
	if c.xff != "" {
		r.Header.Set("X-Forwarded-For", c.xff)
	}
	switch {
	case c.token != "":
		r.Header.Set("Authorization", "Bearer "+c.token)
	case c.sub != "":
		tok, err := c.s.Sign(c.sub, c.role, time.Hour)
		if err != nil {
			c.t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, r)
	return rec
}

// passes calls n times and fails unless each passes (not 429).
func (c caller) passes(n int, method, path string) {
	c.t.Helper()
	for i := 0; i < n; i++ {
		if rec := c.do(method, path); rec.Code == http.StatusTooManyRequests {
			c.t.Fatalf("%s %s as %s from %s (xff %q): call %d of %d limited", method, path, c.sub, c.addr, c.xff, i+1, n)
		}
	}
}

// limited fails unless the next call is a 429 rate_limited with the headers.
func (c caller) limited(method, path string, limit int) {
	c.t.Helper()
	rec := c.do(method, path)
	var doc struct{ Code string }
	_ = json.Unmarshal(rec.Body.Bytes(), &doc)
	if rec.Code != http.StatusTooManyRequests || doc.Code != "rate_limited" {
		c.t.Fatalf("%s %s as %s from %s (xff %q): %d %s, want 429 rate_limited", method, path, c.sub, c.addr, c.xff, rec.Code, rec.Body)
	}
	h := rec.Header()
	if ra, err := strconv.Atoi(h.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		c.t.Fatalf("Retry-After %q", h.Get("Retry-After"))
	}
	if h.Get("RateLimit-Limit") != strconv.Itoa(limit) || h.Get("RateLimit-Remaining") != "0" || h.Get("RateLimit-Reset") == "" {
		c.t.Fatalf("headers Limit %q Remaining %q Reset %q, want the exhausted bucket of %d",
			h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"), h.Get("RateLimit-Reset"), limit)
	}
}

func TestMuxLimitsPerPrincipalAndClass(t *testing.T) {
	_, h, s := limited(t, "on", "")
	alice := caller{t: t, h: h, s: s, sub: testenv.NewUser(), role: auth.RoleCustomer, addr: "192.0.2.1:1000"}
	rec := alice.do("GET", "/things")
	if rec.Code != http.StatusNoContent || rec.Header().Get("RateLimit-Limit") != "3" || rec.Header().Get("RateLimit-Remaining") != "2" {
		t.Fatalf("first read: %d, Limit %q Remaining %q; want the principal's read bucket (3, 2 left)",
			rec.Code, rec.Header().Get("RateLimit-Limit"), rec.Header().Get("RateLimit-Remaining"))
	}
	alice.passes(2, "GET", "/things")
	alice.limited("GET", "/things", 3)

	// Her writes and money movements have buckets of their own …
	alice.addr = "192.0.2.2:1000"
	alice.passes(2, "POST", "/pay")
	alice.limited("POST", "/pay", 2)
	alice.passes(1, "POST", "/things")
	// … and moving to another address does not refill her reads.
	alice.limited("GET", "/things", 3)

	// Bob from alice's first address has his own bucket.
	bob := caller{t: t, h: h, s: s, sub: testenv.NewUser(), role: auth.RoleCustomer, addr: "192.0.2.3:1000"}
	bob.passes(3, "GET", "/things")

	// A service principal gets the factor (2 × 3), an admin its own bucket.
	svc := caller{t: t, h: h, s: s, sub: "capture-payment", role: auth.RoleService, addr: "192.0.2.4:1000"}
	svc.passes(6, "GET", "/admin")
	svc.limited("GET", "/admin", 6)
	admin := caller{t: t, h: h, s: s, sub: testenv.NewUser(), role: auth.RoleAdmin, addr: "192.0.2.5:1000"}
	admin.passes(3, "GET", "/admin")
	admin.limited("GET", "/admin", 3)
}

func TestMuxLimitsPerClientAddress(t *testing.T) {
	_, h, s := limited(t, "on", "")
	anon := caller{t: t, h: h, s: s, addr: "192.0.2.9:1000"}
	anon.passes(6, "GET", "/public")
	anon.limited("GET", "/public", 6)

	// Through the gateway (127.0.0.1 is a trusted proxy): the address the
	// gateway appended is the client, whatever the client wrote first.
	viaGateway := caller{t: t, h: h, s: s, addr: "127.0.0.1:40000", xff: "203.0.113.5, 192.0.2.9"}
	viaGateway.limited("GET", "/public", 6)
	viaGateway.xff = "192.0.2.9"
	viaGateway.limited("GET", "/public", 6)
	// A direct client's X-Forwarded-For is not believed either.
	direct := caller{t: t, h: h, s: s, addr: "192.0.2.9:2000", xff: "203.0.113.77"}
	direct.limited("GET", "/public", 6)
	// Another client through the gateway is another bucket.
	viaGateway.xff = "203.0.113.5, 192.0.2.10"
	viaGateway.passes(1, "GET", "/public")

	// The address bucket runs before authentication: a flood of bad
	// tokens is limited too.
	bad := caller{t: t, h: h, s: s, token: "not-a-token", addr: "192.0.2.20:1000"}
	for i := 0; i < 6; i++ {
		if rec := bad.do("GET", "/things"); rec.Code != http.StatusUnauthorized {
			t.Fatalf("bad token %d: %d", i, rec.Code)
		}
	}
	bad.limited("GET", "/things", 6)

	// The address bucket spans principals: a customer from an exhausted
	// address is turned away before its own bucket is touched.
	carol := caller{t: t, h: h, s: s, sub: testenv.NewUser(), role: auth.RoleCustomer, addr: "192.0.2.20:1000"}
	carol.limited("GET", "/things", 6)

	// IPv6 clients share a bucket per /64.
	v6 := caller{t: t, h: h, s: s, addr: "[2001:db8:1:2::1]:1000"}
	v6.passes(6, "GET", "/public")
	v6.addr = "[2001:db8:1:2:ffff::9]:1000"
	v6.limited("GET", "/public", 6)
}

func TestMuxNeverLimitsDeliveries(t *testing.T) {
	_, h, s := limited(t, "on", "")
	c := caller{t: t, h: h, s: s, addr: "127.0.0.1:5000"}
	c.passes(20, "POST", "/")
	if rec := c.do("POST", "/"); rec.Header().Get("RateLimit-Limit") != "" {
		t.Fatalf("a delivery carries rate-limit headers: %v", rec.Header())
	}
	// Deliveries spent nothing of the address's bucket.
	c.passes(6, "GET", "/public")
}

func TestMuxRateLimitOffPassesEverything(t *testing.T) {
	_, h, s := limited(t, "off", "")
	c := caller{t: t, h: h, s: s, sub: testenv.NewUser(), role: auth.RoleCustomer, addr: "192.0.2.1:1000"}
	c.passes(30, "POST", "/pay")
	if rec := c.do("GET", "/public"); rec.Header().Get("RateLimit-Limit") != "" {
		t.Fatalf("RATE_LIMIT=off still sends headers: %v", rec.Header())
	}
}

func TestMuxLimitsPerReplicaWithRedisDown(t *testing.T) {
	_, h, s := limited(t, "on", "redis://127.0.0.1:1/0")
	c := caller{t: t, h: h, s: s, sub: testenv.NewUser(), role: auth.RoleCustomer, addr: "192.0.2.1:1000"}
	start := time.Now()
	c.passes(2, "POST", "/pay")
	c.limited("POST", "/pay", 2)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("three requests took %s with Redis down", el)
	}
}

func TestRateLimitConfigIsChecked(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	for _, rl := range []platform.RateLimitConfig{
		{Mode: "maybe"},
		{Mode: "on", Read: "1/m", Write: "fast", Money: "1/s", Address: "1/s"},
	} {
		cfg := platform.Config{
			Postgres:  postgres.Config{URL: testenv.DatabaseURL(t), MaxConns: 2},
			Redis:     redis.Config{URL: "redis://" + rdb.Options().Addr + "/0", Prefix: prefix},
			Auth:      auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()},
			EventKeys: testenv.EventKey, OriginPublicKeys: testenv.OriginPublicKeys("demo"), OriginPrivateKey: testenv.OriginKeyPEM("demo"),
			RateLimit: rl,
		}
		if d, err := platform.OpenWith(context.Background(), "demo", cfg); err == nil {
			d.Close()
			t.Fatalf("%+v opened", rl)
		}
	}
	cfg := platform.Config{EventKeys: testenv.EventKey, OriginPublicKeys: testenv.OriginPublicKeys("demo"), OriginPrivateKey: testenv.OriginKeyPEM("demo"), TrustedProxies: "10.0.0.0/99",
		Auth: auth.Config{Alg: "HS256", Secret: testenv.JWTSecret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()}}
	if d, err := platform.OpenWith(context.Background(), "demo", cfg); err == nil {
		d.Close()
		t.Fatal("a bad TRUSTED_PROXIES opened")
	}
}
