package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

func TestPublicAddr(t *testing.T) {
	for a, want := range map[string]bool{
		"203.0.113.7": true, "2001:db8::1": true, "8.8.8.8": true,
		"127.0.0.1": false, "::1": false, "169.254.169.254": false, "10.1.2.3": false, "172.16.0.1": false,
		"192.168.1.1": false, "fd00::1": false, "fe80::1": false, "0.0.0.0": false, "0.1.2.3": false, "::": false,
		"224.0.0.1": false, "::ffff:10.0.0.1": false, "::ffff:127.0.0.1": false,
		// Not in Go's private or loopback sets, yet not the internet's:
		// shared address space (RFC 6598; pod and node networks, a cloud's
		// metadata service at 100.100.100.200), benchmarking, reserved,
		// broadcast, IETF protocol assignments.
		"100.64.0.1": false, "100.100.100.200": false, "100.127.255.254": false, "198.18.0.1": false, "198.19.255.1": false,
		"240.0.0.1": false, "255.255.255.255": false, "192.0.0.8": false,
		"100.63.255.255": true, "100.128.0.1": true, "198.20.0.1": true,
		// IPv6 forms that carry an IPv4 address are judged by it: NAT64
		// (a gateway translates them to any IPv4 address), 6to4; the
		// deprecated IPv4-compatible form, Teredo, the local-use NAT64
		// prefix and site-local are refused outright.
		"64:ff9b::a9fe:a9fe": false, "64:ff9b::a00:1": false, "64:ff9b::808:808": true,
		"2002:a00:1::": false, "2002:7f00:1::1": false, "2002:808:808::1": true,
		"::7f00:1": false, "::a00:1": false, "2001::1": false, "64:ff9b:1::a00:1": false, "fec0::1": false,
		"100::1": false, "5f00::1": false,
		"2606:4700:4700::1111": true,
	} {
		if got := PublicAddr(netip.MustParseAddr(a)); got != want {
			t.Errorf("PublicAddr(%s) = %v", a, got)
		}
	}
}

func TestCheckRefusesWhatIsNotPublicOrListed(t *testing.T) {
	g := NewGuard([]string{"hooks.internal", "127.0.0.1:9999"}, "X_ALLOWED")
	g.Lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "public.example":
			return []netip.Addr{netip.MustParseAddr("203.0.113.7")}, nil
		case "sneaky.example":
			return []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("10.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	for raw, ok := range map[string]bool{
		"https://public.example/x": true, "http://hooks.internal:8080/x": true, "http://127.0.0.1:9999/x": true,
		"http://127.0.0.1:9998/x": false, "https://sneaky.example/x": false, "https://nowhere.example/": false,
		"ftp://public.example/": false, "https://user:pw@public.example/": false, "http://[::1]/": false,
		"http://169.254.169.254/latest": false,
	} {
		u, _ := url.Parse(raw)
		if err := g.Check(context.Background(), u); (err == nil) != ok {
			t.Errorf("Check(%s) = %v", raw, err)
		}
	}
	g.ListedOnly = " (public hosts are off)"
	u, _ := url.Parse("https://public.example/x")
	if err := g.Check(context.Background(), u); err == nil {
		t.Error("ListedOnly let a public host through")
	}
}

// The client through the guard reaches neither an unlisted loopback
// server nor, by a redirect, anywhere else.
func TestClientRefusesLoopbackAndRedirects(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
	}))
	defer srv.Close()
	res, err := NewGuard(nil, "X_ALLOWED").Client(5e9).Get(srv.URL)
	if err == nil {
		res.Body.Close()
		t.Fatal("reached a loopback server")
	}
	if !errors.Is(err, ErrNotPublic) || hits.Load() != 0 {
		t.Fatalf("err %v, hits %d", err, hits.Load())
	}
	u, _ := url.Parse(srv.URL)
	res, err = NewGuard([]string{u.Host}, "X_ALLOWED").Client(5e9).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusFound || hits.Load() != 1 {
		t.Fatalf("status %d, hits %d: the redirect must be the answer", res.StatusCode, hits.Load())
	}
}

// Loopback and the metadata address in the notations an attacker tries
// (held on 2026-12-07, kept as a regression): IPv6 literals that carry
// them, a zone, and the numeric forms C's inet_aton reads (decimal, octal,
// hex, short), which a libc resolver answers with the address itself: the
// fake Lookup below answers as glibc's getaddrinfo does. Every one is
// refused when the URL is checked and again at dial time.
func TestLoopbackInEveryNotationIsRefused(t *testing.T) {
	g := NewGuard(nil, "X_ALLOWED")
	inetAton := map[string]string{
		"2130706433": "127.0.0.1", "0177.0.0.1": "127.0.0.1", "0x7f000001": "127.0.0.1", "127.1": "127.0.0.1",
		"0x7f.1": "127.0.0.1", "2852039166": "169.254.169.254", "0251.0376.0251.0376": "169.254.169.254", "0": "0.0.0.0",
	}
	g.Lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		if a, ok := inetAton[host]; ok {
			return []netip.Addr{netip.MustParseAddr(a)}, nil
		}
		return nil, errors.New("no such host")
	}
	raws := []string{"http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::1]/", "http://[0:0:0:0:0:0:0:1]/",
		"http://[fe80::1%25lo]/", "http://[::ffff:169.254.169.254]/", "http://[::]/", "http://127.0.0.1./"}
	for h := range inetAton {
		raws = append(raws, "http://"+h+"/")
	}
	for _, raw := range raws {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if err := g.Check(context.Background(), u); err == nil {
			t.Errorf("Check(%s) accepted it", raw)
		}
		if c, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort(u.Hostname(), "80")); err == nil {
			c.Close()
			t.Errorf("DialContext(%s) connected", raw)
		}
	}
}

// A URL's query, user info and fragment stay out of what billfn says of
// it; its scheme, host, port and path stay, so the reader knows which.
func TestDisplayURLAndErrorTextLeaveTheQueryOut(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.example.com/billfn?token=s3cret":        "https://hooks.example.com/billfn",
		"https://u:s3cret@hooks.example.com:8443/a/b?x=1#frag": "https://hooks.example.com:8443/a/b",
		"https://hooks.example.com/billfn":                     "https://hooks.example.com/billfn",
		"http://[::1]:80/%zz?token=s3cret":                     "http://[::1]:80/%zz", // unparsable: cut at the query
		"https://hooks.example.com/?":                          "https://hooks.example.com/",
	} {
		if got := DisplayURL(raw); got != want {
			t.Errorf("DisplayURL(%q) = %q; want %q", raw, got, want)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: the request is refused
	_, err = http.Post("http://"+addr+"/hook?token=s3cret", "application/json", nil)
	if err == nil {
		t.Fatal("a request to a closed port succeeded")
	}
	if got := ErrorText(err); strings.Contains(got, "s3cret") || !strings.Contains(got, `"http://`+addr+`/hook"`) || !strings.Contains(got, "refused") {
		t.Errorf("ErrorText = %q; want the URL without its query, and the cause", got)
	}
	if got := ErrorText(errors.New("plain")); got != "plain" {
		t.Errorf("ErrorText of an error without a URL = %q", got)
	}
}
