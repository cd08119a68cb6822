// Command bench runs billfn's standard benchmarks on this machine and writes
// the figures to docs/benchmarks.md — make bench.
//
// It starts the local stack (cmd/stack) on ports of its own against a fresh
// database, runs the loadgen scenarios through the gateway (and the key ones
// straight at the function, to show the gateway's cost), runs pgbench's
// TPC-B (scale 10, the same client count) against the same PostgreSQL in
// the same run, measures each function's start-to-ready time and idle RSS
// as a process, stops everything and writes a markdown report with the
// ratios and the targets.
//
//	go run ./cmd/bench                 # the standard set (a few minutes)
//	go run ./cmd/bench -quick          # smaller runs, for a smoke test
//	go run ./cmd/bench -out /tmp/b.md  # write elsewhere
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/billfn/billfn/cmd/internal/loadresult"
	"github.com/google/uuid"
)

// Ports of the bench stack: away from make run's, so both can run.
const (
	gatewayAddr  = "127.0.0.1:28080"
	kafkaAddr    = "127.0.0.1:28092"
	triggerAddr  = "127.0.0.1:28090"
	stripeAddr   = "127.0.0.1:28111"
	functionBase = 28081
	database     = "billfn_bench"
)

var functions = []string{"aggregate-report", "capture-payment", "generate-invoice", "handle-webhook", "process-transaction"}

func functionURL(name string) string {
	i := sort.SearchStrings(functions, name)
	return "http://127.0.0.1:" + strconv.Itoa(functionBase+i)
}

// run is one loadgen invocation of the standard set.
type run struct {
	Name  string // bin/bench/<Name>/ holds its profiles
	Title string
	Args  []string
	// Do runs a scenario the bench drives itself (notify.go) instead of
	// loadgen with Args.
	Do     func(ctx context.Context, at phases) (*loadResult, error)
	Target string // what the issue asks for, for the report
	// Check says whether the target is met; without it a run in
	// rateTargets (budget.go) is judged on its rate alone.
	Check    func(r *loadResult) bool
	Result   *loadResult
	Cost     *cost
	Profiles map[string]string // process → its CPU profile of the scenario
	// KfakeShare is the share of the stack process's CPU that kfake spent
	// (from that process's profile, profileShare), when KfakeMeasured.
	KfakeShare    float64
	KfakeMeasured bool
	Skipped       string
	Setup         func(context.Context) error // before the scenario (platform.go scales a function)
	// Extra are processes outside the stack whose CPU the scenario's cost
	// table counts, by pid: their group (tracing.go's Jaeger).
	Extra map[int]string
}

// loadResult is loadgen's -json output (one type on both sides).
type (
	loadResult     = loadresult.Result
	endpointResult = loadresult.Endpoint
)

func main() {
	out := flag.String("out", "docs/benchmarks.md", "report file")
	quick := flag.Bool("quick", false, "small runs (a smoke test of the harness)")
	pgSeconds := flag.Int("pgbench-seconds", 30, "pgbench duration")
	only := flag.String("only", "", "run only the scenarios whose name matches this regular expression (e.g. 'transfers|payments'; 'processes' is the functions' start-to-ready and idle RSS); the report says so")
	flag.Parse()
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -only:", err)
			os.Exit(2)
		}
		selected = re
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, *out, *quick, *pgSeconds); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// selected is -only: the scenarios to run (nil: all of them).
var selected *regexp.Regexp

// statementsOn says that the server loads pg_stat_statements: each
// scenario's section then shows PostgreSQL's time by statement.
var statementsOn bool

func scale(n int, quick bool) string {
	if quick {
		n = max(n/20, 50)
	}
	return strconv.Itoa(n)
}

// commit is the commit measured, with "+dirty" when the tree has changes.
func commit(ctx context.Context, root string) string {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+dirty"
	}
	return c
}

