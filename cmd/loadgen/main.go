// Command loadgen drives billfn's functions over HTTP and reports
// throughput and latency percentiles per endpoint.
//
//	go run ./cmd/loadgen transfers -c 16 -n 20000
//	go run ./cmd/loadgen batch -c 4 -n 200 -batch 1000
//	go run ./cmd/loadgen -list
//
// By default it talks to the local stack's gateway
// (http://127.0.0.1:8080/function/<name>); -url overrides the base URL of
// the scenario's function (e.g. the function's own port, to measure without
// the gateway). It signs its JWTs with the local stack's private key
// (jwt-private-key under -secrets, default bin/run/secrets; JWT_ALG=HS256
// with JWT_SECRET for a single-tenant HS256 setup). Each scenario first sets up what it needs (accounts,
// funding), untimed, then runs -n operations from -c concurrent workers.
// -json writes the result for make bench.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/billfn/billfn/cmd/internal/loadresult"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
)

// Scenario is one kind of load.
type Scenario struct {
	Name     string
	Function string // the function it drives, for the default URL
	Help     string
	// Setup prepares state (untimed) and returns the per-operation step.
	Setup func(ctx context.Context, c *Client, o Options) (Step, error)
}

// Step performs operation i and reports each HTTP call it made.
type Step func(ctx context.Context, c *Client, worker, i int) error

// Options are the command-line settings scenarios may read.
type Options struct {
	Concurrency int
	N           int
	Batch       int
	Accounts    int
	SecretsDir  string
	Gateway     string
	// Rate, when above zero, offers the operations open loop: operation i
	// is due at start + i/Rate, whenever the earlier ones finish, and its
	// latency counts from then (-rate).
	Rate float64
	// Sync, when set, is called with "start" before the timed phase and
	// "end" after it, and returns when the caller may go on (-sync).
	Sync func(phase string)
}

var scenarios = map[string]Scenario{}

func register(s Scenario) { scenarios[s.Name] = s }

// Client is an HTTP client that records every call.
type Client struct {
	Base   string
	http   *http.Client
	signer *auth.Signer
	tokens sync.Map // sub|role → token
	stats  *Stats
}

// Token returns a cached token for sub with role.
func (c *Client) Token(sub string, role auth.Role) string {
	k := sub + "|" + string(role)
	if t, ok := c.tokens.Load(k); ok {
		return t.(string)
	}
	t, err := c.signer.Sign(sub, role, 24*time.Hour)
	if err != nil {
		panic(err)
	}
	c.tokens.Store(k, t)
	return t
}

// Call sends a request and records it under endpoint. It returns the
// status and body; a transport error is recorded as status 0.
func (c *Client) Call(ctx context.Context, endpoint, method, path, token string, body []byte, hdr ...string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.stats.record(endpoint, 0, time.Since(start))
		return 0, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.stats.record(endpoint, resp.StatusCode, time.Since(start))
	return resp.StatusCode, b, err
}

// Stats collects latencies and statuses per endpoint.
type Stats struct {
	mu        sync.Mutex
	recording bool
	lat       map[string][]time.Duration
	status    map[string]map[int]int
}

func (s *Stats) record(endpoint string, status int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.recording {
		return
	}
	s.lat[endpoint] = append(s.lat[endpoint], d)
	if s.status[endpoint] == nil {
		s.status[endpoint] = map[int]int{}
	}
	s.status[endpoint][status]++
}

