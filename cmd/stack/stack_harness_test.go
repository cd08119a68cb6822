package main

// The harness every system test of this package shares: startStack builds
// cmd/stack and runs it as make run does, on free ports, with a database and
// a Redis prefix of its own, and stops it leaving no process behind.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// freePorts returns n consecutive free loopback ports, below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range, 32768 and up by default),
// so an outgoing connection of any process cannot take one of them while
// the stack builds its functions.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for attempt := 0; attempt < 200; attempt++ {
		base := 20000 + mrand.IntN(12000-n)
		ok := true
		var held []net.Listener
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free ports")
	return 0
}

// syncBuffer collects the stack's output for the test log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// leftovers lists the processes that carry the stack's marker.
func leftovers(marker string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == "BILLFN_STACK_ID="+marker {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// stackOptions says how a test wants its stack.
type stackOptions struct {
	// createDatabase hands the stack the name of a database that does not
	// exist yet, so the stack creates and migrates it (as make run does on
	// a new machine); otherwise the database is a fresh copy of the
	// migrated template (faster).
	createDatabase bool
	// dbTarget and redisTarget, when set, map the real service's host:port
	// to the address the stack is given instead (a proxy the test can cut).
	dbAddr    func(real string) string
	redisAddr func(real string) string
	// env is added to the stack's environment (LOG_LEVEL=debug, …).
	env []string
}

// e2e is one running stack and the test's handles on it.
type e2e struct {
	t       *testing.T
	root    string
	bin     string // the stack binary startStack built
	env     []string
	gateway string // http://host:port
	kafka   string // host:port
	trigger string // host:port of the kafka-trigger's metrics
	mailpit string // http://host:port of the stack's Mailpit (its UI and API)
	runDir  string
	marker  string
	token   string // an admin JWT
	signer  *auth.Signer
	out     *syncBuffer
	client  *http.Client
	db      *pgxpool.Pool // the stack's database, directly (never through a proxy)
	dbURL   string        // direct URL of that database
	prefix  string        // the stack's Redis prefix
	started time.Duration // how long the stack took to be ready

	cmd     *exec.Cmd
	exited  chan error
	stopped bool
}

// startStack builds cmd/stack and starts it on free ports with a database
// and a Redis prefix of its own and BILLFN_TICK_EVERY=1s. It is stopped (and
// every process carrying its marker killed) when the test ends.
func startStack(t *testing.T, opts stackOptions) *e2e {
	t.Helper()
	begin := time.Now()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "functions", "process-transaction", "main.go")); err != nil {
		t.Fatalf("the system tests drive process-transaction: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "stack")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/stack: %v\n%s", err, out)
	}

	var dbURL string
	if opts.createDatabase {
		// A database that does not exist yet: the stack creates and migrates it.
		dbName := fmt.Sprintf("billfn_test_%d_e2e_%s", os.Getpid(), strings.ReplaceAll(uuid.NewString()[:8], "-", ""))
		if dbURL, err = postgres.ReplaceDatabase(testenv.PostgresURL(), dbName); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if conn, err := pgx.Connect(ctx, testenv.PostgresURL()); err == nil {
				_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{dbName}.Sanitize()+" WITH (FORCE)")
				conn.Close(ctx)
			}
		})
	} else {
		dbURL = testenv.FreshDatabase(t, true)
	}
	stackDB := dbURL
	if opts.dbAddr != nil {
		stackDB = replaceHost(t, dbURL, opts.dbAddr)
	}
	_, prefix := testenv.Redis(t) // deletes the prefix's keys at the end
	redisURL := testenv.RedisURL()
	if opts.redisAddr != nil {
		redisURL = replaceHost(t, redisURL, opts.redisAddr)
	}

	e := &e2e{t: t, root: root, bin: bin, client: &http.Client{Timeout: 30 * time.Second}, dbURL: dbURL, prefix: prefix}
	t.Cleanup(func() {
		if e.cmd != nil && !e.stopped {
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGINT)
			select {
			case <-e.exited:
			case <-time.After(60 * time.Second):
				_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
				<-e.exited
			}
			e.stopped = true
		}
		// Whatever survived is a bug; do not let it outlive the test.
		if pids := leftovers(e.marker); e.marker != "" && len(pids) > 0 {
			time.Sleep(500 * time.Millisecond) // children still exiting
			for _, pid := range leftovers(e.marker) {
				t.Errorf("process %d outlived the stack", pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if e.db != nil {
			e.db.Close()
		}
		if e.out != nil && (t.Failed() || os.Getenv("BILLFN_STACK_LOG") != "") {
			t.Logf("stack output:\n%s", tail(e.out.String(), 400))
		}
	})
	// The ports are free when chosen, but the stack takes them only after
	// building the functions: if another process took one meanwhile, the
	// stack says so in one line and exits; start again on other ports.
	for attempt := 1; ; attempt++ {
		if e.launch(bin, stackDB, redisURL, opts.env) {
			break
		}
		if attempt == 3 || !strings.Contains(e.out.String(), "the address is in use") {
			t.Fatalf("the stack exited before it was ready")
		}
		t.Logf("a port was taken while the stack started; starting it again on other ports:\n%s", tail(e.out.String(), 3))
	}
	if e.token, err = e.signer.Sign(adminSubject, auth.RoleAdmin, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if e.db, err = postgres.Open(context.Background(), dbURL, 4); err != nil {
		t.Fatal(err)
	}
	e.started = time.Since(begin)
	t.Logf("stack ready in %s (gateway %s, Kafka %s)", e.started.Round(100*time.Millisecond), e.gateway, e.kafka)
	return e
}

// launch starts the stack binary on fresh free ports and a fresh run
// directory and waits until it is ready (true) or has exited (false).
func (e *e2e) launch(bin, databaseURL, redisURL string, env []string) bool {
	t := e.t
	t.Helper()
	base := freePorts(t, 11)
	e.gateway = "http://127.0.0.1:" + strconv.Itoa(base)
	e.kafka = "127.0.0.1:" + strconv.Itoa(base+1)
	e.trigger = "127.0.0.1:" + strconv.Itoa(base+2)
	stripeAddr := "127.0.0.1:" + strconv.Itoa(base+3)
	e.mailpit = "http://127.0.0.1:" + strconv.Itoa(base+10)
	e.runDir = t.TempDir()
	e.marker = "e2e-" + uuid.NewString()
	cmd := exec.Command(bin)
	cmd.Dir = e.root
	cmd.Env = append(os.Environ(),
		"BILLFN_GATEWAY_ADDR="+strings.TrimPrefix(e.gateway, "http://"), "BILLFN_KAFKA_ADDR="+e.kafka, "BILLFN_TRIGGER_ADDR="+e.trigger,
		"STRIPE_MOCK_ADDR="+stripeAddr, "BILLFN_FUNCTION_PORT="+strconv.Itoa(base+4),
		"MAILPIT_SMTP_ADDR=127.0.0.1:"+strconv.Itoa(base+9), "MAILPIT_UI_ADDR="+strings.TrimPrefix(e.mailpit, "http://"),
		"BILLFN_RUN_DIR="+e.runDir, "BILLFN_TICK_EVERY=1s", "BILLFN_STACK_ID="+e.marker,
		"DATABASE_URL="+databaseURL, "REDIS_URL="+redisURL, "REDIS_PREFIX="+e.prefix,
		// No tracing unless the test asks (its env names a private Jaeger).
		"BILLFN_OTLP_ENDPOINT=none",
	)
	cmd.Env = append(cmd.Env, env...)
	e.env = cmd.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncBuffer{}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.cmd, e.out, e.exited, e.stopped = cmd, out, make(chan error, 1), false
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(out, sc.Text())
			if strings.Contains(sc.Text(), "Ctrl-C stops everything") {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(out, stdout)
	}()
	exited := e.exited
	go func() { exited <- cmd.Wait() }()
	select {
	case <-ready:
		e.signer = e.stackSigner()
		return true
	case err := <-e.exited:
		e.stopped = true
		fmt.Fprintf(out, "(the stack exited: %v)\n", err)
		return false
	case <-time.After(4 * time.Minute):
		t.Fatal("the stack was not ready within 4 minutes")
		return false
	}
}

// tail keeps the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("[… %d lines …]\n", len(lines)-n) + strings.Join(lines[len(lines)-n:], "\n")
}

// replaceHost swaps the host:port of a service URL.
func replaceHost(t *testing.T, raw string, to func(string) string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = to(u.Host)
	return u.String()
}

// stop sends SIGINT as Ctrl-C does and checks that everything stopped.
func (e *e2e) stop() {
	t := e.t
	t.Helper()
	if err := syscall.Kill(e.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-e.exited:
		e.stopped = true
		if err != nil {
			t.Errorf("the stack exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the stack did not stop within 60 s of SIGINT")
	}
	e.eventually("no process left behind", 5*time.Second, func() bool { return len(leftovers(e.marker)) == 0 })
	if !strings.Contains(e.out.String(), "stack") || !strings.Contains(e.out.String(), "stopped") {
		t.Errorf("no clean stop in the output")
	}
}

// pidOf finds the running process of a function (or kafka-trigger,
// stripe-mock) by its executable's name.
func (e *e2e) pidOf(name string) int {
	for _, p := range leftovers(e.marker) {
		exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "exe"))
		if filepath.Base(exe) == name {
			return p
		}
	}
	return 0
}

