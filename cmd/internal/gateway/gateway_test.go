package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/server"
)

// function serves h with the real function runtime (shared/server), the way
// a billfn function answers behind the gateway, and counts its connections.
func function(t *testing.T, h http.Handler) (addr string, conns *atomic.Int64) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/", h)
	srv := httptest.NewUnstartedServer(server.New(server.Config{ExecTimeout: 0}, server.App{Name: "test", Handler: mux}).Handler())
	conns = new(atomic.Int64)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), conns
}

func gatewayFor(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	g := New(cfg)
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Close(ctx)
	})
	return srv
}

func fn(name, addr string) Function {
	return Function{Status: FunctionStatus{Name: name, Image: "billfn-" + name}, Addr: addr}
}

func readProblem(t *testing.T, res *http.Response) problem.Document {
	t.Helper()
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type %q, want %q", ct, problem.ContentType)
	}
	var d problem.Document
	if err := json.NewDecoder(res.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Status != res.StatusCode {
		t.Fatalf("problem status %d on a %d response", d.Status, res.StatusCode)
	}
	return d
}

func TestGatewayProxiesRequestAndResponseUnchanged(t *testing.T) {
	var got *http.Request
	var gotBody string
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set("Location", "/transfers/42")
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":"42"}`)
	}))
	gw := gatewayFor(t, Config{Functions: []Function{fn("process-transaction", addr)}})

	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/function/process-transaction/transfers/a%2Fb?x=1&y=%20", strings.NewReader(`{"amount":1050}`))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Idempotency-Key", "k-1")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "X-Secret-Hop")
	req.Header.Set("X-Secret-Hop", "must not pass")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()

	if res.StatusCode != http.StatusCreated || string(body) != `{"id":"42"}` {
		t.Fatalf("got %d %s", res.StatusCode, body)
	}
	if res.Header.Get("Location") != "/transfers/42" || strings.Join(res.Header.Values("X-Multi"), ",") != "a,b" {
		t.Errorf("response headers not preserved: %v", res.Header)
	}
	callID := res.Header.Get("X-Call-Id")
	if callID == "" || res.Header.Get("X-Start-Time") == "" {
		t.Errorf("X-Call-Id / X-Start-Time missing: %v", res.Header)
	}
	if d, err := strconv.ParseFloat(res.Header.Get("X-Duration-Seconds"), 64); err != nil || d <= 0 {
		t.Errorf("X-Duration-Seconds = %q", res.Header.Get("X-Duration-Seconds"))
	}
	if got.Method != http.MethodPost || got.URL.EscapedPath() != "/transfers/a%2Fb" || got.URL.RawQuery != "x=1&y=%20" {
		t.Errorf("upstream saw %s %s ? %s", got.Method, got.URL.EscapedPath(), got.URL.RawQuery)
	}
	if gotBody != `{"amount":1050}` || got.Header.Get("Authorization") != "Bearer tok" || got.Header.Get("Idempotency-Key") != "k-1" {
		t.Errorf("upstream saw body %q headers %v", gotBody, got.Header)
	}
	if got.Header.Get("X-Secret-Hop") != "" {
		t.Error("a header named in Connection was forwarded")
	}
	if xff := got.Header.Get("X-Forwarded-For"); xff != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", xff)
	}
	if got.Header.Get("X-Call-Id") != callID || got.Header.Get("X-Forwarded-Host") == "" {
		t.Errorf("upstream headers: %v", got.Header)
	}
	if res.Header.Get("X-Request-Id") != callID {
		t.Errorf("the function did not adopt the gateway's call id: X-Request-Id %q, X-Call-Id %q", res.Header.Get("X-Request-Id"), callID)
	}
}

