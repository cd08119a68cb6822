package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/billfn/billfn/cmd/internal/gateway"
	"github.com/billfn/billfn/cmd/internal/kafkaacl"
	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/migrations"
	"github.com/billfn/billfn/shared/gotool"
	"github.com/billfn/billfn/shared/mailpit"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/problem"
	"github.com/billfn/billfn/shared/telemetry"
	"github.com/billfn/billfn/shared/testenv"
)

// AnnotationLocalTick is added to a scheduled function's annotations in
// the local gateway's /system/functions: the period its schedule actually
// ticks at on this machine (BILLFN_TICK_EVERY), beside the cluster's cron
// expression, which the schedule annotation keeps.
const AnnotationLocalTick = "billfn.dev/local-tick-every"

// DLQTopic is where the kafka-trigger parks records no function accepts.
const DLQTopic = "billfn-dlq"

// stripeMockVersion is installed with go install when stripe-mock is missing.
const stripeMockVersion = "v0.203.0"

// stack is the running system.
type stack struct {
	cfg       config
	log       *logger
	st        *stackfile.Stack
	functions []*function // stack.yml's, in name order
	secrets   map[string]string

	mu    sync.Mutex
	fns   map[string]*function // every function, stack.yml's and the API's
	homes map[string]string    // stack.yml function → its first replica's address
	secMu sync.Mutex           // the secret store (bin/run/secrets) and the functions' folders
	book  *logBook
	db    *pgxpool.Pool // the gateway's async queue
	queue *pgQueue

	kafka    *kfake.Cluster
	gateway  *gateway.Gateway
	gwSrv    *http.Server
	triggers []*proc // BILLFN_TRIGGERS kafka-trigger processes
	stripe   *proc
	mailpit  *proc
}

// newStack lays out the stack of st: each stack.yml function with its home
// address, nothing started.
func newStack(cfg config, st *stackfile.Stack, out io.Writer) *stack {
	s := &stack{cfg: cfg, st: st, log: &logger{out: out, width: len("kafka-trigger")},
		fns: map[string]*function{}, homes: map[string]string{}, book: newLogBook(5000)}
	for i, name := range st.Names() {
		f := &function{name: name, spec: st.Functions[name], home: cfg.functionAddr(i)}
		s.functions = append(s.functions, f)
		s.fns[name], s.homes[name] = f, f.home
		s.log.width = max(s.log.width, len(name)+3)
	}
	return s
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	if os.Getenv("BILLFN_STACK_ID") == "" {
		// Every child inherits it: a leftover process is easy to find.
		_ = os.Setenv("BILLFN_STACK_ID", strconv.Itoa(os.Getpid()))
	}
	st, err := stackfile.Load(cfg.StackFile, cfg.lookup)
	if err != nil {
		return userErrorf("%v", err)
	}
	s := newStack(cfg, st, out)
	// Make the functions' own JSON log lines and the stack's share a look.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	// The gateway runs in this process: its spans start the traces.
	shutdown, err := telemetry.SetupEndpoint(ctx, "gateway", cfg.OTLPEndpoint)
	if err != nil {
		return userErrorf("tracing: %v (BILLFN_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT)", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = shutdown(sctx)
	}()
	defer s.stop()
	if err := s.start(ctx); err != nil {
		return err
	}
	defer writePid(cfg)()
	go s.followTargets(ctx)
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	notReady := s.waitReady(rctx)
	cancel()
	if ctx.Err() != nil {
		return nil
	}
	s.banner(notReady)
	if len(notReady) > 0 {
		go func() {
			if len(s.waitReady(ctx)) == 0 {
				s.log.printf("stack", "billfn is ready: every function answers /_/ready")
			}
		}()
	}
	// SIGUSR1 stops the Kafka broker and SIGUSR2 starts it again on the
	// same address with the same data: what a broker restart looks like to
	// the functions and the kafka-trigger (the fault tests use it).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	for {
		select {
		case <-ctx.Done():
			s.log.printf("stack", "stopping")
			return nil
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				s.stopKafka()
			} else {
				s.restartKafka()
			}
		}
	}
}

// stopKafka closes the broker (SIGUSR1); its data stays in the run directory.
func (s *stack) stopKafka() {
	if s.kafka == nil {
		s.log.printf("kafka", "already stopped")
		return
	}
	s.kafka.Close()
	s.kafka = nil
	s.log.printf("kafka", "stopped (SIGUSR1); SIGUSR2 starts it again")
}

