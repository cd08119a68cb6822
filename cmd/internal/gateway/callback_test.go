package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/problem"
)

// Issue 15, item 7: X-Callback-Url must not turn the gateway into a proxy
// into the network it sits in. Every test here sends traffic to loopback only.

// hostOf is the host:port of an httptest server.
func hostOf(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// serve serves g until the test ends.
func serve(t *testing.T, g *Gateway) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Close(ctx)
	})
	return srv
}

// loopbackOnly makes sure that, whatever the code under test decides, no
// callback leaves this machine: a dial to anything but a loopback (or
// unspecified, which is this host) address fails the test without
// connecting. It wraps the gateway's own dial, which still runs its checks.
func loopbackOnly(t *testing.T, g *Gateway) {
	tr := g.callbackClient.Transport.(*http.Transport)
	inner := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		a, err := netip.ParseAddr(host)
		if host != "localhost" && host != "rebind.example" && (err != nil || !(a.Unmap().IsLoopback() || a.IsUnspecified())) {
			t.Errorf("a callback was about to dial %s", addr)
			return nil, errors.New("test: callbacks may only dial loopback")
		}
		return inner(ctx, network, addr)
	}
}

// asyncCall posts to /async-function/f/ with callback as X-Callback-Url.
func asyncCall(t *testing.T, gw *httptest.Server, callback string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/async-function/f/", strings.NewReader("hello"))
	req.Header.Set("X-Callback-Url", callback)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// counter is a loopback server counting the requests it gets.
func counter(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	n := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, n
}

func TestAsyncCallbackToAPrivateAddressIsRefusedAtAcceptTime(t *testing.T) {
	fnSrv, invoked := counter(t, nil)
	cb, called := counter(t, nil)
	_, port, _ := net.SplitHostPort(hostOf(cb))
	g := New(Config{Functions: []Function{fn("f", hostOf(fnSrv))}})
	loopbackOnly(t, g)
	gw := serve(t, g)
	for _, u := range []string{
		cb.URL + "/done", // the loopback server itself, not on the allowlist
		"http://localhost:" + port + "/done",
		"http://[::1]:" + port + "/",
		"http://[::ffff:127.0.0.1]:" + port + "/",
		"http://127.1.2.3:" + port + "/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fe80::1]/",
		"http://10.0.0.1/",
		"http://172.16.5.4/",
		"http://172.31.255.255/",
		"http://192.168.1.1/",
		"http://[fc00::1]/",
		"http://[fd12:3456::1]/",
		"http://0.0.0.0:" + port + "/",
		"http://[::]:" + port + "/",
		"http://224.0.0.1/",
		"http://[ff02::1]/",
		"ftp://example.com/",
		"file:///etc/passwd",
		"gopher://127.0.0.1:" + port + "/",
		"http:///nohost",
	} {
		t.Run(u, func(t *testing.T) {
			res := asyncCall(t, gw, u)
			d := readProblem(t, res)
			if res.StatusCode != http.StatusBadRequest || d.Code != problem.BadRequest {
				t.Fatalf("got %d %+v, want 400", res.StatusCode, d)
			}
			if len(d.Errors) != 1 || d.Errors[0].Header != "X-Callback-Url" || !strings.Contains(d.Detail, "X-Callback-Url") {
				t.Fatalf("problem %+v does not name X-Callback-Url", d)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if invoked.Load() != 0 || called.Load() != 0 {
		t.Fatalf("a refused call ran: function invoked %d times, callback called %d times", invoked.Load(), called.Load())
	}
}

// Only the allowlist by default: a host that resolves to a public address
// is refused unless CALLBACK_PUBLIC_HOSTS is on, and nothing is looked up.
func TestAsyncCallbackOffTheAllowlistIsRefusedByDefault(t *testing.T) {
	fnSrv, invoked := counter(t, nil)
	for _, public := range []bool{false, true} {
		g := New(Config{Functions: []Function{fn("f", hostOf(fnSrv))}, CallbackPublicHosts: public})
		loopbackOnly(t, g)
		var lookups atomic.Int64
		g.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			if lookups.Add(1) > 1 { // at dial time: this test sends nothing out
				return nil, errors.New("test: no callback leaves this machine")
			}
			return []netip.Addr{netip.MustParseAddr("203.0.113.7")}, nil
		}
		gw := serve(t, g)
		res := asyncCall(t, gw, "https://rebind.example/done")
		if public {
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted || lookups.Load() == 0 {
				t.Fatalf("public hosts on: got %d after %d lookups, want 202 after a lookup", res.StatusCode, lookups.Load())
			}
			continue
		}
		d := readProblem(t, res)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(d.Detail, "CALLBACK_ALLOWED_HOSTS") || lookups.Load() != 0 {
			t.Fatalf("default: got %d %+v after %d lookups, want 400 naming CALLBACK_ALLOWED_HOSTS and no lookup", res.StatusCode, d, lookups.Load())
		}
		if invoked.Load() != 0 {
			t.Fatalf("a refused call ran the function")
		}
	}
}

func TestAsyncCallbackToAnAllowedHostIsPosted(t *testing.T) {
	fnSrv, _ := counter(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "result") })
	got := make(chan string, 1)
	cb, _ := counter(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	})
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", hostOf(fnSrv))}, CallbackAllowedHosts: []string{hostOf(cb)}})
	res := asyncCall(t, gw, cb.URL+"/done")
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("got %d, want 202", res.StatusCode)
	}
	select {
	case b := <-got:
		if b != "result" {
			t.Fatalf("callback body %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no callback")
	}
	// The allowlist names host:port: another port of the same host is
	// still refused.
	other, _ := counter(t, nil)
	res = asyncCall(t, gw, other.URL+"/done")
	if d := readProblem(t, res); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("a loopback port off the allowlist got %d %+v", res.StatusCode, d)
	}
}