func TestGatewayStreamsARequestBodyOfUnknownLength(t *testing.T) {
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, strconv.Itoa(len(b))+" "+strconv.FormatInt(r.ContentLength, 10))
	}))
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	big := strings.Repeat("x", 3*maxBuffered)
	for _, c := range []struct {
		name string
		body io.Reader
		want string
	}{
		{"chunked", io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")), "4 -1"},
		{"larger than the lean path takes", strings.NewReader(big), strconv.Itoa(len(big)) + " " + strconv.Itoa(len(big))},
	} {
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/function/f/upload", c.body)
		if c.name == "chunked" {
			req.ContentLength = -1
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != c.want {
			t.Errorf("%s: the function saw %q, want %q", c.name, b, c.want)
		}
	}
}

// restartable serves h on addr and can be stopped and started again there,
// as the stack restarts a function on its port.
type restartable struct {
	t    *testing.T
	addr string
	h    http.Handler
	srv  *http.Server
}

func (r *restartable) start() {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: r.h}
	go func() { _ = r.srv.Serve(ln) }()
}

func (r *restartable) kill() { _ = r.srv.Close() } // like kill -9: every connection drops

func TestGatewayRecoversPooledConnectionsAfterAFunctionRestart(t *testing.T) {
	var gen atomic.Uint64
	f := &restartable{t: t, addr: "127.0.0.1:0", h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})}
	f.start()
	defer f.kill()
	gw := gatewayFor(t, Config{Functions: []Function{{Status: FunctionStatus{Name: "f"}, Addr: f.addr, Generation: gen.Load}}})
	call := func(method string, hdr ...string) int {
		req, _ := http.NewRequest(method, gw.URL+"/function/f/x", strings.NewReader("{}"))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for i := 0; i < 5; i++ {
		call(http.MethodPost)
	}
	// A restart the gateway is told about: no call fails.
	f.kill()
	f.start()
	gen.Add(1)
	if s := call(http.MethodPost); s != 200 {
		t.Errorf("POST after a restart: %d", s)
	}
	// A restart nobody announced: replayable calls are retried on a fresh connection.
	f.kill()
	f.start()
	if s := call(http.MethodGet); s != 200 {
		t.Errorf("GET over a stale connection: %d", s)
	}
	f.kill()
	f.start()
	if s := call(http.MethodPost, "Idempotency-Key", "k"); s != 200 {
		t.Errorf("POST with Idempotency-Key over a stale connection: %d", s)
	}
}

func TestGatewayKeepsACallersCallID(t *testing.T) {
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/function/f", nil)
	req.Header.Set("X-Call-Id", "my-call")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("X-Call-Id") != "my-call" {
		t.Errorf("X-Call-Id = %q", res.Header.Get("X-Call-Id"))
	}
}

func TestGatewayRoutesNameDotNamespaceLikeOpenFaaS(t *testing.T) {
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.Path) }))
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	for url, want := range map[string]int{"/function/f.openfaas-fn/x": 200, "/function/f.other/x": 404} {
		res, err := http.Get(gw.URL + url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != want || (want == 200 && string(b) != "/x") {
			t.Errorf("%s: %d %q", url, res.StatusCode, b)
		}
	}
}

func TestGatewayReusesConnectionsToAFunction(t *testing.T) {
	addr, conns := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	for i := 0; i < 200; i++ {
		res, err := http.Post(gw.URL+"/function/f/x", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("200 sequential calls opened %d connections to the function, want 1", n)
	}
}

func TestGatewayStreamsAResponseAsItIsWritten(t *testing.T) {
	release := make(chan struct{})
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "data: second\n\n")
	}))
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	res, err := http.Get(gw.URL + "/function/f/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	close(release)
	if err != nil || line != "data: first\n" {
		t.Fatalf("first chunk: %q %v", line, err)
	}
}

func TestGatewayAnswersUnknownFunctionWith404Problem(t *testing.T) {
	gw := gatewayFor(t, Config{})
	res, err := http.Get(gw.URL + "/function/nope/x")
	if err != nil {
		t.Fatal(err)
	}
	d := readProblem(t, res)
	if res.StatusCode != 404 || d.Code != problem.NotFound || res.Header.Get("X-Call-Id") == "" {
		t.Errorf("got %d %+v", res.StatusCode, d)
	}
	res, err = http.Get(gw.URL + "/elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	if d := readProblem(t, res); res.StatusCode != 404 || d.Code != problem.NotFound {
		t.Errorf("unrouted path: %d %+v", res.StatusCode, d)
	}
}