// restartKafka starts the broker again on its address (SIGUSR2), with the
// records and consumer group offsets it had.
func (s *stack) restartKafka() {
	if s.kafka != nil {
		s.log.printf("kafka", "already running")
		return
	}
	var ln net.Listener
	var err error
	// The old listener's port may take a moment to be free again.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", s.cfg.KafkaAddr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.log.printf("kafka", "cannot listen on %s again: %v", s.cfg.KafkaAddr, err)
		return
	}
	if err := s.startKafka(ln); err != nil {
		s.log.printf("kafka", "cannot start again: %v", err)
		return
	}
	s.log.printf("kafka", "started again (SIGUSR2)")
}

func (s *stack) start(ctx context.Context) error {
	cfg := s.cfg
	gwLn, err := listen(cfg.GatewayAddr, "the gateway", "BILLFN_GATEWAY_ADDR")
	if err != nil {
		return err
	}
	kafkaLn, err := listen(cfg.KafkaAddr, "Kafka", "BILLFN_KAFKA_ADDR")
	if err != nil {
		gwLn.Close()
		return err
	}
	closeLns := func() { gwLn.Close(); kafkaLn.Close() }
	for _, f := range s.functions {
		if err := free(f.home, "function "+f.name, "BILLFN_FUNCTION_PORT"); err != nil {
			closeLns()
			return err
		}
	}
	if err := free(cfg.TriggerAddr, "the kafka-trigger", "BILLFN_TRIGGER_ADDR"); err != nil {
		closeLns()
		return err
	}
	if err := s.services(ctx); err != nil {
		closeLns()
		return err
	}
	if err := s.migrate(ctx); err != nil {
		closeLns()
		return err
	}
	// The secrets first: the broker's users and their passwords are in them.
	if s.secrets, err = writeSecrets(cfg.secretsDir(), cfg, s.st); err != nil {
		closeLns()
		return err
	}
	// The gateway's /system credentials: the stack's (banner, gateway) and
	// the kafka-trigger's, which lists the functions there; no function's.
	user, password, err := gatewayCredentials(cfg.secretsDir(), cfg.functionSecretsDir(kafkaacl.Trigger))
	if err != nil {
		closeLns()
		return err
	}
	s.secrets[basicAuthUser], s.secrets[basicAuthPassword] = user, password
	if err := s.startKafka(kafkaLn); err != nil {
		gwLn.Close()
		return err
	}
	if _, err := s.writeIntegratorProperties(); err != nil {
		gwLn.Close()
		return err
	}
	if err := s.build(ctx); err != nil {
		gwLn.Close()
		return err
	}
	if err := s.startStripeMock(ctx); err != nil {
		gwLn.Close()
		return err
	}
	if err := s.startMailpit(ctx); err != nil {
		gwLn.Close()
		return err
	}
	for _, f := range s.functions {
		if f.skip != "" {
			continue
		}
		p, err := s.check(deploymentOf(f.name, f.spec))
		if err != nil {
			gwLn.Close()
			return userErrorf("stack.yml, function %s: %s", f.name, problem.From(err).Detail)
		}
		f.op.Lock()
		s.rollout(f, p, filepath.Join(cfg.binDir(), f.name))
		f.op.Unlock()
	}
	if err := s.writeEnvFile(); err != nil {
		gwLn.Close()
		return err
	}
	if s.db, err = postgres.Open(ctx, cfg.DatabaseURL, 4); err != nil {
		gwLn.Close()
		return userErrorf("the gateway's async queue: %v", err)
	}
	var waiting int64
	if s.queue, waiting, err = newPGQueue(ctx, s.db); err != nil {
		gwLn.Close()
		return userErrorf("the gateway's async queue: %v", err)
	}
	if waiting > 0 {
		s.log.printf("gateway", "%d /async-function calls accepted before the last stop are still to deliver; delivering them", waiting)
	}
	s.startGateway(gwLn)
	go s.idler(ctx)
	go s.autoscaler(ctx)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, f := range s.functions {
		if !f.deployed() {
			continue
		}
		f.mu.Lock()
		reps := slices.Clone(f.replicas)
		f.mu.Unlock()
		for _, p := range reps {
			if !p.waitHealthy(wctx) {
				if ctx.Err() != nil {
					return nil
				}
				s.log.printf("stack", "%s is not healthy yet (see its log above); the gateway holds its calls, then answers 503, until it is", f.name)
			}
		}
	}
	if err := s.startTriggers(); err != nil {
		return err
	}
	for _, t := range s.triggers {
		if !t.waitHealthy(wctx) && ctx.Err() == nil {
			s.log.printf("stack", "%s is not healthy yet (see its log above)", t.name)
		}
	}
	return nil
}

