package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The /system API (the OpenFaaS provider API faas-cli talks to) needs the
// gateway's basic-auth credentials, as OpenFaaS's does: every path under
// /system/, known or not, answers 401 with a Basic challenge without them,
// and a gateway configured without credentials opens it to nobody.
func TestSystemAPINeedsBasicAuth(t *testing.T) {
	f := Function{Status: FunctionStatus{Name: "generate-invoice", Namespace: Namespace}, Addr: "127.0.0.1:1"}
	gw := gatewayFor(t, Config{Functions: []Function{f}, SystemUser: "admin", SystemPassword: "s3cret-password"})
	call := func(base, path, user, pass string, auth bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth {
			req.SetBasicAuth(user, pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, path := range []string{"/system/functions", "/system/function/generate-invoice", "/system/info", "/system/namespaces", "/system/function/nope"} {
		// GET here; every route and method of the provider API below.
		for name, c := range map[string]struct {
			user, pass string
			auth       bool
		}{
			"no credentials": {},
			"wrong password": {"admin", "s3cret-passwore", true},
			"wrong user":     {"admiN", "s3cret-password", true},
			"empty":          {"", "", true},
			"password only":  {"", "s3cret-password", true},
		} {
			res := call(gw.URL, path, c.user, c.pass, c.auth)
			d := readProblem(t, res)
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s, %s: %d %+v, want 401", path, name, res.StatusCode, d)
			}
			if ch := res.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, `Basic realm="`) {
				t.Errorf("%s, %s: WWW-Authenticate %q, want a Basic challenge", path, name, ch)
			}
		}
	}
	res := call(gw.URL, "/system/functions", "admin", "s3cret-password", true)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("with the credentials: %d", res.StatusCode)
	}
	res = call(gw.URL, "/system/nope", "admin", "s3cret-password", true)
	if d := readProblem(t, res); res.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown /system path with the credentials: %d %+v, want 404", res.StatusCode, d)
	}

	// Without configured credentials nothing opens /system.
	open := gatewayFor(t, Config{Functions: []Function{f}})
	for _, c := range [][2]string{{"", ""}, {"admin", ""}} {
		res := call(open.URL, "/system/functions", c[0], c[1], true)
		if readProblem(t, res); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("a gateway without credentials, basic auth %q: %d, want 401", c, res.StatusCode)
		}
	}
	res = call(open.URL, "/system/functions", "", "", false)
	if readProblem(t, res); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("a gateway without credentials, no auth: %d, want 401", res.StatusCode)
	}
	// The functions themselves are not behind the gateway's basic auth.
	res = call(gw.URL, "/function/generate-invoice/_/health", "", "", false)
	res.Body.Close()
	if res.StatusCode == http.StatusUnauthorized {
		t.Error("/function/ asks for the gateway's credentials")
	}
}

// Every route of the provider API (read from system.go's switch, so a
// route added there is tried here too) refuses every method without the
// credentials, before anything is read, deployed, scaled or deleted.
func TestEveryProviderRouteAndMethodNeedsBasicAuth(t *testing.T) {
	src, err := os.ReadFile("system.go")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range regexp.MustCompile(`case (?:p == |strings\.HasPrefix\(p, )"(/system/[^"]*)"`).FindAllStringSubmatch(string(src), -1) {
		path := m[1]
		if strings.HasSuffix(path, "/") {
			path += "generate-invoice"
		}
		paths = append(paths, path)
	}
	if len(paths) < 7 {
		t.Fatalf("found %d provider routes in system.go (%v): the pattern no longer matches its switch", len(paths), paths)
	}
	var hits atomic.Int64
	fnSrv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer fnSrv.Close()
	f := Function{Status: FunctionStatus{Name: "generate-invoice", Namespace: Namespace}, Addr: fnSrv.Listener.Addr().String()}
	gw := gatewayFor(t, Config{Functions: []Function{f}, SystemUser: "admin", SystemPassword: "s3cret-password"})
	for _, path := range paths {
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(method, gw.URL+path, strings.NewReader(`{"service":"generate-invoice","image":"x","replicas":0,"name":"s","value":"v"}`))
			req.SetBasicAuth("admin", "wrong-password")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with a wrong password: %d, want 401", method, path, res.StatusCode)
			}
		}
	}
	if hits.Load() != 0 {
		t.Errorf("the function was called %d times by refused requests", hits.Load())
	}
}

// A function's Prometheus metrics are the scraper's, which reaches the
// function's port directly, not every caller's: /function/<name>/metrics,
// however it is spelled and whatever hop-by-hop header asks the gateway
// to drop its forwarding headers, and /async-function/<name>/metrics with
// a callback, answer no metrics (shared/server refuses a proxied
// /metrics).
func TestAFunctionsMetricsAreNotServedThroughTheGateway(t *testing.T) {
	addr, _ := function(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "app") }))
	got := make(chan string, 1)
	cb, _ := counter(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	})
	gw := gatewayFor(t, Config{Functions: []Function{fn("f", addr)}, CallbackAllowedHosts: []string{hostOf(cb)}})
	get := func(url string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if st, body := get("http://" + addr + "/metrics"); st != http.StatusOK || !strings.Contains(body, "billfn_http_requests_in_flight") {
		t.Fatalf("the scraper, directly: %d %.200s", st, body)
	}
	for _, c := range []struct {
		path string
		hdr  []string
	}{
		{"/function/f/metrics", nil},
		{"/function/f.openfaas-fn/metrics", nil},
		{"/function/f/metrics?format=text", nil},
		{"/function/f/%6detrics", nil},
		{"/function/f/metrics", []string{"Connection", "X-Forwarded-For, X-Forwarded-Host, X-Call-Id, X-Start-Time"}},
	} {
		st, body := get(gw.URL+c.path, c.hdr...)
		if st != http.StatusNotFound || strings.Contains(body, "billfn_") || strings.Contains(body, "go_goroutines") {
			t.Errorf("GET %s %v through the gateway: %d %.200s, want 404 without metrics", c.path, c.hdr, st, body)
		}
	}
	res, err := http.DefaultClient.Do(func() *http.Request {
		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/async-function/f/metrics", nil)
		req.Header.Set("X-Callback-Url", cb.URL+"/stolen")
		req.Header.Set("Accept-Encoding", "identity") // else the metrics come gzipped, as readable to a thief
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("async: %d", res.StatusCode)
	}
	select {
	case b := <-got:
		if strings.Contains(b, "billfn_") || strings.Contains(b, "go_goroutines") {
			t.Errorf("an async call posted the function's metrics to its callback: %.200s", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no callback")
	}
}
