// Package gateway is billfn's local function gateway. It behaves like the
// OpenFaaS gateway for everything billfn and its users touch:
//
//   - /function/<name>/<path> reverse-proxies to the function over a
//     keep-alive connection pool: method, path, query, headers, status and
//     body pass through, streamed (a response without a length is flushed
//     as it arrives); X-Call-Id, X-Start-Time and X-Duration-Seconds are set
//     and X-Forwarded-For/-Host added, as OpenFaaS does;
//   - /async-function/<name>/<path> answers 202 Accepted with X-Call-Id at
//     once and invokes the function later from a queue (Config.Queue, which
//     cmd/stack keeps in Postgres so a crash loses nothing; in memory
//     without one), posting
//     the result to X-Callback-Url when given (with X-Function-Status,
//     X-Function-Name, X-Call-Id and X-Duration-Seconds, as the OpenFaaS
//     queue-worker does) — only to a public host or one on
//     Config.CallbackAllowedHosts, without following redirects (callback.go);
//   - /system/*, behind basic auth (Config.SystemUser, SystemPassword), is
//     the OpenFaaS provider API (system.go) in faas-provider's JSON: list,
//     deploy, update, remove and scale functions, secrets, logs, info,
//     namespaces — the writes through Config.Provider;
//   - each function has a ReplicaSet (replicas.go): a call goes to the
//     ready replica with the fewest calls in flight, waits up to
//     Config.HoldFor when none is ready, and wakes a function scaled to
//     zero (Waker); a call whose replica died before answering goes to
//     another replica only when it is idempotent (GET, HEAD, or with a
//     non-empty Idempotency-Key), else it is a 502;
//   - /healthz, and /metrics with gateway_function_invocation_total and
//     gateway_functions_seconds like the OpenFaaS gateway's, and per
//     replica gateway_replica_invocations_total and gateway_replica_inflight.
//
// Errors are RFC 9457 problem documents: an unknown function is 404, a
// function that is not running 503 (with Retry-After), a function that
// failed mid-response 502, one that ran out of time 504.
package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/billfn/billfn/shared/egress"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/requestid"
	"github.com/billfn/billfn/shared/telemetry"
)

// Namespace is the one function namespace, as OpenFaaS names it.
const Namespace = "openfaas-fn"

// BadGateway is the problem code of a function that failed before answering.
const BadGateway = problem.BadGateway

// Resources mirror faas-provider's FunctionResources.
type Resources struct {
	Memory string `json:"memory,omitempty"`
	CPU    string `json:"cpu,omitempty"`
}

// FunctionStatus is one entry of /system/functions, as faas-provider's
// types.FunctionStatus encodes it.
type FunctionStatus struct {
	Name                   string             `json:"name"`
	Image                  string             `json:"image"`
	Namespace              string             `json:"namespace,omitempty"`
	EnvProcess             string             `json:"envProcess,omitempty"`
	EnvVars                map[string]string  `json:"envVars,omitempty"`
	Constraints            []string           `json:"constraints,omitempty"`
	Secrets                []string           `json:"secrets,omitempty"`
	Labels                 *map[string]string `json:"labels,omitempty"`
	Annotations            *map[string]string `json:"annotations,omitempty"`
	Limits                 *Resources         `json:"limits,omitempty"`
	Requests               *Resources         `json:"requests,omitempty"`
	ReadOnlyRootFilesystem bool               `json:"readOnlyRootFilesystem,omitempty"`
	InvocationCount        float64            `json:"invocationCount,omitempty"`
	Replicas               uint64             `json:"replicas,omitempty"`
	AvailableReplicas      uint64             `json:"availableReplicas,omitempty"`
	CreatedAt              time.Time          `json:"createdAt,omitempty"`
}

// Function is a function the gateway routes to.
type Function struct {
	Status FunctionStatus // what /system/functions shows; Status.Name is the route name
	// Replicas are the function's processes (a provider's); nil: one
	// replica at Addr, always taken as ready.
	Replicas *ReplicaSet
	Addr     string // host:port of the single replica when Replicas is nil
	// State reports the function's replicas (desired), how many are
	// ready, and when the function was deployed. Nil means always one ready.
	State func() (replicas, available uint64, createdAt time.Time)
	// Generation changes whenever the process at Addr is replaced (it
	// died, it was restarted), so pooled connections to the old one are
	// dropped instead of failing a call. Nil: connections are only dropped
	// when they fail or stay idle for a minute.
	Generation func() uint64
}

