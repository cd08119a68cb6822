package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// freePorts returns n consecutive free loopback ports.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for attempt := 0; attempt < 100; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if base+n > 65000 {
			continue
		}
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

type e2e struct {
	t       *testing.T
	gateway string
	kafka   string
	token   string
	out     *syncBuffer
	client  *http.Client
}

func (e *e2e) call(method, path string, body any, headers ...string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.gateway+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(res.Body)
	_ = json.Unmarshal(raw, &out)
	return res.StatusCode, out
}

func (e *e2e) eventually(what string, d time.Duration, ok func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLocalStackEndToEnd builds and starts the whole local stack on free
// ports, as make run does, and drives it from outside: an HTTP call through
// the gateway with a JWT, a CloudEvent produced into Kafka with a real client
// reaching its function, a schedule tick's effect, a function killed and
// restarted, and a stop that leaves no process behind.
func TestLocalStackEndToEnd(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "functions", "process-transaction", "main.go")); err != nil {
		t.Fatalf("the end-to-end test drives process-transaction: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "stack")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/stack: %v\n%s", err, out)
	}

	base := freePorts(t, 9)
	gatewayAddr := "127.0.0.1:" + strconv.Itoa(base)
	kafkaAddr := "127.0.0.1:" + strconv.Itoa(base+1)
	triggerAddr := "127.0.0.1:" + strconv.Itoa(base+2)
	stripeAddr := "127.0.0.1:" + strconv.Itoa(base+3)
	functionPort := base + 4

	// A database that does not exist yet: the stack creates and migrates it.
	dbName := fmt.Sprintf("billfn_test_%d_e2e_%s", os.Getpid(), strings.ReplaceAll(uuid.NewString()[:8], "-", ""))
	dbURL, err := postgres.ReplaceDatabase(testenv.PostgresURL(), dbName)
	if err != nil {
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
	rdb, prefix := testenv.Redis(t) // deletes the prefix's keys at the end
	_ = rdb

	marker := "e2e-" + uuid.NewString()
	cmd := exec.Command(bin)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"BILLFN_GATEWAY_ADDR="+gatewayAddr, "BILLFN_KAFKA_ADDR="+kafkaAddr, "BILLFN_TRIGGER_ADDR="+triggerAddr,
		"STRIPE_MOCK_ADDR="+stripeAddr, "BILLFN_FUNCTION_PORT="+strconv.Itoa(functionPort),
		"BILLFN_RUN_DIR="+t.TempDir(), "BILLFN_TICK_EVERY=1s", "BILLFN_STACK_ID="+marker,
		"DATABASE_URL="+dbURL, "REDIS_URL="+testenv.RedisURL(), "REDIS_PREFIX="+prefix,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncBuffer{}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			fmt.Fprintln(out, sc.Text())
			if strings.Contains(sc.Text(), "Ctrl-C stops everything") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// Whatever survived is a bug; do not let it outlive the test.
		for _, pid := range leftovers(marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("stack output:\n%s", out.String())
		}
	})
	select {
	case <-ready:
	case err := <-exited:
		t.Fatalf("the stack exited before it was ready: %v", err)
	case <-time.After(4 * time.Minute):
		t.Fatal("the stack was not ready within 4 minutes")
	}

	token, err := auth.NewHS256Signer(auth.LocalDevSecret, "billfn", "billfn").Sign(adminSubject, auth.RoleAdmin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e{t: t, gateway: "http://" + gatewayAddr, kafka: kafkaAddr, token: token, out: out, client: &http.Client{Timeout: 15 * time.Second}}

	t.Run("the gateway lists the functions with their annotations", func(t *testing.T) {
		res, err := e.client.Get(e.gateway + "/system/functions")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var fns []struct {
			Name        string            `json:"name"`
			Annotations map[string]string `json:"annotations"`
			Replicas    int               `json:"replicas"`
		}
		if err := json.NewDecoder(res.Body).Decode(&fns); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range fns {
			if f.Name == "process-transaction" {
				found = f.Annotations["topic"] == "transaction-events,cron-function" && f.Replicas == 1
			}
		}
		if !found {
			t.Errorf("process-transaction missing or wrong in %+v", fns)
		}
	})

	// An account through the gateway with a JWT.
	status, acct := e.call(http.MethodPost, "/function/process-transaction/accounts",
		map[string]any{"currency": "USD", "user_id": adminSubject}, "Idempotency-Key", uuid.NewString())
	if status != http.StatusCreated {
		t.Fatalf("create account: %d %v", status, acct)
	}
	accountID := acct["id"].(string)

	t.Run("a CloudEvent produced into Kafka reaches its function", func(t *testing.T) {
		ev := events.Must(events.New(context.Background(), "e2e", "billfn.transaction.requested", accountID, map[string]any{
			"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": accountID, "amount": 1050, "currency": "USD",
			"reference_id": "e2e-top-up",
		}))
		body, _ := events.Marshal(ev)
		p, err := sarama.NewSyncProducer([]string{kafkaAddr}, outbox.ProducerConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: events.TopicTransaction, Key: sarama.StringEncoder(accountID),
			Value: sarama.ByteEncoder(body), Headers: []sarama.RecordHeader{{Key: []byte("content-type"), Value: []byte(events.ContentTypeStructured)}}}); err != nil {
			t.Fatal(err)
		}
		e.eventually("the top-up on the account", 30*time.Second, func() bool {
			_, a := e.call(http.MethodGet, "/function/process-transaction/accounts/"+accountID, nil)
			return a["balance"] == 1050.0
		})
	})

	t.Run("an unsigned delivery through the gateway is refused", func(t *testing.T) {
		ev := events.Must(events.New(context.Background(), "forger", "billfn.transaction.requested", accountID, map[string]any{
			"from_account_id": accountID, "to_account_number": "SYS-EXTERNAL-USD", "amount": 1050, "currency": "USD"}))
		body, _ := events.Marshal(ev)
		res, err := http.Post(e.gateway+"/function/process-transaction/", events.ContentTypeStructured, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("a forged delivery got %d", res.StatusCode)
		}
	})

	t.Run("a schedule tick expires a hold", func(t *testing.T) {
		expires := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
		status, hold := e.call(http.MethodPost, "/function/process-transaction/transfers", map[string]any{
			"from_account_id": accountID, "to_account_number": "SYS-CLEARING-USD", "amount": 50, "currency": "USD",
			"pending": true, "expires_at": expires}, "Idempotency-Key", uuid.NewString())
		if status != http.StatusCreated || hold["status"] != "held" {
			t.Fatalf("hold: %d %v", status, hold)
		}
		e.eventually("the tick to expire the hold", 20*time.Second, func() bool {
			_, tr := e.call(http.MethodGet, "/function/process-transaction/transfers/"+hold["id"].(string), nil)
			return tr["status"] == "expired"
		})
	})

	t.Run("a function killed with SIGKILL is restarted", func(t *testing.T) {
		var pid int
		for _, p := range leftovers(marker) {
			exe, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(p), "exe"))
			if filepath.Base(exe) == "process-transaction" {
				pid = p
			}
		}
		if pid == 0 {
			t.Fatal("no process-transaction process")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		e.eventually("the restart", 30*time.Second, func() bool {
			if !strings.Contains(out.String(), "process-transaction exited (killed by signal 9") {
				return false
			}
			status, a := e.call(http.MethodGet, "/function/process-transaction/accounts/"+accountID, nil)
			return status == http.StatusOK && a["balance"] == 1050.0
		})
	})

	// Ctrl-C: everything stops, nothing is left behind.
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("the stack exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the stack did not stop within 60 s of SIGINT")
	}
	time.Sleep(200 * time.Millisecond)
	if pids := leftovers(marker); len(pids) > 0 {
		t.Errorf("processes left behind: %v", pids)
	}
	if !strings.Contains(out.String(), "stack") || !strings.Contains(out.String(), "stopped") {
		t.Errorf("no clean stop in the output")
	}
}

