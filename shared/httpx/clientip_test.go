package httpx_test

import (
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/httpx"
)

func mustPrefixes(t testing.TB, s string) []netip.Prefix {
	t.Helper()
	p, err := httpx.ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClientIPBelievesOnlyTrustedHops(t *testing.T) {
	trusted := mustPrefixes(t, httpx.DefaultTrustedProxies+",10.0.0.0/8")
	for _, c := range []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct client", "198.51.100.7:5000", nil, "198.51.100.7"},
		{"direct client spoofing", "198.51.100.7:5000", []string{"203.0.113.1"}, "198.51.100.7"},
		{"through the gateway", "127.0.0.1:40000", []string{"198.51.100.7"}, "198.51.100.7"},
		{"spoofed leftmost through the gateway", "127.0.0.1:40000", []string{"203.0.113.1, 198.51.100.7"}, "198.51.100.7"},
		{"spoofed trusted leftmost", "127.0.0.1:40000", []string{"10.0.0.1, 198.51.100.7"}, "198.51.100.7"},
		{"two trusted proxies", "127.0.0.1:40000", []string{"203.0.113.1, 198.51.100.7, 10.1.2.3"}, "198.51.100.7"},
		{"several header lines", "127.0.0.1:40000", []string{"203.0.113.1", "198.51.100.7", "10.1.2.3"}, "198.51.100.7"},
		{"all trusted: the leftmost", "127.0.0.1:40000", []string{"10.9.9.9, 127.0.0.1"}, "10.9.9.9"},
		{"gateway without a header", "127.0.0.1:40000", nil, "127.0.0.1"},
		{"garbage stops the walk", "127.0.0.1:40000", []string{"198.51.100.7, not-an-ip, 10.1.2.3"}, "10.1.2.3"},
		{"empty entry stops the walk", "127.0.0.1:40000", []string{"198.51.100.7,,"}, "127.0.0.1"},
		{"ports and brackets", "[::1]:40000", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"IPv4-mapped IPv6 is IPv4", "[::ffff:127.0.0.1]:1", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"zone dropped", "[::1]:1", []string{"fe80::1%eth0"}, "fe80::1"},
		{"an untrusted proxy ends trust", "192.0.2.1:1", []string{"198.51.100.7"}, "192.0.2.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = c.remote
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := httpx.ClientIP(r, trusted); got.String() != c.want {
				t.Fatalf("ClientIP = %s, want %s", got, c.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	got := mustPrefixes(t, " 127.0.0.0/8 , ::1/128,10.1.2.3, ::ffff:10.0.0.0/104, 192.168.1.7/16")
	want := []string{"127.0.0.0/8", "::1/128", "10.1.2.3/32", "10.0.0.0/8", "192.168.0.0/16"}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("%d: %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "localhost", "10.0.0.0/x"} {
		if _, err := httpx.ParsePrefixes(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// FuzzClientIPIgnoresWhatTheClientWrote: whatever a client puts in
// X-Forwarded-For, the address the gateway appended for it is the one
// ClientIP returns, and a client talking to the function directly is its
// peer address.
func FuzzClientIPIgnoresWhatTheClientWrote(f *testing.F) {
	for _, s := range []string{"", "203.0.113.1", "127.0.0.1", "10.0.0.1, 127.0.0.1", "x,,y", "[::1]:80", "::ffff:1.2.3.4", strings.Repeat("1.1.1.1,", 50)} {
		f.Add(s)
	}
	trusted := mustPrefixes(f, httpx.DefaultTrustedProxies)
	f.Fuzz(func(t *testing.T, spoof string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:40000" // the gateway
		if spoof != "" {
			r.Header.Set("X-Forwarded-For", spoof+", 198.51.100.7")
		} else {
			r.Header.Set("X-Forwarded-For", "198.51.100.7")
		}
		if got := httpx.ClientIP(r, trusted); got.String() != "198.51.100.7" {
			t.Fatalf("through the gateway with %q: %s", spoof, got)
		}
		r.RemoteAddr = "192.0.2.1:5000" // directly
		r.Header.Set("X-Forwarded-For", spoof)
		if got := httpx.ClientIP(r, trusted); got.String() != "192.0.2.1" {
			t.Fatalf("direct with %q: %s", spoof, got)
		}
	})
}