// Config configures a Gateway.
type Config struct {
	Functions []Function
	// UpstreamTimeout bounds one proxied call (OpenFaaS upstream_timeout).
	UpstreamTimeout time.Duration
	// AsyncWorkers invoke queued requests concurrently; AsyncQueue bounds
	// the queue (503 when full); AsyncMaxBody bounds a queued body.
	AsyncWorkers int
	AsyncQueue   int
	AsyncMaxBody int64
	// CallbackAllowedHosts are the hosts an /async-function/ call's
	// X-Callback-Url may name although they are not public (loopback,
	// private, link-local, ...): "host" (any port) or "host:port". Nothing
	// else is ever called back, and a public address only when
	// CallbackPublicHosts is set (see callback.go).
	CallbackAllowedHosts []string
	// CallbackPublicHosts lets a callback go to any host that resolves
	// only to public addresses as well as to the allowlist
	// (CALLBACK_PUBLIC_HOSTS=true). Off by default: only the allowlist.
	CallbackPublicHosts bool
	// Queue keeps /async-function calls durably (nil: in memory, lost
	// when the gateway stops).
	Queue Queue
	// Provider deploys, updates, scales and removes functions and keeps
	// the secrets and logs (the /system API's writes); nil: /system is
	// read-only.
	Provider Provider
	// HoldFor is how long a call waits for a ready replica when the
	// function has none (it is starting, restarting or being replaced)
	// before the gateway tries one anyway (503 when it is not listening).
	// Default 30 s.
	HoldFor time.Duration
	// SystemUser and SystemPassword protect /system/ with basic auth as
	// the OpenFaaS gateway does (secrets basic-auth-user and
	// basic-auth-password); without them /system/ is closed to everyone.
	SystemUser, SystemPassword string
	Logger                     *slog.Logger
}

type backend struct {
	fn          Function
	rs          *ReplicaSet
	invocations *atomic.Uint64
}

// Gateway is an http.Handler; Close stops the async workers.
type Gateway struct {
	cfg       Config
	regMu     sync.Mutex                          // serializes Put and Remove
	backends  atomic.Pointer[map[string]*backend] // copied on write
	transport *http.Transport
	metrics   *metrics
	log       *slog.Logger

	queue chan *asyncJob
	wake  chan struct{} // a call was put in the durable queue
	// started is closed by StartQueue: the durable queue's workers wait for
	// it, so calls left from before a restart find their functions.
	started   chan struct{}
	startOnce sync.Once
	stop      chan struct{}

	callbackGuard  *egress.Guard
	callbackClient *http.Client
	// lookup resolves a callback's host (net.DefaultResolver; tests replace it).
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)

	workers  sync.WaitGroup
	closeOne sync.Once
}

// New builds a gateway and starts its async workers.
func New(cfg Config) *Gateway {
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 60 * time.Second
	}
	if cfg.AsyncWorkers == 0 {
		cfg.AsyncWorkers = 4
	}
	if cfg.AsyncQueue == 0 {
		cfg.AsyncQueue = 1024
	}
	if cfg.AsyncMaxBody == 0 {
		cfg.AsyncMaxBody = 10 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HoldFor == 0 {
		cfg.HoldFor = 30 * time.Second
	}
	g := &Gateway{
		cfg: cfg,
		transport: &http.Transport{
			Proxy:                 nil, // never route function calls through an HTTP proxy
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          0, // no global cap; per host below
			MaxIdleConnsPerHost:   512,
			IdleConnTimeout:       90 * time.Second, // below the functions' idle_timeout (120 s)
			DisableCompression:    true,             // pass Accept-Encoding and bodies through untouched
			ExpectContinueTimeout: time.Second,
			ResponseHeaderTimeout: cfg.UpstreamTimeout,
			WriteBufferSize:       16 << 10,
			ReadBufferSize:        16 << 10,
		},
		metrics: newMetrics(),
		log:     cfg.Logger,
		queue:   make(chan *asyncJob, cfg.AsyncQueue),
		wake:    make(chan struct{}, 1),
		started: make(chan struct{}),
		stop:    make(chan struct{}),
	}
	g.metrics.reg.MustRegister(replicaCollector{g})
	g.callbackGuard = g.newCallbackGuard(cfg.CallbackAllowedHosts)
	g.callbackClient = g.newCallbackClient()
	g.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
	empty := map[string]*backend{}
	g.backends.Store(&empty)
	for _, f := range cfg.Functions {
		g.Put(f)
	}
	for i := 0; i < cfg.AsyncWorkers; i++ {
		g.workers.Add(1)
		go g.asyncWorker()
	}
	return g
}