// startTriggers starts BILLFN_TRIGGERS kafka-trigger processes. They
// share the consumer groups (kafka-trigger-<function>), so Kafka splits
// every function's partitions between them, and when one dies (even
// kill -9) its partitions go to the others once its session times out,
// from the last committed offset: records it had delivered but not yet
// committed are delivered again, and the functions deduplicate them by
// event id. The first listens on BILLFN_TRIGGER_ADDR; the others on a
// port picked now and kept across their restarts. Only the first runs the
// schedules (the cron-connector is one process too): N triggers would
// otherwise tick every function N times per period.
func (s *stack) startTriggers() error {
	cfg := s.cfg
	for i := 0; i < cfg.Triggers; i++ {
		name, addr := "kafka-trigger", cfg.TriggerAddr
		if i > 0 {
			name = fmt.Sprintf("kafka-trigger#%d", i+1)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			addr = ln.Addr().String()
			ln.Close()
		}
		t := &proc{
			name: name, path: filepath.Join(cfg.binDir(), "kafka-trigger"), dir: cfg.Root, log: s.log,
			health: "http://" + addr + "/healthz",
			env: append(baseEnv(),
				"KAFKA_BROKERS="+cfg.KafkaAddr,
				"GATEWAY_URL=http://"+cfg.GatewayAddr,
				"SECRETS_DIR="+cfg.functionSecretsDir(kafkaacl.Trigger),
				"METRICS_ADDR="+addr,
				"SCHEDULES="+strconv.FormatBool(i == 0),
				"SCHEDULE_EVERY="+cfg.TickEvery.String(),
				"DLQ_TOPIC="+DLQTopic,
				"REFRESH_INTERVAL=10s",
				"LOG_LEVEL="+logLevel(),
			),
		}
		t.env = append(t.env, kafkaEnv(kafkaacl.Trigger)...)
		t.env = append(t.env, cfg.otelEnv("kafka-trigger")...)
		if err := t.start(); err != nil {
			return err
		}
		s.triggers = append(s.triggers, t)
	}
	return nil
}

// triggerAddrs are where the kafka-triggers serve /metrics and /healthz
// (BILLFN_TRIGGER_ADDR before they start).
func (s *stack) triggerAddrs() []string {
	if len(s.triggers) == 0 {
		return []string{s.cfg.TriggerAddr}
	}
	var out []string
	for _, t := range s.triggers {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(t.health, "http://"), "/healthz"))
	}
	return out
}

// waitReady waits until every running function answers GET /_/ready with
// 200 (its database and Redis checks pass), and returns those that do not
// by the end of ctx.
func (s *stack) waitReady(ctx context.Context) []string {
	client := &http.Client{Timeout: 2 * time.Second}
	var notReady []string
	for _, f := range s.functions {
		if !f.deployed() {
			continue
		}
		for {
			addrs := f.addrs()
			if len(addrs) == 0 {
				break
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addrs[0]+"/_/ready", nil)
			if res, err := client.Do(req); err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					break
				}
			}
			if ctx.Err() != nil {
				notReady = append(notReady, f.name)
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return notReady
}

func logLevel() string {
	if v := os.Getenv("LOG_LEVEL"); v != "" {
		return v
	}
	return "info"
}

// listen claims addr for one of the stack's own servers, or explains.
func listen(addr, what, env string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, userErrorf("%s cannot listen on %s: the address is in use (another make run?); stop that process or set %s", what, addr, env)
		}
		return nil, userErrorf("%s cannot listen on %s: %v (set %s)", what, addr, err, env)
	}
	return ln, nil
}

// free checks that a child process will be able to listen on addr.
func free(addr, what, env string) error {
	ln, err := listen(addr, what, env)
	if err != nil {
		return err
	}
	return ln.Close()
}

