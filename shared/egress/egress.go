// Package egress guards requests billfn makes to addresses someone else
// chose — the local gateway's async callbacks (X-Callback-Url) and
// handle-webhook's outgoing webhooks: they go only to public addresses, or
// to a host named in an allowlist (CALLBACK_ALLOWED_HOSTS,
// WEBHOOK_ALLOWED_HOSTS):
//
//   - when the URL is accepted it must be http(s) and its host, unless
//     allowed, must resolve only to public addresses (Guard.Check);
//   - at dial time the host is resolved again and checked, and the
//     dialer's Control function refuses a non-public address actually
//     connected to, so a name that resolves elsewhere by then (DNS
//     rebinding) gets nowhere (Guard.DialContext);
//   - redirects are never followed and no proxy is used (Guard.Client);
//   - what billfn logs or keeps of such a URL and its errors leaves out
//     the query, where its owner may keep a credential (DisplayURL,
//     ErrorText).
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotPublic is a connection refused because its address is not public.
var ErrNotPublic = errors.New("address is not public")

// notPublic are the ranges of IANA's special-purpose address registries
// (IPv4 and IPv6) that are not globally reachable and that Go's
// IsPrivate, IsLoopback, IsLinkLocalUnicast and IsMulticast do not cover:
// a host that shares such a range with billfn — a pod network or a
// cloud's metadata service in 100.64.0.0/10, a lab in 198.18.0.0/15 — is
// reached through it. The documentation ranges (192.0.2.0/24,
// 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) are left out: nothing
// routes them, and tests use them as examples of public addresses.
var notPublic = func() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []string{
		"0.0.0.0/8",      // "this network": connecting to it reaches the host
		"100.64.0.0/10",  // shared address space (RFC 6598)
		"192.0.0.0/24",   // IETF protocol assignments
		"198.18.0.0/15",  // benchmarking (RFC 2544)
		"240.0.0.0/4",    // reserved, and the limited broadcast address
		"::/96",          // IPv4-compatible (deprecated): ::a.b.c.d
		"64:ff9b:1::/48", // local-use NAT64 (RFC 8215)
		"100::/64",       // discard-only
		"2001::/32",      // Teredo: a tunnel to any IPv4 address
		"5f00::/16",      // SRv6 segment identifiers
		"fec0::/10",      // site-local (deprecated)
	} {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}()

// The IPv6 prefixes whose addresses carry an IPv4 address a gateway
// forwards to: well-known NAT64 (RFC 6052, the last 32 bits) and 6to4
// (RFC 3056, the 32 bits after the prefix).
var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// PublicAddr reports whether a guarded request may connect to a: not
// loopback, link-local (169.254.0.0/16, fe80::/10), private (10/8,
// 172.16/12, 192.168/16, fc00::/7), unspecified, multicast, or another
// range that is not globally reachable (notPublic). An IPv6 address that
// carries an IPv4 address (IPv4-mapped, NAT64, 6to4) is judged as that
// IPv4 address.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a):
			a = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(a):
			a = netip.AddrFrom4([4]byte(b[2:6]))
		}
	}
	if !a.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsPrivate() || a.IsUnspecified() ||
		a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Control is a dialer's Control function that refuses a connection to any
// address that is not public, whatever resolved it.
func Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrNotPublic, address)
	}
	if !PublicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrNotPublic, ap.Addr())
	}
	return nil
}

// Dialer dials hosts that are not on the allowlist: only public addresses.
func Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: Control}
}

// hostKey is the canonical form of a host in the allowlist: lower case, no
// trailing dot, an IP address in its standard form.
func hostKey(host string) string {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		return a.String()
	}
	return host
}