func bench(ctx context.Context, out string, quick bool, pgSeconds int) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "stack.yml")); err != nil {
		return errors.New("run bench from the repository root (make bench)")
	}
	if err := sh(ctx, root, ".ci/services.sh"); err != nil {
		return err
	}
	// Two runs would share the ports and the database: the second waits.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "billfn-bench.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		step("another make bench is running on this machine; waiting for it")
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "billfn-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	step("building the stack and loadgen")
	for _, p := range []string{"stack", "loadgen"} {
		if err := sh(ctx, root, "go", "build", "-o", filepath.Join(tmp, p), "./cmd/"+p); err != nil {
			return err
		}
	}
	if err := sh(ctx, root, "psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "DROP DATABASE IF EXISTS "+database+" WITH (FORCE)"); err != nil {
		return err
	}
	step("starting the stack (gateway " + gatewayAddr + ")")
	stack, err := startStack(ctx, root, tmp)
	if err != nil {
		return err
	}
	defer stack.stop()
	// The stack has migrated the database: the extension can be created
	// in it, when the server loads the library.
	statementsOn = enableStatements(ctx, database)

	gw := "http://" + gatewayAddr + "/function/"
	runs := []*run{
		{Name: "health-direct", Title: "health (GET /_/health), direct", Args: []string{"health", "-c", "16", "-n", scale(100000, quick), "-url", functionURL("process-transaction")}},
		{Name: "health-gateway", Title: "health (GET /_/health), through the gateway", Args: []string{"health", "-c", "16", "-n", scale(100000, quick), "-url", gw + "process-transaction"},
			Target: "≥ 7,500 req/s"},
		{Name: "transfers-direct", Title: "transfers (sync POST /transfers), direct", Args: []string{"transfers", "-c", "16", "-n", scale(30000, quick), "-url", functionURL("process-transaction")}},
		{Name: "transfers-gateway", Title: "transfers (sync POST /transfers), through the gateway", Args: []string{"transfers", "-c", "16", "-n", scale(30000, quick), "-url", gw + "process-transaction"},
			Target: "≥ 1.5 × pgbench tps"},
		{Name: "batch-transfers", Title: "batch transfers (POST /transfers/batch, 1000 each)", Args: []string{"batch", "-c", "4", "-n", scale(120, quick), "-batch", "1000", "-url", gw + "process-transaction"},
			Target: "≥ 15,000 transfers/s"},
	}
	for _, extra := range moreRuns(gw, filepath.Join(tmp, "run", "secrets"), quick) {
		runs = append(runs, extra)
	}
	runs = append(runs, platformRuns(gw, filepath.Join(tmp, "run", "secrets"), quick)...)
	runs = append(runs, notifyRuns(gw, filepath.Join(tmp, "run", "secrets"), quick)...)
	runs = slices.DeleteFunc(runs, func(r *run) bool { return selected != nil && !selected.MatchString(r.Name) })
	step("the stack idle (after " + statsDelay.String() + " for PostgreSQL's statistics), 10 s")
	idle := idleCost(ctx, classifier{stackPid: stack.cmd.Process.Pid, marker: stack.marker, db: database}, 10*time.Second)
	for _, r := range runs {
		if err := measure(ctx, root, tmp, stack, idle, r); err != nil {
			return err
		}
	}

	platform = runPlatform(ctx, filepath.Join(tmp, "run", "secrets"), stack.marker, quick)
	step(fmt.Sprintf("pgbench TPC-B, scale 10, 16 clients, %d s", pgSeconds))
	pg, err := pgbench(ctx, root, pgSeconds)
	if err != nil {
		return err
	}
	// The latency targets, offered open loop at their rates (openloop.go):
	// after pgbench, whose rate sets the transfers'.
	inflight, err := maxInflight(filepath.Join(root, "stack.yml"))
	if err != nil {
		return err
	}
	open := slices.DeleteFunc(openLoopRuns(gw, filepath.Join(tmp, "run", "secrets"), quick, pg, inflight), func(r *run) bool { return selected != nil && !selected.MatchString(r.Name) })
	for _, r := range open {
		if err := measure(ctx, root, tmp, stack, idle, r); err != nil {
			return err
		}
	}
	runs = append(runs, open...)

	var procs []procFigures
	if selected == nil || selected.MatchString("processes") {
		step("start-to-ready and idle RSS of each function")
		if procs, err = measureFunctions(ctx, stack.marker); err != nil {
			return err
		}
	}
	stack.stop()
	step("the machine's primitives (system call, loopback round trip, exec, Ed25519)")
	prims := measurePrimitives()
	tracing, err := tracingRuns(ctx, root, tmp, quick, idle) // tracing.go: stacks of their own
	if err != nil {
		return err
	}
	if tracing != nil {
		runs = append(runs, tracing.pooled...)
	}
	measured := commit(ctx, root)
	alone := runAlone(ctx, root, quick)
	report := render(ctx, runs, tracing, pg, idle, procs, prims, quick, measured) + renderAlone(alone)
	if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
		return err
	}
	// Only a full run of record is copied into the README.
	if selected == nil && !quick && out == "docs/benchmarks.md" {
		if err := updateReadme(filepath.Join(root, "README.md"), report); err != nil {
			return err
		}
		step("copied its tables into README.md")
	}
	fmt.Print(report)
	step("wrote " + out)
	return nil
}