// EndpointResult and Result are the -json output, shared with make bench.
type (
	EndpointResult = loadresult.Endpoint
	Result         = loadresult.Result
)

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func main() {
	var (
		conc     = flag.Int("c", 16, "concurrent workers")
		n        = flag.Int("n", 10000, "operations to run")
		base     = flag.String("url", "", "base URL of the function (default: the local gateway's /function/<name>)")
		gateway  = flag.String("gateway", envOr("BILLFN_GATEWAY", "http://127.0.0.1:8080"), "gateway URL")
		batch    = flag.Int("batch", 1000, "transfers per request (batch scenario)")
		accounts = flag.Int("accounts", 200, "accounts to spread the load over")
		jsonOut  = flag.String("json", "", "write the result as JSON to this file")
		list     = flag.Bool("list", false, "list scenarios")
		quiet    = flag.Bool("q", false, "no progress bar")
		secrets  = flag.String("secrets", envOr("SECRETS_DIR", "bin/run/secrets"), "the local stack's secrets (webhook signing)")
		syncIO   = flag.Bool("sync", false, "hand-shake the timed phase on stdin/stdout (make bench samples CPU and profiles exactly over it)")
		cpuProf  = flag.String("cpuprofile", "", "write a CPU profile of loadgen itself over the timed phase to this file (make bench: bin/bench/<scenario>/loadgen.pprof)")
		rate     = flag.Float64("rate", 0, "offer this many operations per second, open loop: each is due on a fixed schedule and its latency counts from then, however late a worker takes it (0: closed loop, each worker starts the next when its last one ends); -c is the most in flight")
	)
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: loadgen [flags] <scenario>\n\nscenarios:\n")
		printScenarios()
		fmt.Fprintf(os.Stderr, "\nflags:\n")
		flag.PrintDefaults()
	}
	args := os.Args[1:]
	// Accept the scenario before or after the flags.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	_ = flag.CommandLine.Parse(args)
	if name == "" && flag.NArg() > 0 {
		name = flag.Arg(0)
	}
	if *list {
		printScenarios()
		return
	}
	sc, ok := scenarios[name]
	if !ok {
		flag.Usage()
		os.Exit(2)
	}
	signer, err := loadSigner(*secrets)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	url := *base
	if url == "" {
		url = strings.TrimRight(*gateway, "/") + "/function/" + sc.Function
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *rate < 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -rate must not be negative")
		os.Exit(2)
	}
	o := Options{Concurrency: *conc, N: *n, Batch: *batch, Accounts: *accounts, SecretsDir: *secrets, Gateway: strings.TrimRight(*gateway, "/"), Rate: *rate}
	out := io.Writer(os.Stdout)
	if *syncIO {
		o.Sync = handshake(os.Stdin, os.Stdout)
		out = os.Stderr // stdout carries only the hand-shake
	}
	if *cpuProf != "" {
		if o.Sync == nil {
			o.Sync = func(string) {}
		}
		o.Sync = profiled(o.Sync, *cpuProf)
	}
	res, err := run(ctx, sc, url, signer, o, !*quiet)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	report(out, res)
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}
	if res.Failed > 0 {
		os.Exit(1)
	}
}

// handshake is -sync: at each phase it writes "loadgen: <phase>" on w and
// waits for a line on r (make bench samples CPU and starts or stops the
// profiles meanwhile). A closed r lets it go on.
func handshake(r io.Reader, w io.Writer) func(string) {
	in := bufio.NewReader(r)
	return func(phase string) {
		fmt.Fprintf(w, "loadgen: %s\n", phase)
		_, _ = in.ReadString('\n')
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func printScenarios() {
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, scenarios[n].Help)
	}
}

