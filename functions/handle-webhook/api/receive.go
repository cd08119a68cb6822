package api

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/sandbox"
)

// webhooksTotal counts deliveries by gateway and outcome: processed,
// parked, ignored, duplicate, unparked, and the rejections (the only trace
// a rejected delivery leaves).
var webhooksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "billfn_webhooks_total",
	Help: "Gateway webhook deliveries by gateway and outcome (processed, parked, ignored, duplicate, unparked, rejected_<code>, rate_limited).",
}, []string{"gateway", "outcome"})

// bodies recycles request body buffers: the hot path reads every body once.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (a *API) receiveStripe(w http.ResponseWriter, r *http.Request) {
	a.receive(w, r, webhooks.Stripe)
}

func (a *API) receiveSandbox(w http.ResponseWriter, r *http.Request) {
	a.receive(w, r, webhooks.Sandbox)
}

// receipts are the answers to a gateway: {"received":true,"status":…}.
var receipts = func() map[string][]byte {
	m := map[string][]byte{}
	for _, st := range []string{webhooks.Processed, webhooks.Parked, webhooks.Ignored, webhooks.Duplicate} {
		m[st] = []byte(`{"received":true,"status":"` + st + `"}`)
	}
	return m
}()

// receive reads the raw body once (size-limited by the runtime), verifies
// it before parsing anything, stores it with its normalized event in one
// transaction, and only then answers 200.
func (a *API) receive(w http.ResponseWriter, r *http.Request, gateway string) {
	stripeSecrets, sandboxSecrets := a.signingSecrets()
	if (gateway == webhooks.Stripe && len(stripeSecrets) == 0) || (gateway == webhooks.Sandbox && len(sandboxSecrets) == 0) {
		problem.Write(w, r, &apperr.Error{Code: webhooks.CodeNotConfigured, RetryAfter: time.Minute,
			Detail: "no signing secret is configured for " + gateway + " webhooks (STRIPE_WEBHOOK_SECRET / SANDBOX_WEBHOOK_SECRET)"})
		return
	}
	buf := bodies.Get().(*bytes.Buffer)
	buf.Reset()
	recycle := true
	defer func() {
		if recycle && buf.Cap() <= 1<<20 {
			bodies.Put(buf)
		}
	}()
	if _, err := buf.ReadFrom(r.Body); err != nil {
		webhooksTotal.WithLabelValues(gateway, "rejected_read").Inc()
		problem.Write(w, r, err)
		return
	}
	body := buf.Bytes()
	now := a.now()
	tol := a.cfg.Tolerance.D()
	var err error
	if gateway == webhooks.Stripe {
		err = webhooks.VerifyStripe(stripeSecrets, r.Header.Get(webhooks.StripeSignatureHeader), body, now, tol)
	} else {
		err = webhooks.VerifySandbox(sandboxSecrets, r.Header.Get(sandbox.SignatureHeader), body, now, tol)
	}
	if err != nil {
		a.reject(w, r, gateway, err)
		return
	}
	p, err := webhooks.Parse(body)
	if err != nil {
		a.reject(w, r, gateway, err)
		return
	}
	u, handled := webhooks.Normalize(gateway, p)
	webhooks.CheckPaymentID(&u)
	ctx, cancel := postgres.Detached(r.Context())
	defer cancel()
	outcome, err := a.store.Record(ctx, &u, handled, body, now)
	if err != nil {
		// Not stored yet: the gateway retries (never lost). A write that
		// outlived ctx may still be queued in the group commit, which
		// reads body when it runs: the buffer is left to the collector,
		// never handed to the next webhook.
		recycle = false
		problem.Write(w, r, &apperr.Error{Code: apperr.Unavailable, Detail: "the webhook could not be stored; retry", RetryAfter: time.Second, Err: err})
		return
	}
	webhooksTotal.WithLabelValues(gateway, outcome).Inc()
	if outcome == webhooks.Processed {
		a.d.Publisher.Kick()
	}
	httpx.WriteRaw(w, http.StatusOK, receipts[outcome])
}