// measure runs r's loadgen scenario against stack, with the cost of each
// process and their CPU profiles over exactly its timed phase; an error
// only when ctx ended (a failed scenario is r.Skipped).
func measure(ctx context.Context, root, tmp string, stack *stackProc, idle *cost, r *run) error {
	step(r.Title)
	if r.Setup != nil {
		if err := r.Setup(ctx); err != nil {
			r.Skipped = err.Error()
			return ctx.Err()
		}
	}
	prof := newProfiler(stack.pprofDir)
	var m *meter
	var err error
	// The client's own profile, written by loadgen over the same phase.
	clientProfile := filepath.Join(root, "bin", "bench", r.Name, "loadgen.pprof")
	_ = os.Remove(clientProfile) // an earlier run's
	load := func(at phases) (*loadResult, error) { return loadgen(ctx, tmp, r.Args, at, clientProfile) }
	if r.Do != nil {
		load = func(at phases) (*loadResult, error) { return r.Do(ctx, at) }
	}
	r.Result, err = load(phases{
		start: func(client int) {
			// Untimed: the stack first finishes what the scenario's setup
			// and the previous scenario left behind (a batch of invoices
			// leaves minutes of e-mails), which would otherwise be charged
			// to this one.
			drain(ctx, classifier{stackPid: stack.cmd.Process.Pid, marker: stack.marker, db: database, extra: r.Extra})
			m = beginCost(ctx, classifier{stackPid: stack.cmd.Process.Pid, marker: stack.marker, db: database, clientPid: client, extra: r.Extra, statements: statementsOn})
			prof.start()
		},
		end: func() {
			m.endCPU(ctx, settleLimit)
			r.Profiles = prof.stop(filepath.Join(root, "bin", "bench", r.Name))
			r.Cost = m.endPG(ctx, statsDelay, idle)
		},
	})
	if err != nil {
		r.Skipped = err.Error()
		fmt.Fprintln(os.Stderr, "  ", err)
	}
	if _, err := os.Stat(clientProfile); err == nil && r.Profiles != nil {
		r.Profiles["loadgen"] = clientProfile
	}
	// Read after the scenario, not in its end phase: go tool pprof is a
	// process of its own, and nothing of the window should wait for it.
	if f, ok := r.Profiles["stack"]; ok {
		r.KfakeShare, r.KfakeMeasured = profileShare(ctx, f, kfakeFocus)
	}
	return ctx.Err()
}

func step(s string) { fmt.Fprintf(os.Stderr, "==> %s\n", s) }