func run(ctx context.Context, sc Scenario, base string, signer *auth.Signer, o Options, progress bool) (*Result, error) {
	stats := &Stats{lat: map[string][]time.Duration{}, status: map[string]map[int]int{}}
	c := &Client{Base: base, signer: signer, stats: stats, http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: o.Concurrency * 2, MaxIdleConnsPerHost: o.Concurrency * 2,
			IdleConnTimeout: time.Minute, DisableCompression: true},
	}}
	step, err := sc.Setup(ctx, c, o)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	var bar *progressbar.ProgressBar
	if progress {
		bar = progressbar.NewOptions(o.N, progressbar.OptionSetDescription(sc.Name), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("ops"), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWriter(os.Stderr), progressbar.OptionClearOnFinish())
	}
	if o.Sync != nil {
		o.Sync("start")
	}
	stats.mu.Lock()
	stats.recording = true
	stats.mu.Unlock()
	var next, failed atomic.Int64
	var firstErr atomic.Value
	// Open loop (-rate): each operation's latency from when it was due,
	// so that a worker held up by a slow one does not hide the wait of
	// those behind it (coordinated omission).
	var late []time.Duration
	if o.Rate > 0 {
		late = make([]time.Duration, 0, o.N)
	}
	var lateMu sync.Mutex
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < o.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= o.N {
					return
				}
				var due time.Time
				if o.Rate > 0 {
					due = start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				if err := step(ctx, c, w, i); err != nil {
					if failed.Add(1) == 1 {
						firstErr.Store(err)
					}
				}
				if o.Rate > 0 {
					d := time.Since(due)
					lateMu.Lock()
					late = append(late, d)
					lateMu.Unlock()
				}
				if bar != nil {
					_ = bar.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if o.Sync != nil {
		o.Sync("end")
	}
	if bar != nil {
		_ = bar.Finish()
	}
	if e, ok := firstErr.Load().(error); ok {
		fmt.Fprintf(os.Stderr, "loadgen: %d operations failed; first: %v\n", failed.Load(), e)
	}
	done := min(int(next.Load()), o.N)
	res := &Result{Scenario: sc.Name, Concurrency: o.Concurrency, Operations: done, Seconds: elapsed.Seconds(),
		OpsPerSec: float64(done) / elapsed.Seconds(), Failed: failed.Load(), Units: 1}
	if o.Rate > 0 && len(late) > 0 {
		slices.Sort(late)
		res.Offered = o.Rate
		res.Scheduled = &EndpointResult{Endpoint: "operations, from when each was due", Requests: len(late), PerSecond: float64(len(late)) / elapsed.Seconds(),
			P50ms: ms(pct(late, .50)), P95ms: ms(pct(late, .95)), P99ms: ms(pct(late, .99)), MaxMs: ms(late[len(late)-1])}
	}
	if sc.Name == "batch" || sc.Name == "invoices-batch" {
		res.Units = o.Batch
	}
	stats.mu.Lock()
	defer stats.mu.Unlock()
	for ep, lat := range stats.lat {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		er := EndpointResult{Endpoint: ep, Requests: len(lat), PerSecond: float64(len(lat)) / elapsed.Seconds(),
			P50ms: ms(pct(lat, .50)), P95ms: ms(pct(lat, .95)), P99ms: ms(pct(lat, .99)), MaxMs: ms(lat[len(lat)-1]),
			Statuses: stats.status[ep]}
		for st, k := range er.Statuses {
			if st == 0 || st >= 500 {
				er.Errors += k
			}
		}
		res.Endpoints = append(res.Endpoints, er)
	}
	sort.Slice(res.Endpoints, func(i, j int) bool { return res.Endpoints[i].Endpoint < res.Endpoints[j].Endpoint })
	if ctx.Err() != nil {
		return res, errors.New("interrupted")
	}
	return res, nil
}

func report(w io.Writer, r *Result) {
	fmt.Fprintf(w, "scenario %s: %d operations from %d workers in %.2fs = %.0f ops/s", r.Scenario, r.Operations, r.Concurrency, r.Seconds, r.OpsPerSec)
	if r.Units > 1 {
		fmt.Fprintf(w, " (%.0f units/s: %d per operation)", r.OpsPerSec*float64(r.Units), r.Units)
	}
	fmt.Fprintf(w, ", %d failed\n", r.Failed)
	if s := r.Scheduled; s != nil {
		fmt.Fprintf(w, "offered open loop at %.0f/s: from when each operation was due, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			r.Offered, s.P50ms, s.P95ms, s.P99ms, s.MaxMs)
	}
	fmt.Fprintf(w, "%-28s %9s %9s %8s %8s %8s %8s %7s  %s\n", "endpoint", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "statuses")
	for _, e := range r.Endpoints {
		codes := make([]int, 0, len(e.Statuses))
		for c := range e.Statuses {
			codes = append(codes, c)
		}
		sort.Ints(codes)
		var parts []string
		for _, c := range codes {
			parts = append(parts, fmt.Sprintf("%d:%d", c, e.Statuses[c]))
		}
		fmt.Fprintf(w, "%-28s %9d %9.0f %8.2f %8.2f %8.2f %8.2f %7d  %s\n", e.Endpoint, e.Requests, e.PerSecond,
			e.P50ms, e.P95ms, e.P99ms, e.MaxMs, e.Errors, strings.Join(parts, " "))
	}
}

// loadSigner signs as the local stack's issuer: the jwt-private-key in dir
// (EdDSA), or what JWT_ALG, JWT_SECRET and JWT_PRIVATE_KEY say.
func loadSigner(dir string) (*auth.Signer, error) {
	if err := os.Setenv(config.SecretsDirEnv, dir); err != nil {
		return nil, err
	}
	var cfg auth.SignerConfig
	if err := config.Load(&cfg); err != nil {
		return nil, err
	}
	if cfg.Alg != "HS256" && strings.TrimSpace(cfg.PrivateKey) == "" {
		return nil, fmt.Errorf("no jwt-private-key in %s: start the local stack (make run) or pass -secrets", dir)
	}
	return auth.SignerFor(cfg)
}