func (a *API) reject(w http.ResponseWriter, r *http.Request, gateway string, err error) {
	code := "error"
	if c := apperr.CodeOf(err); c != "" {
		code = string(c)
	}
	webhooksTotal.WithLabelValues(gateway, "rejected_"+code).Inc()
	if problem.StatusOf(r.Context(), err) == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Signature realm="billfn-webhooks"`)
	}
	problem.Write(w, r, err)
}

// limiter is a per-source-address rate limit in Redis: a counter per
// address and second. Redis down lets everything through: a gateway's
// webhook must never be lost to our cache being away.
//
// Concurrent deliveries of one window share their Redis round trip: while
// a count of the window is in flight, the deliveries that arrive join the
// next one, which adds their number at once (INCRBY) and gives each its
// own place in the window, as one INCR each would have (issue 20).
type limiter struct {
	rdb    *goredis.Client
	prefix string
	limit  int
	now    func() time.Time
	warned atomic.Int64

	mu sync.Mutex
	// flight is the count in flight of each window (key), next the one
	// its arriving deliveries join.
	flight, next map[string]*rlCount
}

// rlCount is one Redis count of a window: n deliveries, counted together.
type rlCount struct {
	n     int64
	start chan struct{} // closed when it may be sent (the one before it done)
	done  chan struct{} // closed when total and err are known
	total int64         // the window's count after it
	err   error
}

// count counts one delivery in the window key and answers its place in it.
func (l *limiter) count(ctx context.Context, key string) (int64, error) {
	l.mu.Lock()
	if l.flight == nil {
		l.flight, l.next = map[string]*rlCount{}, map[string]*rlCount{}
	}
	if _, busy := l.flight[key]; !busy {
		c := &rlCount{n: 1, done: make(chan struct{})}
		l.flight[key] = c
		l.mu.Unlock()
		l.send(ctx, key, c)
		return c.total, c.err
	}
	c := l.next[key]
	first := c == nil
	if first {
		c = &rlCount{start: make(chan struct{}), done: make(chan struct{})}
		l.next[key] = c
	}
	i := c.n
	c.n++
	l.mu.Unlock()
	if first {
		<-c.start // no one joins it any more
		l.send(ctx, key, c)
	} else {
		<-c.done
	}
	return c.total - (c.n - 1 - i), c.err
}

// send runs count c, then lets the next count of its window go.
func (l *limiter) send(ctx context.Context, key string, c *rlCount) {
	c.total, c.err = countScript.Run(context.WithoutCancel(ctx), l.rdb, []string{key}, c.n).Int64()
	l.mu.Lock()
	if next := l.next[key]; next != nil {
		delete(l.next, key)
		l.flight[key] = next
		close(next.start)
	} else {
		delete(l.flight, key)
	}
	l.mu.Unlock()
	close(c.done)
}

// waiting is how many deliveries wait for a count in flight (tests).
func (l *limiter) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.next {
		n += int(c.n)
	}
	return n
}

func (l *limiter) allow(ctx context.Context, addr string) bool {
	if l.limit <= 0 {
		return true
	}
	sec := l.now().Unix()
	key := make([]byte, 0, len(l.prefix)+len(addr)+24)
	key = append(append(append(key, l.prefix...), addr...), ':')
	key = strconv.AppendInt(key, sec, 10)
	n, err := l.count(ctx, string(key))
	if err != nil {
		if last := l.warned.Load(); sec-last >= 60 && l.warned.CompareAndSwap(last, sec) {
			slog.WarnContext(ctx, "rate limit skipped: Redis unavailable", "err", err.Error())
		}
		return true
	}
	return n <= int64(l.limit)
}

// countScript counts ARGV[1] deliveries in their address's one-second
// window: one command (EVALSHA), the window expiring on its own.
var countScript = goredis.NewScript(`
local k = tonumber(ARGV[1])
local n = redis.call('INCRBY', KEYS[1], k)
if n == k then redis.call('PEXPIRE', KEYS[1], 2000) end
return n`)

// clientAddr is the delivery's source address: httpx.ClientIP, which
// believes X-Forwarded-For only as far as the trusted proxies appended it
// (the OpenFaaS gateway, the local gateway on loopback), never the
// leftmost entry a sender can write; the peer when trustForwarded is off.
func clientAddr(r *http.Request, trusted []netip.Prefix, trustForwarded bool) string {
	if !trustForwarded {
		trusted = nil
	}
	a := httpx.ClientIP(r, trusted)
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}

// limited applies the rate limit before anything else is read.
func (a *API) limited(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.limiter.allow(r.Context(), clientAddr(r, a.d.Proxies, a.cfg.TrustForwardedFor)) {
			gateway := strings.TrimPrefix(r.URL.Path, "/")
			webhooksTotal.WithLabelValues(gateway, "rate_limited").Inc()
			problem.Write(w, r, &apperr.Error{Code: apperr.RateLimited, RetryAfter: time.Second,
				Detail: "too many webhook deliveries from this address; retry after a second"})
			return
		}
		next.ServeHTTP(w, r)
	})
}
