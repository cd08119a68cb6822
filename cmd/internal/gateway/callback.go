package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Callbacks (X-Callback-Url of /async-function/) are requests the gateway
// makes on a caller's behalf from inside the network it runs in, so they
// go only to a host named in the allowlist (Config.CallbackAllowedHosts,
// CALLBACK_ALLOWED_HOSTS in the local stack, which always holds the
// gateway's own address) and, only when Config.CallbackPublicHosts is set
// (CALLBACK_PUBLIC_HOSTS=true), to hosts that resolve only to public
// addresses:
//
//   - at accept time the URL must be http(s) and its host allowed, or
//     public when public hosts are on (else 400 naming the header);
//   - at dial time the host is resolved again and checked, and the dialer's
//     Control function refuses a non-public address actually connected to,
//     so a name that resolves elsewhere by then (DNS rebinding) gets nowhere;
//   - redirects are never followed, no proxy is used, and a callback has
//     callbackTimeout to complete.

// callbackTimeout bounds one callback request.
const callbackTimeout = 30 * time.Second

// errCallbackAddress is a callback to an address that is not public.
var errCallbackAddress = errors.New("callback address is not public")

// zeroNet is 0.0.0.0/8, "this network": connecting to it reaches the host.
var zeroNet = netip.MustParsePrefix("0.0.0.0/8")

// publicAddr reports whether a callback may connect to a: not loopback,
// link-local (169.254.0.0/16, fe80::/10), private (10/8, 172.16/12,
// 192.168/16, fc00::/7), unspecified or multicast. An IPv4-mapped IPv6
// address is judged as the IPv4 address it carries.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsPrivate() && !a.IsUnspecified() &&
		!a.IsMulticast() && !a.IsLinkLocalMulticast() && !a.IsInterfaceLocalMulticast() && !zeroNet.Contains(a)
}

// callbackControl is the callback dialer's Control function: it refuses a
// connection to any address that is not public, whatever resolved it.
func callbackControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", errCallbackAddress, address)
	}
	if !publicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", errCallbackAddress, ap.Addr())
	}
	return nil
}

// callbackDialer dials callbacks to hosts that are not on the allowlist.
func callbackDialer() *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Control: callbackControl}
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

// ParseCallbackHosts reads a CALLBACK_ALLOWED_HOSTS list: comma-separated
// "host" or "host:port" entries ("[::1]:8080" for IPv6 with a port).
func ParseCallbackHosts(list string) ([]string, error) {
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

// allowlist is the parsed Config.CallbackAllowedHosts.
type allowlist map[string]bool

func newAllowlist(entries []string) allowlist {
	a := allowlist{}
	for _, e := range entries {
		if h, p, err := net.SplitHostPort(e); err == nil {
			a[net.JoinHostPort(hostKey(h), p)] = true
		} else {
			a[hostKey(e)] = true
		}
	}
	return a
}

// allows reports whether host (from a URL, or a dial address) with port is
// on the list, as the host alone or as host:port.
func (a allowlist) allows(host, port string) bool {
	k := hostKey(host)
	return a[k] || a[net.JoinHostPort(k, port)]
}

// defaultPort is the port a URL without one connects to.
func defaultPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// resolve returns the addresses of host: the address itself for an IP
// literal, else what g.lookup answers.
func (g *Gateway) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := g.lookup(ctx, host)
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("%s has no address", host)
	}
	return addrs, err
}

// checkCallback decides at accept time whether u may be called back; the
// error is what the caller is told.
func (g *Gateway) checkCallback(ctx context.Context, u *url.URL) error {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return errors.New("not an absolute http(s) URL")
	}
	if g.callbackHosts.allows(u.Hostname(), defaultPort(u)) {
		return nil
	}
	if !g.cfg.CallbackPublicHosts {
		return errors.New("the host is not in CALLBACK_ALLOWED_HOSTS (other public hosts only with CALLBACK_PUBLIC_HOSTS=true)")
	}
	addrs, err := g.resolve(ctx, u.Hostname())
	if err != nil {
		return errors.New("the host cannot be resolved")
	}
	for _, a := range addrs {
		if !publicAddr(a) {
			return errors.New("the host is not a public address (loopback, private, link-local, unspecified or multicast) and not in CALLBACK_ALLOWED_HOSTS")
		}
	}
	return nil
}

// dialCallback connects a callback: an allowed host as it is, any other
// resolved again now and connected to only at a public address.
func (g *Gateway) dialCallback(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if g.callbackHosts.allows(host, port) {
		return (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext(ctx, network, addr)
	}
	if !g.cfg.CallbackPublicHosts {
		return nil, fmt.Errorf("%w: %s is not in CALLBACK_ALLOWED_HOSTS", errCallbackAddress, host)
	}
	addrs, err := g.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if !publicAddr(a) {
			return nil, fmt.Errorf("%w: %s resolves to %s", errCallbackAddress, host, a)
		}
	}
	d := callbackDialer()
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

// newCallbackClient is the client callbacks are sent with.
func (g *Gateway) newCallbackClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would connect where the checks cannot see
			DialContext:           g.dialCallback,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: callbackTimeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       30 * time.Second,
		},
		// A redirect would send the result where nobody checked.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       callbackTimeout,
	}
}