// StartQueue lets the workers of the durable queue (Config.Queue) begin,
// once the provider has Put its functions.
func (g *Gateway) StartQueue() { g.startOnce.Do(func() { close(g.started) }) }

// Close stops accepting async work and waits for the workers (bounded by ctx).
func (g *Gateway) Close(ctx context.Context) {
	g.closeOne.Do(func() { close(g.stop) })
	done := make(chan struct{})
	go func() { g.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	g.transport.CloseIdleConnections()
	for _, b := range *g.backends.Load() {
		b.rs.closeIdle()
	}
}

// Put adds a function or replaces one of the same name (its invocation
// count carries over).
func (g *Gateway) Put(f Function) {
	rs := f.Replicas
	if rs == nil {
		rs = NewReplicaSet(Endpoint{Addr: f.Addr, Generation: f.Generation})
	}
	rs.setWait(g.cfg.UpstreamTimeout)
	g.regMu.Lock()
	defer g.regMu.Unlock()
	old := *g.backends.Load()
	next := make(map[string]*backend, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	b := &backend{fn: f, rs: rs, invocations: new(atomic.Uint64)}
	if o := old[f.Status.Name]; o != nil {
		b.invocations = o.invocations
		if o.rs != rs {
			defer o.rs.closeIdle()
		}
	}
	next[f.Status.Name] = b
	g.backends.Store(&next)
}

// Remove takes a function off the gateway: calls to it are 404 from now.
func (g *Gateway) Remove(name string) {
	g.regMu.Lock()
	defer g.regMu.Unlock()
	old := *g.backends.Load()
	o := old[name]
	if o == nil {
		return
	}
	next := make(map[string]*backend, len(old))
	for k, v := range old {
		if k != name {
			next[k] = v
		}
	}
	g.backends.Store(&next)
	o.rs.closeIdle()
}

func (g *Gateway) backend(name string) *backend { return (*g.backends.Load())[name] }

// replicaFor picks the replica a call goes to: the ready one with the
// fewest calls in flight; when none is ready, it waits up to HoldFor (or
// ctx) for one, then takes any. Nil: the function has no replica at all.
func (g *Gateway) replicaFor(ctx context.Context, b *backend) *replica {
	if r := b.rs.pick(nil); r != nil {
		return r
	}
	if b.rs.Len() == 0 {
		if w, ok := g.cfg.Provider.(Waker); ok {
			go w.Wake(b.fn.Status.Name) // a cold start: the call waits for it below
		}
	}
	if b.rs.Len() > 0 || g.cfg.Provider != nil {
		hctx, cancel := context.WithTimeout(ctx, g.cfg.HoldFor)
		r := b.rs.await(hctx)
		cancel()
		if r != nil {
			return r
		}
	}
	return b.rs.any()
}

// Registry returns the gateway's Prometheus registry.
func (g *Gateway) Registry() *prometheus.Registry { return g.metrics.reg }

// ServeHTTP routes a request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/function/"):
		g.invoke(w, r, "/function/")
	case strings.HasPrefix(p, "/async-function/"):
		g.enqueue(w, r)
	case p == "/healthz":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "OK")
	case p == "/metrics":
		promhttp.HandlerFor(g.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP(w, r)
	case p == "/system" || strings.HasPrefix(p, "/system/"):
		g.system(w, r)
	default:
		problem.Write(w, r, problem.New(problem.NotFound, "no gateway route for %s; functions are under /function/<name>/", p))
	}
}