func TestGatewayAnswersAFunctionThatIsNotRunningWith503(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	res, err := http.Post(gw.URL+"/function/f/", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	d := readProblem(t, res)
	if res.StatusCode != 503 || d.Code != problem.Unavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("got %d %+v Retry-After %q", res.StatusCode, d, res.Header.Get("Retry-After"))
	}
}

func TestGatewayAnswersAFunctionThatDiesMidRequestWith502(t *testing.T) {
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // as a process killed mid-request would
		}
	}))
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	res, err := http.Post(gw.URL+"/function/f/", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	d := readProblem(t, res)
	if res.StatusCode != 502 || d.Code != BadGateway {
		t.Errorf("got %d %+v", res.StatusCode, d)
	}
}

func TestGatewayAnswersASlowFunctionWith504(t *testing.T) {
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}, UpstreamTimeout: 200 * time.Millisecond})
	res, err := http.Get(gw.URL + "/function/f/slow")
	if err != nil {
		t.Fatal(err)
	}
	d := readProblem(t, res)
	if res.StatusCode != 504 || d.Code != problem.Timeout {
		t.Errorf("got %d %+v", res.StatusCode, d)
	}
}

func TestGatewayListsFunctionsLikeOpenFaaS(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f := Function{
		Status: FunctionStatus{
			Name: "generate-invoice", Image: "localhost:5001/billfn-generate-invoice:latest", Namespace: "openfaas-fn",
			Annotations: &map[string]string{"topic": "billing-events,cron-function", "schedule": "* * * * *"},
			Labels:      &map[string]string{"app.kubernetes.io/part-of": "billfn"},
			EnvVars:     map[string]string{"JWT_ALG": "EdDSA"}, Secrets: []string{"jwt-public-key"},
			ReadOnlyRootFilesystem: true,
		},
		Addr:  "127.0.0.1:1",
		State: func() (uint64, uint64, time.Time) { return 1, 0, created },
	}
	gw := gatewayFor(t, Config{Functions: []Function{f}, SystemUser: "admin", SystemPassword: "pw"})

	res, err := http.Get(gw.URL + "/system/functions")
	if err != nil {
		t.Fatal(err)
	}
	if d := readProblem(t, res); res.StatusCode != 401 {
		t.Fatalf("without credentials: %d %+v", res.StatusCode, d)
	}
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/system/functions", nil)
	req.SetBasicAuth("admin", "pw")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var raw []map[string]any
	if err := json.NewDecoder(res.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 1 {
		t.Fatalf("got %v", raw)
	}
	got := raw[0]
	for _, k := range []string{"name", "image", "namespace", "envVars", "secrets", "labels", "annotations", "readOnlyRootFilesystem", "replicas", "createdAt"} {
		if _, ok := got[k]; !ok {
			t.Errorf("member %q missing from %v", k, got)
		}
	}
	if got["replicas"] != 1.0 || got["availableReplicas"] != nil || got["annotations"].(map[string]any)["topic"] != "billing-events,cron-function" {
		t.Errorf("got %v", got)
	}

	req, _ = http.NewRequest(http.MethodGet, gw.URL+"/system/function/generate-invoice", nil)
	req.SetBasicAuth("admin", "pw")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var one FunctionStatus
	_ = json.NewDecoder(res.Body).Decode(&one)
	res.Body.Close()
	if one.Name != "generate-invoice" || !one.CreatedAt.Equal(created) {
		t.Errorf("got %+v", one)
	}
}

func TestGatewayHealthz(t *testing.T) {
	gw := gatewayFor(t, Config{})
	res, err := http.Get(gw.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("healthz %d", res.StatusCode)
	}
}

func TestGatewayAsyncAccepts202AndPostsTheResultToTheCallback(t *testing.T) {
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo-Path", r.URL.Path)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(append([]byte("echo:"), b...))
	}))
	type callback struct {
		header http.Header
		body   string
	}
	got := make(chan callback, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- callback{r.Header.Clone(), string(b)}
	}))
	defer cb.Close()
	// The callback listens on loopback: only allowed when listed.
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}, CallbackAllowedHosts: []string{cb.Listener.Addr().String()}})

	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/async-function/f/invoices", strings.NewReader("hello"))
	req.Header.Set("X-Callback-Url", cb.URL+"/done")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	callID := res.Header.Get("X-Call-Id")
	if res.StatusCode != http.StatusAccepted || callID == "" {
		t.Fatalf("got %d, X-Call-Id %q", res.StatusCode, callID)
	}
	select {
	case c := <-got:
		if c.body != "echo:hello" || c.header.Get("X-Function-Status") != "201" || c.header.Get("X-Function-Name") != "f" ||
			c.header.Get("X-Call-Id") != callID || c.header.Get("X-Duration-Seconds") == "" || c.header.Get("X-Echo-Path") != "/invoices" {
			t.Errorf("callback got %q %v", c.body, c.header)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no callback")
	}
}

