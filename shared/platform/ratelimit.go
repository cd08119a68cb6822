package platform

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/ratelimit"
)

// RateLimitConfig is the per-caller rate limit of every route a function
// serves through Mux (docs/security.md, "Rate limits"). A limit is
// "<rate>/<s|m|h>:<burst>". Buckets are per function: a caller's reads of
// one function do not spend its allowance at another.
type RateLimitConfig struct {
	// Mode is "on" or "off". The zero Config (tests that build it
	// directly) limits nothing; Load's default turns limiting on.
	Mode string `envconfig:"RATE_LIMIT" default:"on"`
	// Per principal (JWT sub) and route class.
	Read  string `envconfig:"RATE_LIMIT_READ" default:"300/s:600"`
	Write string `envconfig:"RATE_LIMIT_WRITE" default:"100/s:200"`
	Money string `envconfig:"RATE_LIMIT_MONEY" default:"50/s:100"`
	// Address is per client address (an IPv6 client per /64), across
	// classes, authenticated or not: it runs before authentication.
	Address string `envconfig:"RATE_LIMIT_ADDRESS" default:"600/s:1200"`
	// ServiceFactor multiplies a service principal's limits: one service
	// token speaks for many users (the kafka-trigger's deliveries are
	// never limited at all).
	ServiceFactor int `envconfig:"RATE_LIMIT_SERVICE_FACTOR" default:"10"`
}

// rateLimits is a function's parsed RateLimitConfig.
type rateLimits struct {
	limiter *ratelimit.Limiter
	class   map[Class]ratelimit.Limit
	address ratelimit.Limit
	service int
	prefix  string // of every key: the function's name
}

// newRateLimits parses cfg; nil means limiting is off.
func newRateLimits(d *Deps) (*rateLimits, error) {
	cfg := d.Config.RateLimit
	switch strings.ToLower(strings.TrimSpace(cfg.Mode)) {
	case "", "off":
		return nil, nil
	case "on":
	default:
		return nil, fmt.Errorf("RATE_LIMIT=%q: want on or off", cfg.Mode)
	}
	rl := &rateLimits{class: map[Class]ratelimit.Limit{}, service: max(cfg.ServiceFactor, 1), prefix: d.Name + ":"}
	var problems []string
	for _, c := range []struct {
		env  string
		spec string
		dst  func(ratelimit.Limit)
	}{
		{"RATE_LIMIT_READ", cfg.Read, func(l ratelimit.Limit) { rl.class[Read] = l }},
		{"RATE_LIMIT_WRITE", cfg.Write, func(l ratelimit.Limit) { rl.class[Write] = l }},
		{"RATE_LIMIT_MONEY", cfg.Money, func(l ratelimit.Limit) { rl.class[Money] = l }},
		{"RATE_LIMIT_ADDRESS", cfg.Address, func(l ratelimit.Limit) { rl.address = l }},
	} {
		l, err := ratelimit.ParseLimit(c.spec)
		if err != nil {
			problems = append(problems, c.env+": "+err.Error())
			continue
		}
		c.dst(l)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("configuration is invalid:\n  - %s", strings.Join(problems, "\n  - "))
	}
	rl.limiter = ratelimit.New(d.Redis, d.Config.Redis.Prefix+"rl:", ratelimit.DefaultTimeout)
	return rl, nil
}

// limit wraps h, with authn (the route's access check; nil for Public)
// between two buckets: per client address outside authentication, so a
// flood of bad tokens is limited too, and per principal and class inside
// it. Delivery routes are never limited: they are the kafka-trigger's
// signed deliveries, and throttling them would only delay events.
func (d *Deps) limit(rt Route, h http.Handler, authn func(http.Handler) http.Handler) http.Handler {
	rl := d.rateLimits
	if rl == nil || rt.Access == Delivery {
		if authn != nil {
			h = authn(h)
		}
		return h
	}
	class := rt.RateClass()
	perClass, ok := rl.class[class]
	if !ok {
		panic(fmt.Sprintf("platform: route %q has rate class %q", rt.Pattern, class))
	}
	keyPrefix := rl.prefix + "p:" + string(class) + ":"
	inner := h
	perPrincipal := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok {
			inner.ServeHTTP(w, r)
			return
		}
		l := perClass
		if p.Role == auth.RoleService {
			l = l.Times(rl.service)
		}
		res := rl.limiter.Allow(r.Context(), keyPrefix+p.Subject, l)
		if !res.Allowed {
			deny(w, r, res, "too many requests from this principal")
			return
		}
		if tighter(w.Header(), res) {
			setHeaders(w.Header(), res)
		}
		inner.ServeHTTP(w, r)
	}))
	next := perPrincipal
	if authn != nil {
		next = authn(perPrincipal)
	}
	addrPrefix := rl.prefix + "a:"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := rl.limiter.Allow(r.Context(), addrPrefix+addressKey(httpx.ClientIP(r, d.Proxies)), rl.address)
		if !res.Allowed {
			deny(w, r, res, "too many requests from this address")
			return
		}
		setHeaders(w.Header(), res)
		next.ServeHTTP(w, r)
	})
}

// addressKey is a client's bucket: its address, or its /64 for IPv6 (one
// subscriber holds a whole /64 and could rotate through it).
func addressKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// deny answers 429 rate_limited with Retry-After and the bucket's headers.
func deny(w http.ResponseWriter, r *http.Request, res ratelimit.Result, detail string) {
	setHeaders(w.Header(), res)
	problem.Write(w, r, &problem.Error{Code: problem.RateLimited, Detail: detail + "; retry after Retry-After seconds", RetryAfter: res.Retry})
}

// setHeaders writes the IETF draft's RateLimit-Limit (the burst),
// RateLimit-Remaining and RateLimit-Reset (seconds until the bucket is
// full, rounded up).
func setHeaders(h http.Header, res ratelimit.Result) {
	h["Ratelimit-Limit"] = []string{strconv.Itoa(res.Limit.Burst)}
	h["Ratelimit-Remaining"] = []string{strconv.Itoa(res.Remaining)}
	h["Ratelimit-Reset"] = []string{strconv.FormatInt(ceilSeconds(res.Reset), 10)}
}

// tighter reports whether res leaves fewer requests than the bucket whose
// headers h already holds: a response reports the bucket nearest its end.
func tighter(h http.Header, res ratelimit.Result) bool {
	v := h["Ratelimit-Remaining"]
	if len(v) == 0 {
		return true
	}
	n, err := strconv.Atoi(v[0])
	return err != nil || res.Remaining < n
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