// route splits /function/<name>/<rest> into the backend and the upstream
// path (decoded and escaped forms).
func (g *Gateway) route(r *http.Request, prefix string) (b *backend, name, path, rawPath string) {
	rest := r.URL.Path[len(prefix):]
	name, _, _ = strings.Cut(rest, "/")
	cut := len(prefix) + len(name)
	// OpenFaaS also routes <name>.<namespace>; there is one namespace here.
	if fn, ns, ok := strings.Cut(name, "."); ok && ns == Namespace {
		name = fn
	}
	b = g.backend(name)
	if b == nil {
		return nil, name, "", ""
	}
	path = r.URL.Path[cut:]
	if r.URL.RawPath != "" && len(r.URL.RawPath) >= cut {
		rawPath = r.URL.RawPath[cut:]
	}
	if path == "" {
		path = "/"
	}
	if rawPath == "" || rawPath == path {
		rawPath = ""
	}
	return b, name, path, rawPath
}

// Hop-by-hop headers (RFC 9110 7.6.1) are not forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		if slices.Contains(hopHeaders, k) {
			continue
		}
		dst[k] = vv
	}
	for _, c := range src["Connection"] {
		for _, f := range strings.Split(c, ",") {
			if f = strings.TrimSpace(f); f != "" {
				dst.Del(f)
			}
		}
	}
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (g *Gateway) invoke(w http.ResponseWriter, r *http.Request, prefix string) {
	start := time.Now()
	// The call id is the request id the functions keep (shared/requestid).
	callID := requestid.FirstUsable(r.Header.Get("X-Call-Id"))
	startTime := strconv.FormatInt(start.UnixNano(), 10)
	wh := w.Header()
	wh["X-Call-Id"] = []string{callID}
	wh["X-Start-Time"] = []string{startTime}

	b, name, path, rawPath := g.route(r, prefix)
	if b == nil {
		g.fail(w, r, callID, problem.New(problem.NotFound, "function %q is not deployed", name))
		return
	}
	rep := g.replicaFor(r.Context(), b)
	if rep == nil {
		if r.Context().Err() == nil {
			g.fail(w, r, callID, &problem.Error{Code: problem.Unavailable, Detail: "function " + name + " has no replicas (scaled to 0); retry", RetryAfter: time.Second})
			g.metrics.observe(name, http.StatusServiceUnavailable, time.Since(start))
		}
		return
	}
	b.rs.begin(rep)
	defer func() { rep.inflight.Add(-1) }()
	// No per-request timer: the transport's ResponseHeaderTimeout is the
	// upstream timeout, and a client that goes away cancels r.Context().
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "", nil)
	if err != nil {
		g.fail(w, r, callID, problem.New(problem.BadRequest, "method %q", r.Method))
		return
	}
	out.URL = &url.URL{Scheme: "http", Host: rep.up.addr, Path: path, RawPath: rawPath, RawQuery: r.URL.RawQuery}
	out.Host = rep.up.addr
	out.Header = make(http.Header, len(r.Header)+5)
	// A small body of known length is read first, so the call can take the
	// lean connection pool and be replayed on a fresh connection; larger
	// or streamed bodies go through http.Transport as they come.
	var body []byte
	lean := r.ContentLength >= 0 && r.ContentLength <= maxBuffered
	if lean && r.ContentLength > 0 {
		bp := bodyPool.Get().(*[]byte)
		defer bodyPool.Put(bp)
		body = (*bp)[:r.ContentLength]
		if _, err := io.ReadFull(r.Body, body); err != nil {
			g.fail(w, r, callID, problem.New(problem.BadRequest, "the request body ended early: %v", err))
			return
		}
		out.ContentLength = r.ContentLength
	} else if !lean {
		out.Body, out.ContentLength = r.Body, r.ContentLength
	}
	copyHeader(out.Header, r.Header)
	if lean {
		delete(out.Header, "Expect") // the body is already here
	}
	if prior := out.Header["X-Forwarded-For"]; len(prior) > 0 {
		out.Header["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + clientIP(r)}
	} else {
		out.Header["X-Forwarded-For"] = []string{clientIP(r)}
	}
	if _, ok := out.Header["X-Forwarded-Host"]; !ok && r.Host != "" {
		out.Header["X-Forwarded-Host"] = []string{r.Host}
	}
	out.Header["X-Call-Id"] = []string{callID}
	out.Header["X-Start-Time"] = []string{startTime}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // do not let the transport add Go's
	}
	// The gateway starts the trace (or continues the caller's): the
	// function's request is the child of the gateway's span. Without
	// tracing the caller's traceparent passes through as any header.
	// A span that is not sampled gets no name, attributes or status: only
	// its context travels on (in the traceparent). A caller that decided
	// not to sample gets no span at all: its traceparent passes on as it
	// came, as the runtime's does (a kafka-trigger's unsampled batches),
	// without building a context for it.
	if telemetry.Enabled() && !telemetry.UnsampledCaller(r.Header) {
		ctx, span := telemetry.Tracer().Start(telemetry.Extract(r.Context(), r.Header), "gateway", telemetry.ServerSpan...)
		telemetry.Inject(ctx, out.Header)
		if span.IsRecording() {
			span.SetName(r.Method + " /function/" + name)
			span.SetAttributes(attribute.String("http.request.method", r.Method),
				attribute.String("faas.invoked_name", name), attribute.String("url.path", r.URL.Path))
			sw := &httpx.StatusWriter{ResponseWriter: w}
			w = sw
			defer func() {
				span.SetAttributes(attribute.Int("http.response.status_code", sw.Status))
				if sw.Status >= 500 {
					span.SetStatus(codes.Error, http.StatusText(sw.Status))
				}
				span.End()
			}()
		}
	}

	b.invocations.Add(1)
	var res *http.Response
	if lean {
		gen := rep.gen()
		res, err = rep.up.roundTrip(out, body)
		for tries := 0; err != nil && tries < 3 && r.Context().Err() == nil; tries++ {
			var next *replica
			switch {
			case isDialError(err):
				// A replica that refused the connection never saw the
				// call: another ready one takes it, whatever the method.
				next = b.rs.pick(rep)
			case !isTimeout(err) && replayable(out):
				// The replica died with the call in flight, so it may have
				// acted on it: only an idempotent call (GET, HEAD, or one
				// with an Idempotency-Key, which the functions answer with
				// the stored result) goes again, to another ready replica
				// or to this one once restarted. Anything else is a 502.
				// The request sent is judged, not the client's: a key the
				// client named in Connection was never forwarded.
				hctx, cancel := context.WithTimeout(r.Context(), g.cfg.HoldFor)
				next = b.rs.failover(hctx, rep, gen)
				cancel()
				if next != nil {
					g.log.Info("a replica failed with a call in flight; the idempotent call goes to another", "function", name, "from", rep.up.addr, "to", next.up.addr, "method", r.Method, "error", err.Error())
				}
			}
			if next == nil {
				break
			}
			rep.moveTo(next)
			rep, gen = next, next.gen()
			out.URL.Host, out.Host = rep.up.addr, rep.up.addr
			res, err = rep.up.roundTrip(out, body)
		}
	} else {
		res, err = g.transport.RoundTrip(out)
	}
	if err != nil {
		code := g.upstreamError(w, r, callID, name, err)
		g.metrics.observe(name, code, time.Since(start))
		return
	}
	defer res.Body.Close()
	copyHeader(wh, res.Header)
	wh["X-Duration-Seconds"] = []string{strconv.FormatFloat(time.Since(start).Seconds(), 'f', 6, 64)}
	w.WriteHeader(res.StatusCode)
	if r.Method != http.MethodHead {
		copyBody(w, res.Body, res.ContentLength < 0)
	}
	g.metrics.observe(name, res.StatusCode, time.Since(start))
}