// services makes sure PostgreSQL and Redis answer (starting local ones
// with .ci/services.sh) and says how to fix it when they do not.
func (s *stack) services(ctx context.Context) error {
	script := filepath.Join(s.cfg.Root, ".ci", "services.sh")
	if _, err := os.Stat(script); err == nil && isLocal(s.cfg.DatabaseURL) {
		cmd := exec.CommandContext(ctx, script)
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if line != "" {
				s.log.line("services", line)
			}
		}
		if err != nil {
			return userErrorf("PostgreSQL or Redis could not be started by %s (see above); start them by hand: %s ; %s",
				script, testenv.StartPostgres, testenv.StartRedis)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	admin, err := postgres.ReplaceDatabase(s.cfg.DatabaseURL, "postgres")
	if err != nil {
		return userErrorf("DATABASE_URL: %v", err)
	}
	conn, err := pgx.Connect(cctx, admin)
	if err != nil {
		return userErrorf("PostgreSQL is not reachable (DATABASE_URL %s): %v — start it with: %s", redactURL(s.cfg.DatabaseURL), err, testenv.StartPostgres)
	}
	conn.Close(cctx)
	opt, err := goredis.ParseURL(s.cfg.RedisURL)
	if err != nil {
		return userErrorf("REDIS_URL: %v", err)
	}
	rdb := goredis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(cctx).Err(); err != nil {
		return userErrorf("Redis is not reachable at %s: %v — start it with: %s", opt.Addr, err, testenv.StartRedis)
	}
	return nil
}

func isLocal(dbURL string) bool {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		return false
	}
	return cfg.Host == "127.0.0.1" || cfg.Host == "localhost" || cfg.Host == "::1" || strings.HasPrefix(cfg.Host, "/")
}

func redactURL(u string) string {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return "(unparsable)"
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// migrate creates the database when missing and applies the migrations.
func (s *stack) migrate(ctx context.Context) error {
	if err := postgres.EnsureDatabase(ctx, s.cfg.DatabaseURL); err != nil {
		return userErrorf("cannot create the database of DATABASE_URL %s: %v", redactURL(s.cfg.DatabaseURL), err)
	}
	m, err := migrations.NewMigrator(s.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer m.Close()
	w := &lineWriter{log: s.log, name: "migrate"}
	err = m.Up(ctx, w)
	w.Flush()
	if err != nil {
		return userErrorf("migrations failed: %v", err)
	}
	return nil
}

// lineWriter turns writes into prefixed log lines.
type lineWriter struct {
	log  *logger
	name string
	buf  bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.log.line(w.name, strings.TrimRight(line, "\n"))
	}
}

func (w *lineWriter) Flush() {
	if w.buf.Len() > 0 {
		w.log.line(w.name, w.buf.String())
		w.buf.Reset()
	}
}

// startKafka runs kfake on the stack's Kafka listener with billfn's topics,
// persisted in the run directory, with SASL and the ACLs of kafka-acls.yaml
// (kafka.go).
func (s *stack) startKafka(ln net.Listener) error {
	dir := filepath.Join(s.cfg.RunDir, "kafka")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		ln.Close()
		return err
	}
	auth, err := s.kafkaOpts()
	if err == nil {
		err = forgetKafkaAuth(dir)
	}
	if err != nil {
		ln.Close()
		return err
	}
	var once sync.Once
	listenFn := func(network, address string) (net.Listener, error) {
		var got net.Listener
		once.Do(func() { got = bufferedListener{ln} })
		if got == nil {
			return nil, errors.New("the stack runs one Kafka broker")
		}
		return got, nil
	}
	opts := append([]kfake.Opt{kfake.ListenFn(listenFn), kfake.DataDir(dir), kfake.SeedTopics(1, DLQTopic)}, auth...)
	c, err := testenv.NewKafka(opts...)
	if err != nil {
		ln.Close()
		return userErrorf("cannot start Kafka (kfake) on %s with data in %s: %v (remove %s to start afresh)", s.cfg.KafkaAddr, dir, err, dir)
	}
	s.kafka = c
	if err := s.applyACLs(context.Background()); err != nil {
		c.Close()
		s.kafka = nil
		return err
	}
	s.log.printf("kafka", "kfake listening on %s (data in %s), SASL/%s and the ACLs of %s on", strings.Join(c.ListenAddrs(), ","), dir,
		kafkaacl.Mechanism, kafkaacl.File)
	return nil
}

