package gateway

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/billfn/billfn/shared/egress"
)

// Callbacks (X-Callback-Url of /async-function/) are requests the gateway
// makes on a caller's behalf from inside the network it runs in, so they
// go only to a host named in the allowlist (Config.CallbackAllowedHosts,
// CALLBACK_ALLOWED_HOSTS in the local stack, which always holds the
// gateway's own address) and, only when Config.CallbackPublicHosts is set
// (CALLBACK_PUBLIC_HOSTS=true), to hosts that resolve only to public
// addresses. The rules are shared/egress's (handle-webhook's outgoing
// webhooks follow the same ones, public hosts on):
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

// callbackControl refuses a connection to any address that is not public.
func callbackControl(network, address string, c syscall.RawConn) error {
	return egress.Control(network, address, c)
}

// callbackDialer dials callbacks to hosts that are not on the allowlist.
func callbackDialer() *net.Dialer { return egress.Dialer() }

// ParseCallbackHosts reads a CALLBACK_ALLOWED_HOSTS list: comma-separated
// "host" or "host:port" entries ("[::1]:8080" for IPv6 with a port).
func ParseCallbackHosts(list string) ([]string, error) { return egress.ParseHosts(list) }

// newCallbackGuard is the guard of the callbacks to cfg's allowlist; its
// lookups go through g.lookup (tests replace it).
func (g *Gateway) newCallbackGuard(hosts []string) *egress.Guard {
	guard := egress.NewGuard(hosts, "CALLBACK_ALLOWED_HOSTS")
	if !g.cfg.CallbackPublicHosts {
		guard.ListedOnly = " (other public hosts only with CALLBACK_PUBLIC_HOSTS=true)"
	}
	guard.Lookup = func(ctx context.Context, host string) ([]netip.Addr, error) { return g.lookup(ctx, host) }
	return guard
}

// checkCallback decides at accept time whether u may be called back; the
// error is what the caller is told.
func (g *Gateway) checkCallback(ctx context.Context, u *url.URL) error {
	return g.callbackGuard.Check(ctx, u)
}

// newCallbackClient is the client callbacks are sent with.
func (g *Gateway) newCallbackClient() *http.Client {
	return g.callbackGuard.Client(callbackTimeout)
}
