package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/redis"
	"github.com/billfn/billfn/shared/server"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func cfg() server.Config {
	return server.Config{Port: 0, ReadTimeout: config.Duration(5 * time.Second), WriteTimeout: config.Duration(5 * time.Second),
		ExecTimeout: config.Duration(5 * time.Second), IdleTimeout: config.Duration(time.Minute),
		DrainTimeout: config.Duration(5 * time.Second), MaxBodyBytes: 64}
}

func app(t *testing.T) server.App {
	pool := testenv.Pool(t)
	rdb, _ := testenv.Redis(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, 200, map[string]string{"id": r.PathValue("id")})
	})
	mux.HandleFunc("POST /things", func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := httpx.DecodeJSON(r, &v); err != nil {
			problem.Write(w, r, err)
			return
		}
		w.WriteHeader(201)
	})
	mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 3; i++ {
			_, _ = w.Write([]byte("chunk\n"))
			http.NewResponseController(w).Flush()
		}
	})
	return server.App{Name: "test-fn", Handler: mux, Ready: []server.Check{
		{Name: "postgres", Fn: pool.Ping},
		{Name: "redis", Fn: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
	}}
}

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func code(t *testing.T, rec *httptest.ResponseRecorder) string {
	var d struct{ Code string }
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || rec.Header().Get("Content-Type") != problem.ContentType {
		t.Fatalf("not a problem: %s %q", rec.Header().Get("Content-Type"), rec.Body)
	}
	return d.Code
}

func TestProbesReportLivenessAndReadinessOfRealDependencies(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	if rec := get(t, h, "GET", "/_/health", nil, ""); rec.Code != 200 {
		t.Fatalf("health = %d", rec.Code)
	}
	if rec := get(t, h, "GET", "/_/ready", nil, ""); rec.Code != 200 {
		t.Fatalf("ready = %d %s", rec.Code, rec.Body)
	}
	// Point the Redis check at a proxy and cut it: not ready, and says why.
	real, _ := testenv.Redis(t)
	proxy := testenv.NewProxy(t, real.Options().Addr)
	rdb, _ := redis.Open("redis://" + proxy.Addr())
	defer rdb.Close()
	a := app(t)
	a.Ready[1].Fn = func(ctx context.Context) error { return rdb.Ping(ctx).Err() }
	h = server.New(cfg(), a).Handler()
	if rec := get(t, h, "GET", "/_/ready", nil, ""); rec.Code != 200 {
		t.Fatalf("ready through proxy = %d", rec.Code)
	}
	proxy.Cut()
	rec := get(t, h, "GET", "/_/ready", nil, "")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "redis is not reachable") {
		t.Fatalf("ready with Redis cut = %d %s", rec.Code, rec.Body)
	}
	pool, _ := postgres.Open(context.Background(), "postgres://postgres@127.0.0.1:1/x?connect_timeout=1", 1)
	defer pool.Close()
	a.Ready = []server.Check{{Name: "postgres", Fn: pool.Ping}}
	if rec := get(t, server.New(cfg(), a).Handler(), "GET", "/_/ready", nil, ""); rec.Code != 503 {
		t.Fatalf("ready with Postgres down = %d", rec.Code)
	}
}

