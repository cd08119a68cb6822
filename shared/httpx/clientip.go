package httpx

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// DefaultTrustedProxies is loopback: the local stack's gateway on
// 127.0.0.1, and a Knative pod's queue-proxy, are proxies.
const DefaultTrustedProxies = "127.0.0.0/8,::1/128"

// ParsePrefixes reads a comma-separated list of CIDRs (a bare address is
// its own /32 or /128), e.g. TRUSTED_PROXIES.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an address", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %v", f, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ClientIP is the address of the client a request came from: the peer
// (r.RemoteAddr) unless the peer is a trusted proxy; then X-Forwarded-For
// is walked from the right, skipping trusted proxies, and the first
// address that is not one is the client. The entries left of it were
// written by the client or by proxies we do not know, so they are never
// believed: a client cannot choose its address by sending X-Forwarded-For.
//
// Every proxy in front must append the address of its peer. The local
// gateway (cmd/internal/gateway) does: it appends its peer's address to any
// X-Forwarded-For it received (its test checks "203.0.113.9, 127.0.0.1");
// it is no httputil.ReverseProxy but behaves as one. OpenFaaS's gateway
// does not (it sets the header only when it is absent), so behind it alone
// the client chooses the address (docs/security.md, Rate limits).
//
// When every entry is a trusted proxy the leftmost is taken (the request
// started inside the trusted network); a malformed entry ends the walk
// and the last trusted hop is the client, so garbage cannot shift it.
// The zero Addr means RemoteAddr itself was unreadable.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseAddr(r.RemoteAddr)
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		return peer
	}
	client := peer
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		line := hops[i]
		for line != "" {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				line, entry = line[:j], line[j+1:]
			} else {
				line, entry = "", line
			}
			a := parseAddr(strings.TrimSpace(entry))
			if !a.IsValid() {
				return client
			}
			client = a
			if !isTrusted(a, trusted) {
				return a
			}
		}
	}
	return client
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseAddr reads "ip", "ip:port", "[ipv6]:port" or "[ipv6]"; zones are
// dropped and IPv4-mapped IPv6 becomes IPv4, so one client has one key.
func parseAddr(s string) netip.Addr {
	if s == "" || len(s) > 64 {
		return netip.Addr{}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap()
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.WithZone("").Unmap()
}