func TestAsyncCallbackDoesNotFollowRedirects(t *testing.T) {
	fnSrv, _ := counter(t, nil)
	target, redirected := counter(t, nil)
	first, hits := counter(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/stolen", http.StatusTemporaryRedirect)
	})
	// Both are allowed: what stops the redirect is the policy, not the list.
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", hostOf(fnSrv))},
		CallbackAllowedHosts: []string{hostOf(first), hostOf(target)}})
	res := asyncCall(t, gw, first.URL+"/done")
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("got %d", res.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hits.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if hits.Load() != 1 || redirected.Load() != 0 {
		t.Fatalf("callback hits %d, redirect target hits %d; want 1 and 0", hits.Load(), redirected.Load())
	}
}

// A host that resolved to a public address when the call was accepted and
// to loopback when the callback is sent (DNS rebinding) is refused at dial.
func TestAsyncCallbackIsCheckedAgainAtDialTime(t *testing.T) {
	fnSrv, _ := counter(t, nil)
	cb, called := counter(t, nil)
	_, port, _ := net.SplitHostPort(hostOf(cb))
	var lookups atomic.Int64
	g := New(Config{Functions: []Function{fn("f", hostOf(fnSrv))}, CallbackPublicHosts: true})
	loopbackOnly(t, g)
	g.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host != "rebind.example" {
			return nil, errors.New("unexpected lookup of " + host)
		}
		if lookups.Add(1) == 1 {
			return []netip.Addr{netip.MustParseAddr("203.0.113.7")}, nil // public when accepted
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil // loopback when dialled
	}
	gw := serve(t, g)
	res := asyncCall(t, gw, "http://rebind.example:"+port+"/done")
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("got %d, want 202 (public when accepted)", res.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for lookups.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if lookups.Load() < 2 || called.Load() != 0 {
		t.Fatalf("lookups %d, loopback callback server hits %d; want a second lookup and no hit", lookups.Load(), called.Load())
	}
}

// The dialer's Control function refuses the address actually connected to,
// whatever resolved it.
func TestCallbackDialerRefusesPrivateAddresses(t *testing.T) {
	srv, hits := counter(t, nil)
	d := callbackDialer()
	conn, err := d.DialContext(context.Background(), "tcp", hostOf(srv))
	if err == nil {
		conn.Close()
		t.Fatal("the callback dialer connected to loopback")
	}
	if hits.Load() != 0 {
		t.Fatal("the loopback server was reached")
	}
	for _, a := range []string{"127.0.0.1:80", "[::1]:80", "169.254.169.254:80", "10.1.2.3:443", "[fe80::1]:80", "[fd00::1]:80", "0.0.0.0:80", "224.0.0.1:80", "[::ffff:10.0.0.1]:80"} {
		if err := callbackControl("tcp", a, nil); err == nil {
			t.Errorf("callbackControl(%s) allowed it", a)
		}
	}
	if err := callbackControl("tcp4", "203.0.113.7:443", nil); err != nil {
		t.Errorf("callbackControl(a public address) = %v", err)
	}
}

// A callback URL's query may hold its owner's credential: when the
// callback fails, the log line names the URL without it, and so does the
// error beside it (Go's HTTP client quotes the whole URL in its errors).
func TestAFailedCallbacksLogLineDoesNotSayItsQuery(t *testing.T) {
	fnSrv, _ := counter(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "result") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now: the callback is refused
	logs := &syncBuffer{}
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", hostOf(fnSrv))}, CallbackAllowedHosts: []string{closed},
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	res := asyncCall(t, gw, "http://"+closed+"/done?token=s3cret-query")
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("got %d, want 202", res.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "async callback failed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	line := logs.String()
	if !strings.Contains(line, "async callback failed") || !strings.Contains(line, "http://"+closed+"/done") {
		t.Fatalf("no log line of the failed callback naming it: %s", line)
	}
	if strings.Contains(line, "s3cret") {
		t.Errorf("the log says the callback's query: %s", line)
	}
}

// syncBuffer is a bytes.Buffer the gateway's goroutines write while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