// upstreamError answers a failed round trip and returns the status sent.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, callID, name string, err error) int {
	if r.Context().Err() != nil {
		return 499 // the client went away; nobody to answer
	}
	var pe *problem.Error
	var ne net.Error
	switch {
	case isDialError(err):
		pe = &problem.Error{Code: problem.Unavailable, Detail: "function " + name + " is not running; retry", RetryAfter: time.Second, Err: err}
	case errors.As(err, &ne) && ne.Timeout():
		pe = &problem.Error{Code: problem.Timeout, Detail: "function " + name + " did not answer within " + g.cfg.UpstreamTimeout.String(), Err: err}
	default:
		pe = &problem.Error{Code: BadGateway, Detail: "function " + name + " failed before answering", Err: err}
	}
	g.fail(w, r, callID, pe)
	return problem.Common.Status(pe)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, callID string, err error) {
	w.Header().Set(requestid.Header, callID) // so the problem document carries it
	problem.Write(w, r, err)
}

var (
	bufPool  = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	bodyPool = sync.Pool{New: func() any { b := make([]byte, maxBuffered); return &b }}
)

// copyBody streams src to w; flush sends each chunk on at once, for
// responses without a length (server-sent events, streamed exports).
func copyBody(w http.ResponseWriter, src io.Reader, flush bool) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var flusher http.Flusher
	if flush {
		flusher, _ = w.(http.Flusher)
	}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// systemAuthorized reports whether r carries the gateway's basic-auth
