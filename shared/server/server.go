// Package server is the runtime every billfn function runs in. It speaks the
// OpenFaaS of-watchdog HTTP contract itself, so no watchdog process sits in
// front of the function:
//
//   - listens on $PORT (default 8080), on every interface unless
//     BILLFN_LISTEN_HOST names one (the local stack: 127.0.0.1);
//   - GET /_/health answers 200 while the process is alive and not draining;
//   - GET /_/ready answers 200 when every dependency check (Postgres, Redis)
//     passes, 503 otherwise or while draining;
//   - GET /metrics serves Prometheus metrics: per-route request count and
//     latency histogram by status, requests in flight, Go runtime and process
//     — to a scraper on the function's port only, never through a gateway;
//   - read_timeout, write_timeout, exec_timeout, max_inflight as the watchdog
//     names them; MAX_BODY_BYTES caps request bodies;
//   - X-Request-Id (or the gateway's X-Call-Id) is passed through or made,
//     echoed on the response and attached to every log line;
//   - a panic becomes a logged 500 problem;
//   - SIGTERM drains: readiness fails, in-flight requests finish, closers run.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/requestid"
	"github.com/billfn/billfn/shared/telemetry"
)

// Config is the runtime's environment, named as the OpenFaaS watchdog names it.
type Config struct {
	Port int `envconfig:"PORT" default:"8080"`
	// Host is the address the function listens on: every interface when
	// empty (a container's pod address); the local stack sets 127.0.0.1,
	// where its gateway calls the functions, so a developer's machine does
	// not offer them to its network.
	Host         string          `envconfig:"BILLFN_LISTEN_HOST"`
	ReadTimeout  config.Duration `envconfig:"read_timeout" default:"10s"`
	WriteTimeout config.Duration `envconfig:"write_timeout" default:"15s"`
	ExecTimeout  config.Duration `envconfig:"exec_timeout" default:"10s"` // deadline of one request's context
	IdleTimeout  config.Duration `envconfig:"idle_timeout" default:"120s"`
	DrainTimeout config.Duration `envconfig:"drain_timeout" default:"10s"` // max wait for in-flight requests on SIGTERM
	MaxInflight  int             `envconfig:"max_inflight" default:"0"`    // 0 = unlimited; above it 429
	MaxBodyBytes int64           `envconfig:"MAX_BODY_BYTES" default:"1048576"`
	LogLevel     string          `envconfig:"LOG_LEVEL" default:"info"`
}

// Check is a readiness check; it returns an error when a dependency is not usable.
type Check struct {
	Name string
	Fn   func(context.Context) error
}

// App is what a function hands to the runtime.
type App struct {
	Name    string       // function name: logs, metrics
	Handler http.Handler // usually an *http.ServeMux with Go 1.22 patterns
	Ready   []Check
	Close   []func(context.Context) // run in order after the listener drained
	// Collectors are extra Prometheus metrics served on /metrics.
	Collectors []prometheus.Collector
}

// GCPercent is the GC target of billfn's processes (the functions and the
// kafka-trigger) unless GOGC is set. Their live heap is a few MB:
// collecting at 4x it instead of 2x costs little memory and, measured on
// process-transaction under load, gave 11% more throughput; in the
// kafka-trigger, whose fetches and deliveries allocate tens of kilobytes
// that die at once, the collector and the scavenger's madvise were a fifth
// of its CPU at the runtime's 100 (make bench's transfers-gateway,
// 2026-12-04).
const GCPercent = 300

// SetGC applies GCPercent unless the environment has GOGC (which the
// runtime applied).
func SetGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}

