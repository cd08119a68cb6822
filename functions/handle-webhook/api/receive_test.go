package api

import (
	"net/http/httptest"
	"testing"

	"github.com/billfn/billfn/shared/httpx"
)

// TestClientAddrBelievesOnlyTheTrustedProxies: the rate limit's address is
// what the trusted proxy appended, never a leftmost entry the sender wrote;
// the peer when WEBHOOK_TRUST_FORWARDED_FOR is off. (Moved here from
// TestRateLimitPerSourceAddress with clientAddr.)
func TestClientAddrBelievesOnlyTheTrustedProxies(t *testing.T) {
	trusted, _ := httpx.ParsePrefixes(httpx.DefaultTrustedProxies)
	r := httptest.NewRequest("POST", "/stripe", nil)
	r.RemoteAddr, r.Header["X-Forwarded-For"] = "127.0.0.1:5000", []string{"198.51.100.7, 192.0.2.1"}
	if got := clientAddr(r, trusted, true); got != "192.0.2.1" {
		t.Fatalf("through the gateway: %s", got)
	}
	if got := clientAddr(r, trusted, false); got != "127.0.0.1" {
		t.Fatalf("WEBHOOK_TRUST_FORWARDED_FOR off: %s", got)
	}
	r.RemoteAddr = "192.0.2.1:5000"
	if got := clientAddr(r, trusted, true); got != "192.0.2.1" {
		t.Fatalf("direct: %s", got)
	}
}
