// Package ratelimit is billfn's per-caller rate limit: a GCRA token bucket
// per key in Redis (github.com/go-redis/redis_rate, one Lua script, one
// round trip), shared by every replica of a function.
//
// Redis down or slow: limiting degrades to per replica, it never fails
// closed and never fully open. Each Allow waits for Redis at most Timeout
// (50 ms by default); on an error or a timeout the same limit is applied by
// an in-process token bucket (golang.org/x/time/rate) for the same key, and
// Redis is left alone for a second before it is tried again, so an outage
// costs no latency. Across N replicas a caller may then get up to N times
// its limit: a Redis outage must not take the money API down, and a flood
// must still be slowed where it lands. Each fallback decision is counted in
// billfn_ratelimit_fallback_total and logged at warn at most once a minute.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Limit is a token bucket: Rate requests per Period on average, Burst at once.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// ParseLimit reads "<rate>/<unit>[:<burst>]", unit s, m or h: "100/s:200"
// is 100 requests a second with bursts of 200. Without a burst the burst is
// the rate.
func ParseLimit(s string) (Limit, error) {
	spec, burst, hasBurst := strings.Cut(strings.TrimSpace(s), ":")
	n, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return Limit{}, fmt.Errorf("rate limit %q: want <rate>/<s|m|h>[:<burst>], e.g. 100/s:200", s)
	}
	var l Limit
	switch strings.TrimSpace(unit) {
	case "s":
		l.Period = time.Second
	case "m":
		l.Period = time.Minute
	case "h":
		l.Period = time.Hour
	default:
		return Limit{}, fmt.Errorf("rate limit %q: the unit is s, m or h", s)
	}
	var err error
	if l.Rate, err = strconv.Atoi(strings.TrimSpace(n)); err != nil || l.Rate <= 0 {
		return Limit{}, fmt.Errorf("rate limit %q: the rate is a positive integer", s)
	}
	l.Burst = l.Rate
	if hasBurst {
		if l.Burst, err = strconv.Atoi(strings.TrimSpace(burst)); err != nil || l.Burst <= 0 {
			return Limit{}, fmt.Errorf("rate limit %q: the burst is a positive integer", s)
		}
	}
	return l, nil
}

// MustParse is ParseLimit for constants; it panics on a bad spec.
func MustParse(s string) Limit {
	l, err := ParseLimit(s)
	if err != nil {
		panic(err)
	}
	return l
}

// String is the ParseLimit form.
func (l Limit) String() string {
	unit := "s"
	switch l.Period {
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return fmt.Sprintf("%d/%s:%d", l.Rate, unit, l.Burst)
}

// Times is l with its rate and burst multiplied by f (a service
// principal's allowance).
func (l Limit) Times(f int) Limit {
	if f <= 1 {
		return l
	}
	l.Rate *= f
	l.Burst *= f
	return l
}

// perSecond is the bucket's refill rate.
func (l Limit) perSecond() float64 { return float64(l.Rate) / l.Period.Seconds() }

// Result is one decision.
type Result struct {
	Allowed   bool
	Limit     Limit
	Remaining int           // requests that could pass right now
	Retry     time.Duration // when denied: until one request may pass
	Reset     time.Duration // until the bucket is full again
	Local     bool          // decided by the per-replica fallback
}

var fallbacks = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "billfn_ratelimit_fallback_total",
	Help: "Rate-limit decisions taken by the per-replica limiter because Redis was unavailable or slow.",
})

// Collectors returns the package's metrics for a function's registry.
func Collectors() []prometheus.Collector { return []prometheus.Collector{fallbacks} }

// Limiter decides per key. It is safe for concurrent use.
type Limiter struct {
	rl      *redis_rate.Limiter
	prefix  string
	timeout time.Duration

	downUntil atomic.Int64 // unix nanos: skip Redis until then
	warnedAt  atomic.Int64 // unix nanos of the last warning

	mu    sync.Mutex
	local map[string]*localBucket
	swept time.Time
}