func TestGatewayAsyncWaitsForAFunctionThatIsStarting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	done := make(chan string, 1)
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}})
	res, err := http.Post(gw.URL+"/async-function/f/", "text/plain", strings.NewReader("late"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("got %d", res.StatusCode)
	}
	time.Sleep(300 * time.Millisecond) // the first attempt finds nothing listening
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		done <- string(b)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	select {
	case b := <-done:
		if b != "late" {
			t.Errorf("body %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued call never reached the function")
	}
}

func TestGatewayAsyncRejectsABadCallbackURL(t *testing.T) {
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", "127.0.0.1:1")}})
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/async-function/f/", nil)
	req.Header.Set("X-Callback-Url", "not a url")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if d := readProblem(t, res); res.StatusCode != 400 || d.Code != problem.BadRequest {
		t.Errorf("got %d %+v", res.StatusCode, d)
	}
}

// BenchmarkGatewayOverhead measures a trivial call through the gateway
// against the same call made directly (run with -bench, compare ns/op).
func BenchmarkGatewayOverhead(b *testing.B) {
	mux := http.NewServeMux()
	fsrv := httptest.NewServer(server.New(server.Config{}, server.App{Name: "bench", Handler: mux}).Handler())
	defer fsrv.Close()
	g := New(Config{Functions: []Function{fn("f", fsrv.Listener.Addr().String())}})
	gsrv := httptest.NewServer(g)
	defer gsrv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	run := func(b *testing.B, url string) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, fsrv.URL+"/_/health") })
	b.Run("gateway", func(b *testing.B) { run(b, gsrv.URL+"/function/f/_/health") })
}

// A queued call whose function died with it in flight may have taken
// effect: it is invoked again only when that is harmless (a GET, or a
// write with an Idempotency-Key), as a synchronous call goes to another
// replica only then. Until 2026-12-07 the queue counted such a failure as
// "unavailable" and invoked any write again, up to five times: a keyless
// POST /accounts sent with /async-function/ could create five accounts.
func TestGatewayAsyncInvokesAgainOnlyACallThatMayBeRepeated(t *testing.T) {
	for _, c := range []struct {
		method, key string
		calls       int32
		status      string
	}{
		{http.MethodPost, "", 1, "502"},
		{http.MethodPost, "k-1", 2, "201"},
		{http.MethodGet, "", 2, "201"},
	} {
		t.Run(c.method+"/key="+c.key, func(t *testing.T) {
			var calls atomic.Int32
			// A bare server: the function runtime's writer cannot be hijacked.
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				if calls.Add(1) == 1 {
					// The process dies having read the call: no answer.
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						conn.Close()
					}
					return
				}
				w.WriteHeader(http.StatusCreated)
			}))
			defer up.Close()
			addr := up.Listener.Addr().String()
			got := make(chan string, 1)
			cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- r.Header.Get("X-Function-Status")
			}))
			defer cb.Close()
			gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}, CallbackAllowedHosts: []string{cb.Listener.Addr().String()}})
			req, _ := http.NewRequest(c.method, gw.URL+"/async-function/f/accounts", strings.NewReader(`{"currency":"EUR"}`))
			req.Header.Set("X-Callback-Url", cb.URL+"/done")
			if c.key != "" {
				req.Header.Set("Idempotency-Key", c.key)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted {
				t.Fatalf("got %d", res.StatusCode)
			}
			select {
			case status := <-got:
				if status != c.status || calls.Load() != c.calls {
					t.Errorf("the callback reports %s after %d calls; want %s after %d", status, calls.Load(), c.status, c.calls)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no callback")
			}
		})
	}
}