// triggerAddrs lists the METRICS_ADDR of every running kafka-trigger
// process (BILLFN_TRIGGERS of them; the first is e.trigger), read from
// their environments; e.trigger while none is found.
func (e *e2e) triggerAddrs() []string {
	var out []string
	for _, env := range e.processesOf("kafka-trigger") {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "METRICS_ADDR="); ok {
				out = append(out, v)
			}
		}
	}
	if len(out) == 0 {
		out = []string{e.trigger}
	}
	slices.Sort(out)
	return out
}

// signalStack sends sig to the stack process itself (SIGUSR1/SIGUSR2 stop
// and start its Kafka broker).
func (e *e2e) signalStack(sig syscall.Signal) {
	e.t.Helper()
	if err := syscall.Kill(e.cmd.Process.Pid, sig); err != nil {
		e.t.Fatal(err)
	}
}

// secret reads one of the stack's secrets (written in its run directory).
func (e *e2e) secret(name string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.runDir, "secrets", name))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// stackSigner signs as the stack does: with the Ed25519 private key it
// generated in its run directory on its first start.
func (e *e2e) stackSigner() *auth.Signer {
	e.t.Helper()
	s, err := auth.SignerFor(auth.SignerConfig{Alg: "EdDSA", PrivateKey: e.secret("jwt-private-key"), Issuer: "billfn", Audience: "billfn"})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// tokenFor signs a JWT for sub with role (valid two hours).
func (e *e2e) tokenFor(sub string, role auth.Role) string {
	e.t.Helper()
	tok, err := e.signer.Sign(sub, role, 2*time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// response is what a call through the gateway answered.
type response struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
}

func (r response) String() string {
	return fmt.Sprintf("%d %s", r.status, truncate(string(r.raw), 600))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// req sends one request to the gateway: body is JSON-encoded unless it is
// []byte or string (sent as is); headers are name, value pairs ("" as the
// Authorization value sends none; by default the admin token is used).
func (e *e2e) req(method, path string, body any, headers ...string) response {
	e.t.Helper()
	r, err := e.try(method, path, body, headers...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// try is req without failing the test on a transport error.
func (e *e2e) try(method, path string, body any, headers ...string) (response, error) {
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/json"
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	default:
		raw, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		rd, ctype = bytes.NewReader(raw), "application/json"
	}
	req, err := http.NewRequest(method, e.gateway+path, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Authorization" && headers[i+1] == "" {
			req.Header.Del("Authorization")
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	out := response{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &out.body)
	return out, nil
}

// call is req returning the status and the decoded body (the original
// end-to-end test's helper).
func (e *e2e) call(method, path string, body any, headers ...string) (int, map[string]any) {
	e.t.Helper()
	r := e.req(method, path, body, headers...)
	return r.status, r.body
}

// eventually polls ok every 100 ms until it holds or d passes.
func (e *e2e) eventually(what string, d time.Duration, ok func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// num reads a JSON number member as int64 (0 when absent).
func num(m map[string]any, key string) int64 {
	if v, ok := m[key].(float64); ok {
		return int64(v)
	}
	return 0
}

// str reads a JSON string member ("" when absent).
func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// scalar runs a one-value query on the stack's database.
func (e *e2e) scalar(query string, args ...any) int64 {
	e.t.Helper()
	var v int64
	if err := e.db.QueryRow(context.Background(), query, args...).Scan(&v); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return v
}

// metric sums the samples of a Prometheus counter or gauge whose labels
// contain every given label="value".
func metric(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.eE+-]+)$`)
	var sum float64
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		ok := true
		for _, l := range labels {
			if !strings.Contains(m[1], l) {
				ok = false
			}
		}
		if ok {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}