// Main is a function's whole main: it sets up logging, loads the runtime
// configuration, calls build to wire the function, serves until SIGTERM or
// SIGINT, drains, and exits non-zero on any start-up error with a clear
// message (never a stack trace).
func Main(name string, build func(ctx context.Context) (App, error)) {
	SetGC(os.Getenv)
	var cfg Config
	err := config.Load(&cfg)
	SetupLogging(name, cfg.LogLevel)
	if err != nil {
		fail(name, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	shutdown, err := telemetry.Setup(ctx, name)
	if err != nil {
		fail(name, fmt.Errorf("tracing (OTEL_* environment): %w", err))
	}
	app, err := build(ctx)
	if err != nil {
		fail(name, err)
	}
	app.Name = name
	StartPprof(name)
	err = New(cfg, app).ListenAndServe(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_ = shutdown(sctx) // the last spans
	cancel()
	if err != nil {
		fail(name, err)
	}
}

func fail(name string, err error) {
	slog.Error(name+" cannot start", "err", err.Error())
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}

// Server is one function's HTTP server.
type Server struct {
	cfg      Config
	app      App
	handler  http.Handler
	draining atomic.Bool
	inflight atomic.Int64
	metrics  *metrics
}

// New builds the server; Handler() is usable directly in tests.
func New(cfg Config, app App) *Server {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	s := &Server{cfg: cfg, app: app, metrics: newMetrics(app.Name)}
	for _, c := range app.Collectors {
		// A collector shared by several servers in one process (tests)
		// is already registered: that is fine.
		if err := s.metrics.reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err)
			}
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_/health", s.health)
	mux.HandleFunc("GET /_/ready", s.ready)
	mux.Handle("GET /metrics", scraperOnly(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})))
	mux.Handle("/", s.instrument(routes(app.Handler)))
	s.handler = s.recover(s.requestID(cleanPaths(mux)))
	return s
}

// Handler is the full middleware stack with the function's routes.
func (s *Server) Handler() http.Handler { return s.handler }