// build compiles every function that has a main.go, and the kafka-trigger.
func (s *stack) build(ctx context.Context) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return userErrorf("the go command is not on PATH; the stack builds the functions with it")
	}
	var pkgs []string
	for _, f := range s.functions {
		dir := filepath.Join(s.cfg.Root, f.spec.Dir())
		if _, err := os.Stat(filepath.Join(dir, "main.go")); err != nil {
			f.skip = "functions/" + f.name + " has no main.go yet"
			continue
		}
		pkgs = append(pkgs, "./"+filepath.ToSlash(f.spec.Dir()))
	}
	pkgs = append(pkgs, "./cmd/kafka-trigger")
	if err := os.MkdirAll(s.cfg.binDir(), 0o755); err != nil {
		return err
	}
	s.log.printf("build", "go build %s", strings.Join(pkgs, " "))
	start := time.Now()
	if err := s.goBuild(ctx, goBin, pkgs...); err != nil {
		// A build stopped (Ctrl-C, a deadline) says so: every package
		// tried again with the dead context would fail, and the last, the
		// kafka-trigger, would be blamed for it.
		stopped := func() error { return fmt.Errorf("the build was stopped before it finished: %w", ctx.Err()) }
		if ctx.Err() != nil {
			return stopped()
		}
		// Find which ones fail; run the others.
		for _, p := range pkgs {
			if err := s.goBuild(ctx, goBin, p); err != nil {
				if ctx.Err() != nil {
					return stopped()
				}
				if p == "./cmd/kafka-trigger" {
					return userErrorf("the kafka-trigger does not build (see above)")
				}
				for _, f := range s.functions {
					if "./"+filepath.ToSlash(f.spec.Dir()) == p {
						f.skip = "it does not build (see the build log above)"
					}
				}
			}
		}
	}
	s.log.printf("build", "done in %s", time.Since(start).Round(100*time.Millisecond))
	for _, f := range s.functions {
		if f.skip != "" {
			s.log.printf("stack", "skipping %s: %s", f.name, f.skip)
		}
	}
	return nil
}

