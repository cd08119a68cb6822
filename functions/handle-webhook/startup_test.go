package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/handle-webhook/api"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

// A start opens one Postgres connection, the warm-up's, which the first
// readiness probe then uses (shared/platform). handle-webhook's outgoing
// sender ran its first pass at once beside it, and each start forked
// two PostgreSQL backends more on the way to its first ready answer
// (strace of make bench's launches, 2026-12-07: three connects against
// one for every other function; start-to-ready 28.7 ms against 15.9–19.5
// in the run of record of 2026-12-06), and the endpoints' listener took a
// connection of its own for LISTEN beside them too. Both now wait for
// WEBHOOK_START_DELAY (the sender's first pass less, when deliveries are
// queued sooner).
func TestStartUpOpensOnePostgresConnection(t *testing.T) {
	var pg *testenv.Proxy
	d, _ := testenv.PlatformWith(t, webhooks.Name, func(c *platform.Config) {
		u, err := url.Parse(c.Postgres.URL)
		if err != nil {
			t.Fatal(err)
		}
		pg = testenv.NewProxy(t, u.Host)
		u.Host = pg.Addr()
		c.Postgres.URL = u.String()
	})
	cfg := testConfig()
	cfg.StartDelay = config.Duration(time.Hour)
	s, err := api.New(d, cfg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	s.Start() // as main does
	h := server.New(server.Config{MaxBodyBytes: 1 << 20}, d.App(s.Routes())).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_/ready", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("ready = %d %s", rec.Code, rec.Body)
	}
	// The sender's pass, had it started, dials within milliseconds; give
	// it a second to show.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := pg.Dialed(); n != 1 {
			t.Fatalf("%d Postgres connections at start-up, want 1 (the warm-up's, which the probe uses)", n)
		}
	}
}