// credentials. Both are compared in constant time over their SHA-256, so
// neither their content nor their length shows in the timing; a gateway
// without credentials authorizes nobody.
func (g *Gateway) systemAuthorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok || g.cfg.SystemUser == "" || g.cfg.SystemPassword == "" {
		return false
	}
	hu, wu := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(g.cfg.SystemUser))
	hp, wp := sha256.Sum256([]byte(p)), sha256.Sum256([]byte(g.cfg.SystemPassword))
	return subtle.ConstantTimeCompare(hu[:], wu[:])&subtle.ConstantTimeCompare(hp[:], wp[:]) == 1
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		problem.Write(w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

type metrics struct {
	reg         *prometheus.Registry
	invocations *prometheus.CounterVec
	seconds     *prometheus.HistogramVec
	async       *prometheus.CounterVec
	cache       sync.Map // metricKey → metricPair: the hot path skips label hashing
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_function_invocation_total", Help: "Function invocations through the gateway by status code.",
		}, []string{"function_name", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gateway_functions_seconds", Help: "Time to the function's response headers.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"function_name", "code"}),
		async: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_async_invocations_total", Help: "Queued invocations by outcome (accepted, rejected, delivered, failed).",
		}, []string{"function_name", "result"}),
	}
	m.reg.MustRegister(m.invocations, m.seconds, m.async,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// replicaCollector exports each replica's calls and calls in flight,
// read from the replica sets at scrape time (nothing on the hot path).
type replicaCollector struct{ g *Gateway }

var (
	replicaCallsDesc = prometheus.NewDesc("gateway_replica_invocations_total",
		"Calls the gateway sent to one replica (process) of a function, by its address.", []string{"function_name", "replica"}, nil)
	replicaInflightDesc = prometheus.NewDesc("gateway_replica_inflight",
		"Calls in flight to one replica of a function.", []string{"function_name", "replica"}, nil)
)

func (c replicaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- replicaCallsDesc
	ch <- replicaInflightDesc
}

func (c replicaCollector) Collect(ch chan<- prometheus.Metric) {
	for name, b := range *c.g.backends.Load() {
		for _, st := range b.rs.Stats() {
			ch <- prometheus.MustNewConstMetric(replicaCallsDesc, prometheus.CounterValue, float64(st.Calls), name, st.Addr)
			ch <- prometheus.MustNewConstMetric(replicaInflightDesc, prometheus.GaugeValue, float64(st.InFlight), name, st.Addr)
		}
	}
}

type metricKey struct {
	name   string
	status int
}

type metricPair struct {
	count prometheus.Counter
	secs  prometheus.Observer
}

func (m *metrics) observe(name string, status int, d time.Duration) {
	k := metricKey{name, status}
	v, ok := m.cache.Load(k)
	if !ok {
		code := strconv.Itoa(status)
		v, _ = m.cache.LoadOrStore(k, metricPair{m.invocations.WithLabelValues(name, code), m.seconds.WithLabelValues(name, code)})
	}
	p := v.(metricPair)
	p.count.Inc()
	p.secs.Observe(d.Seconds())
}