func sh(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

type stackProc struct {
	cmd      *exec.Cmd
	marker   string
	pprofDir string
	done     chan error
}

// startStack starts the stack on the bench's ports; env is added last
// (tracing.go sets the tracing variables this way).
func startStack(ctx context.Context, root, tmp string, env ...string) (*stackProc, error) {
	marker := "bench-" + uuid.NewString()
	pprofDir := filepath.Join(tmp, "pprof")
	if err := os.MkdirAll(pprofDir, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(tmp, "stack"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"BILLFN_GATEWAY_ADDR="+gatewayAddr, "BILLFN_KAFKA_ADDR="+kafkaAddr, "BILLFN_TRIGGER_ADDR="+triggerAddr,
		"STRIPE_MOCK_ADDR="+stripeAddr, "MAILPIT_SMTP_ADDR="+mailpitSMTPAddr, "MAILPIT_UI_ADDR="+mailpitUIAddr, "BILLFN_FUNCTION_PORT="+strconv.Itoa(functionBase),
		"BILLFN_RUN_DIR="+filepath.Join(tmp, "run"), "BILLFN_STACK_ID="+marker, "LOG_LEVEL=warn",
		// A few principals push thousands of requests a second from one
		// address: the per-caller rate limits are off for the measurement
		// (stack.yml substitutes RATE_LIMIT).
		"RATE_LIMIT=off",
		// The standard numbers are without tracing (make run exports to
		// make observe's Jaeger by default); BENCH_OTLP_ENDPOINT measures
		// with it (docs/observability.md).
		"BILLFN_OTLP_ENDPOINT="+cmp.Or(os.Getenv("BENCH_OTLP_ENDPOINT"), "none"),
		"DATABASE_URL=postgres://postgres@127.0.0.1:5432/"+database+"?sslmode=disable", "REDIS_PREFIX=billfn-bench:",
		// Every Go process serves CPU profiles on a loopback port (profile.go).
		"BILLFN_PPROF_DIR="+pprofDir)
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(tmp, "stack.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &stackProc{cmd: cmd, marker: marker, pprofDir: pprofDir, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		closed := false
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if !closed && strings.Contains(sc.Text(), "Ctrl-C stops everything") {
				close(ready)
				closed = true
			}
		}
	}()
	go func() { s.done <- cmd.Wait() }()
	select {
	case <-ready:
	case err := <-s.done:
		return nil, fmt.Errorf("the stack exited before it was ready (%v); its log: %s", err, log.Name())
	case <-time.After(5 * time.Minute):
		s.stop()
		return nil, errors.New("the stack was not ready within 5 minutes")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	// Every function must answer ready through the gateway.
	for _, f := range functions {
		if err := waitReady("http://"+gatewayAddr+"/function/"+f+"/_/ready", time.Minute); err != nil {
			s.stop()
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return s, nil
}

func (s *stackProc) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

func waitReady(url string, within time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if r, err := c.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s", url, within)
}

// phases are called at the start of a scenario's timed phase (with the
// client's pid) and at its end, while loadgen waits (-sync).
type phases struct {
	start func(client int)
	end   func()
}

func loadgen(ctx context.Context, tmp string, args []string, at phases, profile string) (*loadResult, error) {
	jsonFile := filepath.Join(tmp, "result.json")
	_ = os.Remove(jsonFile)
	full := append([]string{args[0], "-q", "-sync", "-json", jsonFile, "-cpuprofile", profile}, args[1:]...)
	cmd := exec.CommandContext(ctx, filepath.Join(tmp, "loadgen"), full...)
	// The stack's secrets: loadgen signs its tokens with the stack's
	// jwt-private-key (a -secrets flag in args still wins).
	cmd.Env = append(os.Environ(), "SECRETS_DIR="+filepath.Join(tmp, "run", "secrets"))
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stdout)
	started := false
	for sc.Scan() {
		switch sc.Text() {
		case "loadgen: start":
			at.start(cmd.Process.Pid)
			started = true
		case "loadgen: end":
			at.end()
			started = false
		default:
			fmt.Fprintln(os.Stderr, sc.Text())
			continue
		}
		_, _ = io.WriteString(stdin, "\n")
	}
	if started {
		at.end() // loadgen died in the timed phase: stop the profiles
	}
	stdin.Close()
	runErr := cmd.Wait()
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		return nil, fmt.Errorf("loadgen %s: %v: %s", args[0], runErr, strings.TrimSpace(stderr.String()))
	}
	var r loadResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

type pgResult struct {
	Txns      int64
	Cost      *cost
	TPS       float64
	LatencyMs float64
	Clients   int
	Seconds   int
	Version   string
	Settings  []setting
	// MinCommit is a second pgbench run of the cheapest durable commit:
	// one row updated by primary key, a prepared statement as pgx uses,
	// then COMMIT (budget.go's floor).
	MinCommit *pgbenchRun
}

// pgbenchRun is one measured pgbench run: its transactions, their cost and
// its rate.
type pgbenchRun struct {
	Txns int64
	Cost *cost
	TPS  float64
}

// minCommitScript is the cheapest transaction that writes: one row of
// pgbench_accounts (scale 10: 1,000,000 rows) by its primary key.
const minCommitScript = "\\set aid random(1, 1000000)\nUPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n"

func pgbench(ctx context.Context, root string, seconds int) (*pgResult, error) {
	const db = "billfn_pgbench"
	if err := sh(ctx, root, "psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		return nil, err
	}
	if err := sh(ctx, root, "psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "CREATE DATABASE "+db); err != nil {
		return nil, err
	}
	defer sh(context.Background(), root, "psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	if err := sh(ctx, root, "pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-s", "10", "-q", db); err != nil {
		return nil, err
	}
	tpcb, outb, err := pgbenchRunOf(ctx, db, seconds)
	if err != nil {
		return nil, err
	}
	r := &pgResult{Clients: 16, Seconds: seconds, Txns: tpcb.Txns, Cost: tpcb.Cost, TPS: tpcb.TPS}
	if m := regexp.MustCompile(`latency average = ([0-9.]+) ms`).FindSubmatch(outb); m != nil {
		r.LatencyMs, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	script := filepath.Join(os.TempDir(), fmt.Sprintf("billfn-bench-min-commit-%d.sql", os.Getpid()))
	if err := os.WriteFile(script, []byte(minCommitScript), 0o644); err != nil {
		return nil, err
	}
	defer os.Remove(script)
	step(fmt.Sprintf("pgbench, the cheapest commit (one row updated), 16 clients, %d s", seconds))
	if r.MinCommit, _, err = pgbenchRunOf(ctx, db, seconds, "-M", "prepared", "-f", script); err != nil {
		return nil, err
	}
	v, _ := psql(ctx, "postgres", "-Atc", "SHOW server_version").Output()
	r.Version = strings.TrimSpace(string(v))
	if r.Settings, err = readSettings(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// pgbenchRunOf runs pgbench on db (16 clients, 2 threads, seconds; args
// add a script) in a cost window, and returns it with pgbench's output.
func pgbenchRunOf(ctx context.Context, db string, seconds int, args ...string) (*pgbenchRun, []byte, error) {
	cmd := exec.CommandContext(ctx, "pgbench", append([]string{"-h", "127.0.0.1", "-U", "postgres", "-c", "16", "-j", "2", "-T", strconv.Itoa(seconds)}, append(args, db)...)...)
	m := beginCost(ctx, classifier{db: db})
	outb, err := cmd.CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("pgbench: %v\n%s", err, outb)
	}
	// pgbench's backends exit with it and report their counters as they do.
	m.endCPU(ctx, 0)
	r := &pgbenchRun{Cost: m.endPG(ctx, 0, nil)}
	// pgbench has exited: its own CPU is exact from its rusage.
	r.Cost.CPU[groupClient] = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if m := regexp.MustCompile(`actually processed: ([0-9]+)`).FindSubmatch(outb); m != nil {
		r.Txns, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	if m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(outb); m != nil {
		r.TPS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if r.TPS == 0 {
		return nil, nil, fmt.Errorf("pgbench printed no tps:\n%s", outb)
	}
	return r, outb, nil
}

type procFigures struct {
	Name    string
	ReadyMs []float64  // start-to-ready, several launches
	AtReady []procStat // what each launch had cost when it was ready
	Idle    idleMemory
	Err     string
}

// idleMemory is a process's resident memory (/proc/<pid>/status): VmRSS,
// and its two parts, the anonymous pages (heap, stacks: the process's own)
// and the file-backed ones (its binary's pages in the page cache, shared
// with every other process mapping them and dropped by the kernel when
// memory is short); BinaryKB is the size of the executable.
type idleMemory struct {
	RSSKB, AnonKB, FileKB, BinaryKB int
}

var statusKB = regexp.MustCompile(`(?m)^(VmRSS|RssAnon|RssFile):\s+(\d+) kB$`)

// readIdleMemory reads VmRSS, RssAnon and RssFile from a /proc/<pid>/status.
func readIdleMemory(status []byte) idleMemory {
	var m idleMemory
	for _, f := range statusKB.FindAllSubmatch(status, -1) {
		kb, _ := strconv.Atoi(string(f[2]))
		switch string(f[1]) {
		case "VmRSS":
			m.RSSKB = kb
		case "RssAnon":
			m.AnonKB = kb
		case "RssFile":
			m.FileKB = kb
		}
	}
	return m
}

// measureFunctions launches each function binary again, exactly as the
// stack runs it (its executable and environment, read from /proc), on a free
// port: the time from exec until /_/ready answers 200, five times, and the
// resident memory after two idle seconds.
func measureFunctions(ctx context.Context, marker string) ([]procFigures, error) {
	running := map[string]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, []byte("BILLFN_STACK_ID="+marker)) {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil {
			continue
		}
		running[filepath.Base(exe)] = pid
	}
	var out []procFigures
	for i, f := range functions {
		fig := procFigures{Name: f}
		pid, ok := running[f]
		if !ok {
			fig.Err = "not running in the stack"
			out = append(out, fig)
			continue
		}
		exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		envRaw, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		port := strconv.Itoa(functionBase + 50 + i)
		var env []string
		for _, kv := range bytes.Split(envRaw, []byte{0}) {
			// Not the bench's profiling listener either (BILLFN_PPROF_DIR):
			// no deployment has one, and the launch would take over the
			// stack function's address file.
			if len(kv) > 0 && !bytes.HasPrefix(kv, []byte("PORT=")) && !bytes.HasPrefix(kv, []byte("BILLFN_STACK_ID=")) &&
				!bytes.HasPrefix(kv, []byte("BILLFN_PPROF_DIR=")) {
				env = append(env, string(kv))
			}
		}
		env = append(env, "PORT="+port)
		for k := 0; k < 5; k++ {
			ms, atReady, mem, err := launch(ctx, exe, env, "http://127.0.0.1:"+port+"/_/ready", k == 4)
			if err != nil {
				fig.Err = err.Error()
				break
			}
			fig.ReadyMs, fig.AtReady = append(fig.ReadyMs, ms), append(fig.AtReady, atReady)
			if mem.RSSKB > 0 {
				fig.Idle = mem
				if st, err := os.Stat(exe); err == nil {
					fig.Idle.BinaryKB = int(st.Size() / 1024)
				}
			}
		}
		out = append(out, fig)
	}
	return out, nil
}

func launch(ctx context.Context, exe string, env []string, ready string, idle bool) (ms float64, atReady procStat, mem idleMemory, err error) {
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = env
	client := &http.Client{Timeout: 200 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, procStat{}, mem, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	for time.Since(start) < 10*time.Second {
		r, err := client.Get(ready)
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				ms = float64(time.Since(start).Microseconds()) / 1000
				atReady, _ = readStat(cmd.Process.Pid)
				break
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	if ms == 0 {
		return 0, procStat{}, mem, errors.New("never ready")
	}
	if idle {
		time.Sleep(2 * time.Second)
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
		mem = readIdleMemory(b)
	}
	return ms, atReady, mem, nil
}

// median is the middle value of xs, the mean of the two middle ones when
// there is an even number (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.+)`).FindSubmatch(b); m != nil {
			model = strings.TrimSpace(string(m[1]))
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if m := regexp.MustCompile(`MemTotal:\s+(\d+) kB`).FindSubmatch(b); m != nil {
			kb, _ := strconv.Atoi(string(m[1]))
			mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/1024/1024)
		}
	}
	return fmt.Sprintf("%s, %d cores%s, %s", model, runtime.NumCPU(), mem, runtime.Version())
}

func mark(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

func render(ctx context.Context, runs []*run, tracing *tracingResult, pg *pgResult, idle *cost, procs []procFigures, prims primitives, quick bool, commit string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` (`go run ./cmd/bench`) on %s, measuring commit %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), commit)
	if selected != nil {
		fmt.Fprintf(&b, "**Partial run** (`-only '%s'`): only the scenarios matching it; not a run of record.\n\n", selected)
	}
	fmt.Fprintf(&b, "Machine: %s, PostgreSQL %s. ", machine(), pg.Version)
	renderSettings(&b, pg.Settings)
	if statementsOn {
		b.WriteString("PostgreSQL loads `pg_stat_statements` (each scenario's section shows its time by statement). ")
	} else {
		b.WriteString("PostgreSQL does not load `pg_stat_statements`, so the scenarios' sections leave out its time by statement (to have them: " + statementsHow + "). ")
	}
	b.WriteString("Everything shares the same cores: the load generator, the gateway, every function, PostgreSQL, Redis and Kafka (kfake). ")
	b.WriteString("Each scenario first sets up its data untimed, then runs its operations from the listed number of concurrent clients; latencies are per HTTP request, measured by the client, but in the rows offered open loop, whose latencies are per operation from when it was due (below the table).\n\n")
	if quick {
		b.WriteString("**This was a `-quick` run: small samples, not figures of record.**\n\n")
	}
	fmt.Fprintf(&b, "pgbench TPC-B (scale 10, %d clients, 2 threads, %d s) on the same PostgreSQL in the same run: **%.0f tps**, %.2f ms average latency.\n\n",
		pg.Clients, pg.Seconds, pg.TPS, pg.LatencyMs)
	renderPrimitives(&b, prims)
	renderScenarios(&b, runs, pg)
	renderProcesses(&b, procs, prims)
	renderPlatform(&b)
	renderBudget(&b, runs, pg)
	renderTracing(&b, tracing)
	renderCost(ctx, &b, runs, pg, idle)
	b.WriteString("\nReproduce with `make bench` (the stack runs on ports 28080–28111, so it does not disturb `make run`). Single scenarios: `go run ./cmd/loadgen <scenario> -c 16 -n 20000` against a running `RATE_LIMIT=off make run` (with the rate limits on, its few principals are turned away with 429).\n")
	return b.String()
}

// renderScenarios writes the table of the scenarios' rates and latencies,
// each judged against its target, and the gateway hop.
func renderScenarios(b *strings.Builder, runs []*run, pg *pgResult) {
	b.WriteString("| scenario | clients | operations | ops/s | units/s | p50 ms | p95 ms | p99 ms | failed | vs pgbench | target |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	var gwHealth, directHealth *loadResult
	for _, r := range runs {
		if r.Result == nil {
			fmt.Fprintf(b, "| %s | | | | | | | | | | not run: %s |\n", r.Title, strings.ReplaceAll(r.Skipped, "|", "/"))
			continue
		}
		res := r.Result
		p50, p95, p99 := res.Latencies()
		units := res.OpsPerSec * float64(max(res.Units, 1))
		target := r.Target
		if rate, ok := rateTargets[r.Name]; ok && r.Check == nil {
			target += " " + mark(res.Failed == 0 && units >= rate(pg))
		} else if r.Check != nil {
			target += " " + mark(res.Failed == 0 && r.Check(res))
		}
		ratio := ""
		if strings.HasPrefix(r.Title, "transfers") || strings.HasPrefix(r.Title, "batch") {
			ratio = fmt.Sprintf("%.2f×", units/pg.TPS)
		}
		fmt.Fprintf(b, "| %s | %d | %d | %.0f | %.0f | %.2f | %.2f | %.2f | %d | %s | %s |\n",
			r.Title, res.Concurrency, res.Operations, res.OpsPerSec, units, p50, p95, p99, res.Failed, ratio, target)
		if strings.HasPrefix(r.Title, "health") {
			if strings.Contains(r.Title, "gateway") {
				gwHealth = res
			} else {
				directHealth = res
			}
		}
	}
	if slices.ContainsFunc(runs, func(r *run) bool { return r.Result != nil && r.Result.Scheduled != nil }) {
		fmt.Fprintf(b, "\nA target that names a rate and a latency is judged on two rows. The rate on the closed-loop row: each of its clients sends the next operation as soon as the last one is answered, which finds the most the system does; its latencies are not the target's, for at saturation a closed loop's mean latency is its clients over its rate (Little's law) whatever the system does. The latency on the row offered open loop at the target's rate (`loadgen -rate`, %d s of operations, at most twice what the target allows in flight: its rate times its p99 bound, at least 32, and no more than the function's `max_inflight` in stack.yml): one operation due every 1/rate seconds, timed from when it was due, not from when a client got to send it, so that a slow answer delays the count of those queued behind it as it delays them (no coordinated omission). A system that cannot keep up falls further behind with each operation, and its p99 grows with the run; one that keeps up (answers at 99 %% of the rate offered or more) with its p99 under the bound meets the whole target on that row. These rows run after pgbench, whose rate sets the transfers'.\n", openLoopSeconds)
	}
	if gwHealth != nil && directHealth != nil {
		g50, _, _ := gwHealth.Main()
		d50, _, _ := directHealth.Main()
		fmt.Fprintf(b, "\nThe gateway hop at 16 clients: %.2f ms at p50 through the gateway vs %.2f ms direct = **%.2f ms added** (target < 1 ms %s).\n",
			g50, d50, g50-d50, mark(g50-d50 < 1))
	}
}

// renderProcesses writes the functions' start-to-ready and idle RSS (none
// when -only left out "processes"), and the least a start can take here.
func renderProcesses(b *strings.Builder, procs []procFigures, prims primitives) {
	if len(procs) == 0 {
		return
	}
	b.WriteString("\n## Functions as processes\n\nEach function's binary launched again with the environment the stack gives it: the time from exec until `GET /_/ready` answers 200 (Postgres and Redis reachable), median of five launches; what the process had cost by then, from its `/proc/<pid>/stat` (CPU in the kernel's 10 ms ticks, and its page faults with what they cost at the machine's price of one, a primitive above); and the resident memory after two idle seconds (VmRSS, the target's figure) in its two parts: the anonymous pages (heap, goroutine stacks, runtime: what each replica holds of its own) and the file-backed ones, its binary's pages in the page cache. A Go binary's code and tables are read where they lie in the executable, and on each page fault on it the kernel maps the pages already cached around the one asked for (fault-around, 64 KiB), so a process that touched a page here and there while it started maps most of its binary: those pages are shared by every process that maps them (the replicas of a function on a node) and the kernel drops them when memory is short, to read them again when touched.\n\n")
	b.WriteString("| function | start-to-ready (median of 5) | all launches (ms) | CPU until ready | page faults until ready | idle RSS | of which anonymous | of which its binary (of its size) | targets |\n|---|---:|---|---:|---:|---:|---:|---:|---|\n")
	for _, p := range procs {
		if p.Err != "" {
			fmt.Fprintf(b, "| %s | | | | | | | | %s |\n", p.Name, p.Err)
			continue
		}
		var all []string
		var cpu, faults []float64
		for i, m := range p.ReadyMs {
			all = append(all, fmt.Sprintf("%.1f", m))
			cpu = append(cpu, float64(ticksDur(p.AtReady[i].Ticks).Microseconds())/1e3)
			faults = append(faults, float64(p.AtReady[i].MinorFaults))
		}
		mb := func(kb int) float64 { return float64(kb) / 1024 }
		rss := mb(p.Idle.RSSKB)
		// Issue 20's targets, for every function.
		ready := median(p.ReadyMs)
		target := fmt.Sprintf("< 15 ms %s, < 20 MB %s", mark(ready < 15), mark(rss < 20))
		if ready >= 15 && startFloorMs(prims) >= 15 {
			target = strings.Replace(target, "✗", "✗ ‼", 1)
		}
		faultCost := ""
		if prims.PageFaultUs > 0 {
			faultCost = fmt.Sprintf(" (%.1f ms)", median(faults)*prims.PageFaultUs/1e3)
		}
		fmt.Fprintf(b, "| %s | %.1f ms | %s | %.0f ms | %.0f%s | %.1f MB | %.1f MB | %.1f MB (%.1f MB) | %s |\n", p.Name, median(p.ReadyMs), strings.Join(all, ", "),
			median(cpu), median(faults), faultCost, rss, mb(p.Idle.AnonKB), mb(p.Idle.FileKB), mb(p.Idle.BinaryKB), target)
	}
	if startFloorMs(prims) >= 15 {
		fmt.Fprintf(b, "\nNo start on this machine can be ready within 15 ms (‼): readiness means that PostgreSQL answers, so a start costs at least an exec (%.1f ms) and a new PostgreSQL connection (%.1f ms), the machine's primitives above: **%.1f ms** before the function runs any code of its own. A connection kept open outside the process (a pooler such as PgBouncer in front of the server) would remove the second; nothing in the function can (docs/platform.md).\n",
			prims.ExecMs, prims.PGConnectMs, startFloorMs(prims))
	}
}

// startFloorMs is the least a function's start-to-ready can take on this
// machine: an exec, then a new PostgreSQL connection until its first
// answer (readiness means that Postgres answers). 0 when the primitives
// were not measured.
func startFloorMs(p primitives) float64 {
	if p.ExecMs <= 0 || p.PGConnectMs <= 0 {
		return 0
	}
	return p.ExecMs + p.PGConnectMs
}