func (s *stack) goBuild(ctx context.Context, goBin string, pkgs ...string) error {
	cmd := goBuildCmd(ctx, goBin, append([]string{"-o", s.cfg.binDir() + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = s.cfg.Root
	w := &lineWriter{log: s.log, name: "build"}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	w.Flush()
	return err
}

// buildFlags are the flags of the Dockerfile's go build, with its
// CGO_ENABLED=0 (TestBuildLikeTheDockerfile holds them to it): a function
// runs here as the image a cluster deploys runs it, statically linked (no
// dynamic loader, no libc mapped at start), without the symbol table and
// DWARF, with module-relative paths. make bench's start-to-ready and idle
// RSS measure these binaries.
var buildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// goBuildCmd is go build with buildFlags and args, without cgo.
func goBuildCmd(ctx context.Context, goBin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, goBin, append(append([]string{"build"}, buildFlags...), args...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

// startMailpit runs Mailpit (SMTP on MAILPIT_SMTP_ADDR, its UI and API on
// MAILPIT_UI_ADDR, its messages in the run directory) when a deployed
// function sends email (its secrets hold smtp-url). It is installed with
// go install when missing; when it cannot be, the stack still runs and the
// emails wait, queued, in their function's delivery log.
func (s *stack) startMailpit(ctx context.Context) error {
	needed := false
	for _, f := range s.functions {
		if f.skip == "" && slices.Contains(f.spec.Secrets, "smtp-url") {
			needed = true
		}
	}
	if !needed {
		return nil
	}
	if err := free(s.cfg.MailpitSMTPAddr, "Mailpit's SMTP", "MAILPIT_SMTP_ADDR"); err != nil {
		return err
	}
	if err := free(s.cfg.MailpitUIAddr, "Mailpit's web UI", "MAILPIT_UI_ADDR"); err != nil {
		return err
	}
	w := &lineWriter{log: s.log, name: "build"}
	bin, err := mailpit.Find(ctx, w)
	w.Flush()
	if err != nil {
		s.log.printf("stack", "Mailpit is not available (%v): emails stay queued in generate-invoice's delivery log", err)
		return nil
	}
	s.mailpit = &proc{name: "mailpit", path: bin,
		args: mailpit.Args(s.cfg.MailpitSMTPAddr, s.cfg.MailpitUIAddr, filepath.Join(s.cfg.RunDir, "mailpit.db")),
		dir:  s.cfg.Root, env: baseEnv(), log: s.log, health: "http://" + s.cfg.MailpitUIAddr + "/api/v1/info"}
	return s.mailpit.start()
}

// startStripeMock runs stripe-mock when a deployed function's
// STRIPE_API_BASE points at STRIPE_MOCK_ADDR.
func (s *stack) startStripeMock(ctx context.Context) error {
	needed := false
	for _, f := range s.functions {
		if f.skip == "" && s.cfg.usesStripeMock(f.spec.Environment["STRIPE_API_BASE"]) {
			needed = true
		}
	}
	if !needed {
		return nil
	}
	if err := free(s.cfg.StripeMockAddr, "stripe-mock", "STRIPE_MOCK_ADDR"); err != nil {
		return err
	}
	bin, err := findStripeMock(ctx, s.log)
	if err != nil {
		s.log.printf("stack", "stripe-mock is not available (%v): calls to the Stripe adapter will fail; the sandbox gateway works", err)
		return nil
	}
	// stripe-mock also serves HTTPS (on :12112 unless told otherwise): keep
	// that on a socket in the run directory, off the network.
	sock := filepath.Join(s.cfg.RunDir, "stripe-mock-https.sock")
	_ = os.Remove(sock)
	s.stripe = &proc{name: "stripe-mock", path: bin, args: []string{"-http-addr", s.cfg.StripeMockAddr, "-https-unix", sock},
		dir: s.cfg.Root, env: baseEnv(), log: s.log}
	return s.stripe.start()
}

func findStripeMock(ctx context.Context, log *logger) (string, error) {
	bin, installed, err := gotool.Path(ctx, "stripe-mock")
	if err != nil || installed {
		return bin, err
	}
	log.printf("stack", "installing stripe-mock %s (go install)", stripeMockVersion)
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/stripe/stripe-mock@"+stripeMockVersion)
	w := &lineWriter{log: log, name: "build"}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	w.Flush()
	if err != nil {
		return "", fmt.Errorf("go install github.com/stripe/stripe-mock@%s: %w", stripeMockVersion, err)
	}
	return bin, nil
}

// startGateway serves the gateway on its listener, with the deployed
// functions and the stack as its provider.
func (s *stack) startGateway(ln net.Listener) {
	cfg := gateway.Config{CallbackAllowedHosts: s.cfg.CallbackAllowedHosts, CallbackPublicHosts: s.cfg.CallbackPublicHosts, Provider: s,
		SystemUser: s.secrets[basicAuthUser], SystemPassword: s.secrets[basicAuthPassword]}
	if s.queue != nil {
		cfg.Queue = s.queue
	}
	s.gateway = gateway.New(cfg)
	for _, f := range s.functions {
		if f.deployed() {
			s.register(f)
		}
	}
	s.gateway.StartQueue()
	s.gwSrv = &http.Server{Handler: s.gateway, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go func() { _ = s.gwSrv.Serve(ln) }()
	s.log.printf("gateway", "listening on http://%s", s.cfg.GatewayAddr)
}

// stop takes everything down: the trigger first (no new deliveries), the
// gateway, the functions (they drain), stripe-mock and Mailpit, then Kafka.
func (s *stack) stop() {
	var tw sync.WaitGroup
	for _, t := range s.triggers {
		tw.Add(1)
		go func() { defer tw.Done(); t.stop(10 * time.Second) }()
	}
	tw.Wait()
	if s.gwSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.gwSrv.Shutdown(ctx)
		s.gateway.Close(ctx)
		cancel()
	}
	var wg sync.WaitGroup
	s.mu.Lock()
	fns := slices.Collect(maps.Values(s.fns))
	s.mu.Unlock()
	for _, f := range fns {
		f.mu.Lock()
		reps := append(slices.Clone(f.replicas), f.retiring...)
		f.mu.Unlock()
		for _, p := range reps {
			if p.done != nil {
				wg.Add(1)
				go func() { defer wg.Done(); p.stop(15 * time.Second) }()
			}
		}
	}
	if s.stripe != nil && s.stripe.done != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.stripe.stop(5 * time.Second) }()
	}
	if s.mailpit != nil && s.mailpit.done != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.mailpit.stop(5 * time.Second) }()
	}
	wg.Wait()
	if s.db != nil {
		s.db.Close()
	}
	if s.kafka != nil {
		s.kafka.Close()
	}
	if s.gwSrv != nil {
		s.log.printf("stack", "stopped")
	}
}