// TestStackRefusesAPortInUseInOneLine checks the message a developer sees
// when another stack already runs.
func TestStackRefusesAPortInUseInOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg, err := loadConfig(func(k string) (string, bool) {
		if k == "BILLFN_GATEWAY_ADDR" {
			return ln.Addr().String(), true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.StackFile = filepath.Join("..", "..", "stack.yml")
	var buf bytes.Buffer
	err = run(context.Background(), cfg, &buf)
	ue, ok := err.(userError)
	if !ok || !strings.Contains(ue.msg, ln.Addr().String()) || !strings.Contains(ue.msg, "BILLFN_GATEWAY_ADDR") || strings.Contains(ue.msg, "\n") {
		t.Errorf("got %T %v", err, err)
	}
}

func TestStackWritesEverySecretStackYMLNames(t *testing.T) {
	cfg, err := loadConfig(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.StackFile = filepath.Join("..", "..", "stack.yml")
	st, err := stackfile.Load(cfg.StackFile, cfg.lookup)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first, err := writeSecrets(dir, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range st.Names() {
		for _, sec := range st.Functions[name].Secrets {
			b, err := os.ReadFile(filepath.Join(dir, sec))
			if err != nil || len(b) == 0 {
				t.Errorf("%s's secret %s was not written: %v", name, sec, err)
			}
		}
	}
	if first["jwt-secret"] != auth.LocalDevSecret {
		t.Error("the local JWT secret is not the one cmd/devtoken signs with")
	}
	if first["database-url"] != cfg.DatabaseURL || first["stripe-api-key"] != localStripeKey {
		t.Errorf("got %v", first)
	}
	if !strings.HasPrefix(first["stripe-webhook-secret"], "whsec_") {
		t.Errorf("stripe-webhook-secret %q", first["stripe-webhook-secret"])
	}
	second, err := writeSecrets(dir, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	if second["event-signing-key"] != first["event-signing-key"] || second["sandbox-webhook-secret"] != first["sandbox-webhook-secret"] {
		t.Error("generated secrets changed across restarts")
	}
	fi, err := os.Stat(filepath.Join(dir, "jwt-secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %v", fi.Mode())
	}
}

func TestStackConfigSubstitutesItsOwnAddresses(t *testing.T) {
	env := map[string]string{"BILLFN_KAFKA_ADDR": "127.0.0.1:1234", "BILLFN_GATEWAY_ADDR": "127.0.0.1:4321", "KAFKA_BROKERS": "elsewhere:9092"}
	cfg, err := loadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	st, err := stackfile.Load(filepath.Join("..", "..", "stack.yml"), cfg.lookup)
	if err != nil {
		t.Fatal(err)
	}
	cp := st.Functions["capture-payment"].Environment
	if cp["KAFKA_BROKERS"] != "127.0.0.1:1234" || cp["SANDBOX_WEBHOOK_URL"] != "http://127.0.0.1:4321/function/handle-webhook/sandbox" ||
		!cfg.usesStripeMock(cp["STRIPE_API_BASE"]) {
		t.Errorf("capture-payment environment %v", cp)
	}
	for _, bad := range []map[string]string{{"BILLFN_FUNCTION_PORT": "x"}, {"BILLFN_GATEWAY_ADDR": "8080"}, {"BILLFN_TICK_EVERY": "10ms"}} {
		if _, err := loadConfig(func(k string) (string, bool) { v, ok := bad[k]; return v, ok }); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