// Registry is the server's Prometheus registry, for a function's own metrics.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// ListenAndServe serves on $PORT until ctx is done, then drains.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w (is another process using it? set PORT; BILLFN_LISTEN_HOST %q)", s.cfg.Port, err, s.cfg.Host)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then drains.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadTimeout:       s.cfg.ReadTimeout.D(),
		ReadHeaderTimeout: s.cfg.ReadTimeout.D(),
		WriteTimeout:      s.cfg.WriteTimeout.D(),
		IdleTimeout:       s.cfg.IdleTimeout.D(),
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	slog.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.draining.Store(true)
	slog.Info("draining", "inflight", s.inflight.Load())
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout.D())
	defer cancel()
	err := srv.Shutdown(dctx)
	for _, c := range s.app.Close {
		c(dctx)
	}
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	slog.Info("stopped")
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		problem.Write(w, r, problem.New(problem.Unavailable, "draining"))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("OK"))
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		problem.Write(w, r, problem.New(problem.Unavailable, "draining"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	// Every check runs, at the same time: a starting function waits for
	// its slowest dependency (a first Postgres connection) instead of the
	// sum of them. The answer names the first failing check in App order.
	errs := make([]error, len(s.app.Ready))
	var wg sync.WaitGroup
	for i, c := range s.app.Ready {
		wg.Go(func() { errs[i] = c.Fn(ctx) })
	}
	wg.Wait()
	for i, c := range s.app.Ready {
		if errs[i] != nil {
			problem.Write(w, r, &problem.Error{Code: problem.Unavailable, Detail: c.Name + " is not reachable", Err: errs[i]})
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("OK"))
}

// proxyHeaders are the headers a proxy in front of a function adds to every
// request it forwards: the local gateway and OpenFaaS's set X-Forwarded-For,
// X-Forwarded-Host and X-Call-Id (after copying the client's headers, so a
// client's Connection header cannot take them off), Kourier's Envoy
// X-Forwarded-For and X-Forwarded-Proto; Forwarded is RFC 7239's.
var proxyHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Call-Id"}

// scraperOnly serves /metrics only to a request that came straight to the
// function's port (Prometheus, which sends none of proxyHeaders). The
// gateways forward every path of /function/<name>/ (and Knative every path
// of the function's host), so without it anyone could read the function's
// counters through them: the merchant's volumes of transfers, payments,
// declines and emails. A proxied request is answered as a path that does
// not exist.
func scraperOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range proxyHeaders {
			if _, ok := r.Header[h]; ok {
				problem.Write(w, r, problem.New(problem.NotFound, "no route for %s %s", r.Method, r.URL.Path))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// routes turns the mux's plain-text 404/405 into problem documents.
func routes(h http.Handler) http.Handler {
	mux, ok := h.(*http.ServeMux)
	if !ok {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			rec := &statusOnly{header: http.Header{}}
			mux.ServeHTTP(rec, r)
			if rec.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", rec.header.Get("Allow"))
				problem.Write(w, r, problem.New(problem.MethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
				return
			}
			if rec.status != http.StatusNotFound && rec.status != 0 {
				// A redirect (trailing slash, cleaned path): let the mux answer.
				mux.ServeHTTP(w, r)
				return
			}
			problem.Write(w, r, problem.New(problem.NotFound, "no route for %s %s", r.Method, r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// cleanPaths answers a path that is not clean with a 404 problem that
// says so. The mux would redirect to the cleaned path: behind the gateway
// its Location drops /function/<name>, and an empty segment is most often
// an id variable left unset (curl -s prints an empty 307 as nothing).
func cleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !clean(r.URL.Path) {
			problem.Write(w, r, problem.New(problem.NotFound, "no route for %s %s: the path is not clean (an empty, . or .. segment; is an id in the URL empty?)", r.Method, r.URL.Path))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clean reports whether p is already in the form the mux would redirect
// to: no empty, . or .. segment (a trailing slash is kept).
func clean(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

type statusOnly struct {
	header http.Header
	status int
}

func (s *statusOnly) Header() http.Header         { return s.header }
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int)        { s.status = code }

func (s *Server) recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				slog.ErrorContext(r.Context(), "panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()),
					"method", r.Method, "path", r.URL.Path)
				s.metrics.panics.Inc()
				problem.Write(w, r, errors.New("panic in handler"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// RequestID returns the request id of ctx ("" outside a request).
func RequestID(ctx context.Context) string { return requestid.From(ctx) }

// WithRequestID returns ctx carrying id (for work started outside HTTP).
func WithRequestID(ctx context.Context, id string) context.Context { return requestid.With(ctx, id) }

// requestID keeps the caller's X-Request-Id (or the gateway's X-Call-Id)
// when usable, else makes one (shared/requestid), and answers with it.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := requestid.FirstUsable(r.Header.Get(requestid.Header), r.Header.Get("X-Call-Id"))
		w.Header().Set(requestid.Header, id)
		if c := r.Header.Get("X-Call-Id"); requestid.Usable(c) {
			w.Header().Set("X-Call-Id", c)
		}
		next.ServeHTTP(w, r.WithContext(requestid.With(r.Context(), id)))
	})
}

// instrument applies max_inflight, the body limit, the exec deadline and
// records metrics labelled by the matched route pattern.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		if s.cfg.MaxInflight > 0 && n > int64(s.cfg.MaxInflight) {
			problem.Write(w, r, &problem.Error{Code: problem.RateLimited, Detail: "too many requests in flight", RetryAfter: time.Second})
			s.metrics.observe("overload", r.Method, http.StatusTooManyRequests, 0)
			return
		}
		s.metrics.inflight.Inc()
		defer s.metrics.inflight.Dec()
		start := time.Now()
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		if strings.ContainsRune(r.URL.Path, 0) || strings.Contains(r.URL.RawQuery, "%00") || strings.ContainsRune(r.URL.RawQuery, 0) {
			// No id, filter or cursor holds U+0000, and Postgres text cannot.
			problem.Write(w, r, problem.New(problem.BadRequest, "the URL may not hold U+0000 (%%00)"))
			s.metrics.observe("unmatched", r.Method, http.StatusBadRequest, 0)
			return
		}
		if !utf8.ValidString(r.URL.Path) || !queryIsUTF8(r.URL.RawQuery) {
			// Nor bytes that are not UTF-8 (%FF, an encoded surrogate):
			// Postgres text refuses them too, and the idempotency
			// middleware records every write's path.
			problem.Write(w, r, problem.New(problem.BadRequest, "the URL's path and query must be UTF-8 once percent-decoded"))
			s.metrics.observe("unmatched", r.Method, http.StatusBadRequest, 0)
			return
		}
		// The caller's trace continues here (W3C traceparent); the span is
		// named by the route pattern once the mux has matched it. A caller
		// that decided not to sample gets no span of ours: its context
		// carries the ids on.
		// The trace and the exec deadline make one context, and so one
		// copy of the request.
		var span trace.Span
		ctx := telemetry.Extract(r.Context(), r.Header)
		if telemetry.Enabled() && !telemetry.Unsampled(ctx) {
			ctx, span = telemetry.Tracer().Start(ctx, r.Method, telemetry.ServerSpan...)
		}
		if d := s.cfg.ExecTimeout.D(); d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		sw := &httpx.StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		status := sw.Status
		if status == 0 {
			status = http.StatusOK
		}
		elapsed := time.Since(start)
		if span != nil {
			endSpan(span, r, route, status)
		}
		s.metrics.observe(route, r.Method, status, elapsed.Seconds())
		if status >= 500 {
			slog.WarnContext(r.Context(), "request", "method", r.Method, "route", route, "status", status, "ms", elapsed.Milliseconds())
		} else if slog.Default().Enabled(r.Context(), slog.LevelDebug) {
			slog.DebugContext(r.Context(), "request", "method", r.Method, "route", route, "status", status, "ms", elapsed.Milliseconds())
		}
	})
}

func endSpan(span trace.Span, r *http.Request, route string, status int) {
	if span.IsRecording() {
		// r.Pattern is "POST /payments" (method and path) when the route
		// names its method.
		name := route
		if !strings.HasPrefix(route, r.Method+" ") {
			name = r.Method + " " + route
		}
		span.SetName(name)
		span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route),
			attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	}
	span.End()
}

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
	panics   prometheus.Counter
}

func newMetrics(function string) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labels := prometheus.Labels{"function": function}
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billfn_http_requests_total", Help: "HTTP requests by route pattern, method and status.", ConstLabels: labels,
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "billfn_http_request_duration_seconds", Help: "HTTP request latency by route pattern and status.", ConstLabels: labels,
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "billfn_http_requests_in_flight", Help: "HTTP requests being served.", ConstLabels: labels,
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "billfn_http_panics_total", Help: "Handler panics turned into 500s.", ConstLabels: labels,
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.inflight, m.panics)
	return m
}

var codeText [600]string

// The status codes' text is cut from one string: strconv.Itoa of each was
// 500 allocations at every function's start (those below 100 are
// strconv's own).
func init() {
	b := make([]byte, 0, 3*len(codeText))
	var ends [len(codeText)]int
	for i := range codeText {
		b = strconv.AppendInt(b, int64(i), 10)
		ends[i] = len(b)
	}
	all := string(b)
	for i, start := 0, 0; i < len(codeText); start, i = ends[i], i+1 {
		codeText[i] = all[start:ends[i]]
	}
}

func (m *metrics) observe(route, method string, status int, seconds float64) {
	code := strconv.Itoa(status)
	if status >= 0 && status < len(codeText) {
		code = codeText[status]
	}
	m.requests.WithLabelValues(route, method, code).Inc()
	m.duration.WithLabelValues(route, code).Observe(seconds)
}

// queryIsUTF8 reports whether every name and value of the raw query is
// UTF-8 once percent-decoded (a malformed escape is left to the query's
// reader, as url.Values drops it). A query without escapes costs one scan.
func queryIsUTF8(raw string) bool {
	if !strings.Contains(raw, "%") {
		return utf8.ValidString(raw)
	}
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		for _, s := range strings.SplitN(part, "=", 2) {
			if u, err := url.QueryUnescape(s); err == nil && !utf8.ValidString(u) {
				return false
			}
		}
	}
	return true
}