// ParseHosts reads an allowlist: comma-separated "host" or "host:port"
// entries ("[::1]:8080" for IPv6 with a port).
func ParseHosts(list string) ([]string, error) {
	var out []string
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.Contains(e, "/") || strings.Contains(e, "@") {
			return nil, fmt.Errorf("%q is not host or host:port", e)
		}
		if h, p, err := net.SplitHostPort(e); err == nil {
			if h == "" || p == "" {
				return nil, fmt.Errorf("%q is not host or host:port", e)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// Guard decides where guarded requests may go.
type Guard struct {
	allowed map[string]bool
	// Setting names the allowlist's variable in the errors Check returns.
	Setting string
	// ListedOnly, when not empty, refuses every host the allowlist does
	// not name, public or not; it ends the error Check returns (how to let
	// public hosts through).
	ListedOnly string
	// Lookup resolves a host (net.DefaultResolver; tests replace it).
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// NewGuard is a guard allowing, besides public addresses, the hosts (and
// host:port) entries of ParseHosts.
func NewGuard(entries []string, setting string) *Guard {
	g := &Guard{allowed: map[string]bool{}, Setting: setting, Lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}}
	for _, e := range entries {
		if h, p, err := net.SplitHostPort(e); err == nil {
			g.allowed[net.JoinHostPort(hostKey(h), p)] = true
		} else {
			g.allowed[hostKey(e)] = true
		}
	}
	return g
}

// Allows reports whether host (from a URL, or a dial address) with port is
// on the list, as the host alone or as host:port.
func (g *Guard) Allows(host, port string) bool {
	k := hostKey(host)
	return g.allowed[k] || g.allowed[net.JoinHostPort(k, port)]
}

// DefaultPort is the port a URL without one connects to.
func DefaultPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// resolve returns the addresses of host: the address itself for an IP
// literal, else what g.Lookup answers.
func (g *Guard) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := g.Lookup(ctx, host)
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("%s has no address", host)
	}
	return addrs, err
}

// Check decides when a URL is accepted whether it may be called; the
// error is what the caller is told.
func (g *Guard) Check(ctx context.Context, u *url.URL) error {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return errors.New("not an absolute http(s) URL")
	}
	if u.User != nil {
		return errors.New("must not carry credentials (user:password@)")
	}
	if g.Allows(u.Hostname(), DefaultPort(u)) {
		return nil
	}
	if g.ListedOnly != "" {
		return errors.New("the host is not in " + g.Setting + g.ListedOnly)
	}
	addrs, err := g.resolve(ctx, u.Hostname())
	if err != nil {
		return errors.New("the host cannot be resolved")
	}
	for _, a := range addrs {
		if !PublicAddr(a) {
			return errors.New("the host is not a public address (loopback, private, link-local, unspecified or multicast) and not in " + g.Setting)
		}
	}
	return nil
}

// DialContext connects a guarded request: an allowed host as it is, any
// other resolved again now and connected to only at a public address.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if g.Allows(host, port) {
		return (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext(ctx, network, addr)
	}
	if g.ListedOnly != "" {
		return nil, fmt.Errorf("%w: %s is not in %s", ErrNotPublic, host, g.Setting)
	}
	addrs, err := g.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if !PublicAddr(a) {
			return nil, fmt.Errorf("%w: %s resolves to %s", ErrNotPublic, host, a)
		}
	}
	d := Dialer()
	var first error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// Client is an HTTP client through the guard: no proxy (a proxy would
// connect where the checks cannot see), no redirects followed (a redirect
// would go where nobody checked: its 3xx is the answer), timeout for the
// whole exchange.
func (g *Guard) Client(timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           g.DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       timeout,
	}
}

// DisplayURL is a URL someone else chose as billfn says it in what it
// keeps or passes on (logs, an attempt's recorded error, an event): without
// its query, where the URL's owner may keep a credential
// (https://hooks.example.com/billfn?token=…), nor user info or fragment.
// What names the destination exactly (an endpoint's id, a call id) goes
// beside it.
func DisplayURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		s, _, _ := strings.Cut(raw, "?")
		return s
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}

// ErrorText is a request's error as DisplayURL says its URL: Go's HTTP
// client returns a *url.Error that quotes the request's URL whole, its
// query too.
func ErrorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " " + strconv.Quote(DisplayURL(ue.URL)) + ": " + ue.Err.Error()
	}
	return err.Error()
}