type localBucket struct {
	lim   *rate.Limiter
	limit Limit
	used  time.Time
}

// DefaultTimeout is how long a decision waits for Redis before the
// per-replica limiter takes it.
const DefaultTimeout = 50 * time.Millisecond

// breakerOpen is how long after a Redis failure Redis is not tried.
const breakerOpen = time.Second

// New returns a limiter keeping its buckets in rdb under prefix (Redis
// keys are "rate:" + prefix + key). timeout ≤ 0 means DefaultTimeout.
func New(rdb *goredis.Client, prefix string, timeout time.Duration) *Limiter {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Limiter{rl: redis_rate.NewLimiter(rdb), prefix: prefix, timeout: timeout, local: map[string]*localBucket{}}
}

// Allow takes one request from key's bucket of limit l.
func (lm *Limiter) Allow(ctx context.Context, key string, l Limit) Result {
	now := time.Now()
	if now.UnixNano() >= lm.downUntil.Load() {
		// Not the request's own cancellation: a client hanging up is no
		// Redis outage.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lm.timeout)
		res, err := lm.rl.Allow(ctx, lm.prefix+key, redis_rate.Limit{Rate: l.Rate, Burst: l.Burst, Period: l.Period})
		cancel()
		if err == nil {
			r := Result{Allowed: res.Allowed > 0, Limit: l, Remaining: res.Remaining, Reset: max(res.ResetAfter, 0)}
			if !r.Allowed {
				r.Retry = max(res.RetryAfter, time.Millisecond)
			}
			return r
		}
		lm.downUntil.Store(now.Add(breakerOpen).UnixNano())
		lm.warn(ctx, err)
	}
	fallbacks.Inc()
	return lm.allowLocal(now, key, l)
}

// Warm connects to Redis and loads the script, so that the first
// requests do not spend their short timeout on it.
func (lm *Limiter) Warm(ctx context.Context) error {
	_, err := lm.rl.Allow(ctx, lm.prefix+"warm", redis_rate.Limit{Rate: 1, Burst: 1, Period: time.Second})
	return err
}

func (lm *Limiter) warn(ctx context.Context, err error) {
	now := time.Now().UnixNano()
	last := lm.warnedAt.Load()
	if now-last >= int64(time.Minute) && lm.warnedAt.CompareAndSwap(last, now) {
		slog.WarnContext(ctx, "rate limit: Redis unavailable, limiting per replica", "err", err.Error())
	}
}

// allowLocal is the per-replica fallback: the same limit in this process.
func (lm *Limiter) allowLocal(now time.Time, key string, l Limit) Result {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if now.Sub(lm.swept) > time.Minute {
		lm.sweep(now)
	}
	b := lm.local[key]
	if b == nil || b.limit != l {
		b = &localBucket{lim: rate.NewLimiter(rate.Limit(l.perSecond()), l.Burst), limit: l}
		lm.local[key] = b
	}
	b.used = now
	r := Result{Limit: l, Local: true}
	rv := b.lim.ReserveN(now, 1)
	if d := rv.DelayFrom(now); d > 0 {
		rv.CancelAt(now)
		r.Retry = d
	} else {
		r.Allowed = true
	}
	tokens := b.lim.TokensAt(now)
	r.Remaining = max(int(math.Floor(tokens)), 0)
	r.Reset = time.Duration((float64(l.Burst) - tokens) / l.perSecond() * float64(time.Second))
	return r
}

// sweep forgets the buckets that have refilled: they hold no state a new
// bucket would not.
func (lm *Limiter) sweep(now time.Time) {
	lm.swept = now
	for k, b := range lm.local {
		refill := time.Duration(float64(b.limit.Burst) / b.limit.perSecond() * float64(time.Second))
		if now.Sub(b.used) > refill {
			delete(lm.local, k)
		}
	}
}