// The readiness checks run at the same time (a starting function waits for
// its slowest dependency, not for the sum): here the Postgres check only
// passes once the Redis check has started, which a check-after-check probe
// never lets happen before its deadline. A failure still names the first
// failing check in App order, with every check run.
func TestReadinessChecksRunTogether(t *testing.T) {
	a := app(t)
	pg, rd := a.Ready[0].Fn, a.Ready[1].Fn
	redisStarted := make(chan struct{})
	a.Ready[0].Fn = func(ctx context.Context) error {
		select {
		case <-redisStarted:
			return pg(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.Ready[1].Fn = func(ctx context.Context) error {
		close(redisStarted)
		return rd(ctx)
	}
	if rec := get(t, server.New(cfg(), a).Handler(), "GET", "/_/ready", nil, ""); rec.Code != 200 {
		t.Fatalf("ready = %d %s", rec.Code, rec.Body)
	}
	var ran atomic.Int32
	fail := func(context.Context) error { ran.Add(1); return errors.New("down") }
	a.Ready = []server.Check{{Name: "first", Fn: fail}, {Name: "second", Fn: fail}}
	rec := get(t, server.New(cfg(), a).Handler(), "GET", "/_/ready", nil, "")
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "first is not reachable") || ran.Load() != 2 {
		t.Fatalf("ready with both down = %d %s (%d checks ran)", rec.Code, rec.Body, ran.Load())
	}
}

func TestUnknownRoutesAndMethodsAreProblems(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	rec := get(t, h, "GET", "/nope", nil, "")
	if rec.Code != 404 || code(t, rec) != "not_found" {
		t.Fatalf("404: %d %s", rec.Code, rec.Body)
	}
	rec = get(t, h, "DELETE", "/things/1", nil, "")
	if rec.Code != 405 || code(t, rec) != "method_not_allowed" || !strings.Contains(rec.Header().Get("Allow"), "GET") {
		t.Fatalf("405: %d %s allow=%q", rec.Code, rec.Body, rec.Header().Get("Allow"))
	}
}

// A doc's example pasted with its id variable unset (curl -X POST
// $GW/transfers/$HOLD/capture, $HOLD empty) asks for /transfers//capture.
// The mux answered 307 to the cleaned path, an empty body that curl -s
// prints as nothing, and a Location without the gateway's
// /function/<name> prefix, where a client following it re-sent the POST
// to the gateway's own root. A path that is not clean is a 404 problem
// that says why; nothing is redirected.
func TestAPathThatIsNotCleanIsAProblemNotARedirect(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	for _, c := range []struct{ method, path string }{
		{"GET", "/things//7"}, {"POST", "//things"}, {"GET", "/things/./7"}, {"GET", "/x/../things/7"},
	} {
		rec := get(t, h, c.method, c.path, nil, "{}")
		if rec.Code != 404 || code(t, rec) != "not_found" || rec.Header().Get("Location") != "" {
			t.Fatalf("%s %s: %d Location=%q %s", c.method, c.path, rec.Code, rec.Header().Get("Location"), rec.Body)
		}
		if !strings.Contains(rec.Body.String(), "empty") {
			t.Fatalf("%s %s: the problem does not say why: %s", c.method, c.path, rec.Body)
		}
	}
}

func TestPanicBecomesA500ProblemAndTheServerGoesOn(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	rec := get(t, h, "GET", "/panic", nil, "")
	if rec.Code != 500 || code(t, rec) != "internal" || strings.Contains(rec.Body.String(), "boom") {
		t.Fatalf("panic: %d %s", rec.Code, rec.Body)
	}
	if rec := get(t, h, "GET", "/things/1", nil, ""); rec.Code != 200 {
		t.Fatalf("after panic: %d", rec.Code)
	}
}

func TestRequestIDsArePassedThroughOrMade(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	rec := get(t, h, "GET", "/things/1", map[string]string{"X-Request-Id": "abc-123"}, "")
	if rec.Header().Get("X-Request-Id") != "abc-123" {
		t.Fatalf("X-Request-Id = %q", rec.Header().Get("X-Request-Id"))
	}
	rec = get(t, h, "GET", "/things/1", map[string]string{"X-Call-Id": "gw-call-9"}, "")
	if rec.Header().Get("X-Request-Id") != "gw-call-9" || rec.Header().Get("X-Call-Id") != "gw-call-9" {
		t.Fatalf("from X-Call-Id: %q %q", rec.Header().Get("X-Request-Id"), rec.Header().Get("X-Call-Id"))
	}
	a := get(t, h, "GET", "/things/1", nil, "").Header().Get("X-Request-Id")
	b := get(t, h, "GET", "/things/1", nil, "").Header().Get("X-Request-Id")
	if a == "" || a == b {
		t.Fatalf("generated ids %q, %q", a, b)
	}
	rec = get(t, h, "GET", "/nope", map[string]string{"X-Request-Id": "trace-me"}, "")
	if !strings.Contains(rec.Body.String(), `"request_id":"trace-me"`) {
		t.Fatalf("problem lacks the request id: %s", rec.Body)
	}
}

func TestBodyLimitIs413(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	rec := get(t, h, "POST", "/things", map[string]string{"Content-Type": "application/json"}, `{"a":"`+strings.Repeat("x", 100)+`"}`)
	if rec.Code != 413 || code(t, rec) != "payload_too_large" {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	if rec := get(t, h, "POST", "/things", map[string]string{"Content-Type": "application/json"}, `{"a":1}`); rec.Code != 201 {
		t.Fatalf("small body: %d", rec.Code)
	}
}

func TestMetricsCountRequestsByRoutePattern(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	for i := 0; i < 3; i++ {
		get(t, h, "GET", "/things/"+string(rune('a'+i)), nil, "")
	}
	get(t, h, "GET", "/nope", nil, "")
	body := get(t, h, "GET", "/metrics", nil, "").Body.String()
	for _, want := range []string{
		`billfn_http_requests_total{code="200",function="test-fn",method="GET",route="GET /things/{id}"} 3`,
		`billfn_http_request_duration_seconds_bucket{code="200",function="test-fn",route="GET /things/{id}",le="+Inf"} 3`,
		`billfn_http_requests_total{code="404",function="test-fn",method="GET",route="unmatched"} 1`,
		`billfn_http_requests_in_flight{function="test-fn"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestMaxInflightAnswers429(t *testing.T) {
	c := cfg()
	c.MaxInflight = 1
	release := make(chan struct{})
	entered := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) { close(entered); <-release })
	h := server.New(c, server.App{Name: "x", Handler: mux}).Handler()
	go get(t, h, "GET", "/slow", nil, "")
	<-entered
	rec := get(t, h, "GET", "/slow", nil, "")
	close(release)
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d retry-after=%q", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestStreamingResponsesAreFlushed(t *testing.T) {
	s := httptest.NewServer(server.New(cfg(), app(t)).Handler())
	defer s.Close()
	resp, err := http.Get(s.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "chunk\nchunk\nchunk\n" || len(resp.TransferEncoding) == 0 {
		t.Fatalf("body %q, transfer-encoding %v (want chunked)", b, resp.TransferEncoding)
	}
}

// SIGTERM (ctx canceled) drains: readiness fails at once, the in-flight
// request completes, closers run, Serve returns.
func TestShutdownDrainsInFlightRequests(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var closed atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		_, _ = w.Write([]byte("done"))
	})
	srv := server.New(cfg(), server.App{Name: "x", Handler: mux, Close: []func(context.Context){func(context.Context) { closed.Store(true) }}})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	cancel()
	time.Sleep(50 * time.Millisecond)
	if rec := get(t, srv.Handler(), "GET", "/_/ready", nil, ""); rec.Code != 503 {
		t.Fatalf("ready while draining = %d", rec.Code)
	}
	close(release)
	if b := <-got; b != "done" {
		t.Fatalf("in-flight request got %q", b)
	}
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if !closed.Load() {
		t.Fatal("closers did not run")
	}
}

// An id, filter or cursor holding U+0000 is a bad request: Postgres text
// cannot hold it, and the functions answered 500 when it reached a query
// (found by the stack's attack test).
func TestAURLHoldingNULIsABadRequest(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	for _, path := range []string{"/things/a%00b", "/things/x?filter=%00", "/things/x?filter=a%00"} {
		rec := get(t, h, "GET", path, nil, "")
		if rec.Code != http.StatusBadRequest || code(t, rec) != "bad_request" {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
	if rec := get(t, h, "GET", "/things/a%2500b", nil, ""); rec.Code != http.StatusOK {
		t.Errorf("an escaped percent sign is no NUL: %d", rec.Code)
	}
}

// Nor bytes that are not UTF-8 once percent-decoded: Postgres text refuses
// them as it refuses U+0000, and a filter, an id or (through the
// idempotency middleware) a write's path reached it as a 500 in every
// function. Text in any script and escaped percent signs still pass.
func TestAURLWhoseTextIsNotUTF8IsABadRequest(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	for _, path := range []string{"/things/%FF", "/things/x%ED%A0%80", "/things/x?filter=%C3%28", "/things/x?a=1&%FF=2", "/things/x?filter=ok&f=a%FFb"} {
		rec := get(t, h, "GET", path, nil, "")
		if rec.Code != http.StatusBadRequest || code(t, rec) != "bad_request" {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
	for _, path := range []string{"/things/caf%C3%A9", "/things/x?filter=%F0%9F%98%80&b=%25FF", "/things/x?filter=a+b&c", "/things/%25FF"} {
		if rec := get(t, h, "GET", path, nil, ""); rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// A function's /metrics is for the scraper that reaches the process
// directly, not for whoever calls the function through the gateway: the
// gateway (and OpenFaaS's, and Kourier's Envoy) forward every path of
// /function/<name>/..., and the counters are the merchant's business
// (transfers, payments, declines, e-mails sent per second). A request that
// carries a proxy's forwarding headers is answered as for a path that
// does not exist; the scraper's request, which carries none, is served.
func TestMetricsAreNotServedToARequestThatCameThroughAProxy(t *testing.T) {
	h := server.New(cfg(), app(t)).Handler()
	if rec := get(t, h, "GET", "/metrics", map[string]string{"User-Agent": "Prometheus/3.0.0", "Accept": "text/plain"}, ""); rec.Code != 200 ||
		!strings.Contains(rec.Body.String(), "billfn_http_requests_in_flight") {
		t.Fatalf("the scraper's request: %d %.200s", rec.Code, rec.Body)
	}
	for _, hdr := range []map[string]string{
		{"X-Forwarded-For": "203.0.113.9"},
		{"X-Forwarded-Host": "billing.example"},
		{"X-Forwarded-Proto": "https"},
		{"Forwarded": "for=203.0.113.9"},
		{"X-Call-Id": "0b9f6c1e-1a57-4c3e-9d8e-8f6b1f0f4d21"}, // OpenFaaS's gateway marks every call with one
	} {
		rec := get(t, h, "GET", "/metrics", hdr, "")
		if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "billfn_") {
			t.Errorf("GET /metrics with %v: %d %.200s, want a 404 problem", hdr, rec.Code, rec.Body)
			continue
		}
		if c := code(t, rec); c != string(problem.NotFound) {
			t.Errorf("GET /metrics with %v: code %s", hdr, c)
		}
	}
}

// A function listens where its platform calls it: on every interface by
// default (a container's pod address), only on BILLFN_LISTEN_HOST when it
// is set — the local stack sets 127.0.0.1, where its gateway calls the
// functions, so a laptop does not offer every function (its API, its
// /metrics) to the network it is on, beside the gateway that listens on
// loopback. Proof that it took only 127.0.0.1:P: 127.0.0.2:P is still free
// (Linux refuses it while something listens on every address at P).
func TestAFunctionListensOnlyOnBILLFN_LISTEN_HOST(t *testing.T) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	t.Setenv("BILLFN_LISTEN_HOST", "127.0.0.1")
	t.Setenv("PORT", strconv.Itoa(port))
	var c server.Config
	if err := config.Load(&c); err != nil {
		t.Fatal(err)
	}
	srv := server.New(c, server.App{Name: "x", Handler: http.NewServeMux()})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	for tries, up := 0, false; !up; tries++ {
		if tries == 1000 {
			t.Fatal("the server did not answer /_/health in 1000 tries")
		}
		select {
		case err := <-served:
			t.Fatalf("the server stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if res, err := http.Get(base + "/_/health"); err == nil {
			res.Body.Close()
			up = res.StatusCode == http.StatusOK
		}
	}
	other, err := net.Listen("tcp", "127.0.0.2:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("the function took port %d on every interface, not only on 127.0.0.1: %v", port, err)
	}
	other.Close()
}
