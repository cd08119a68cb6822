package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/google/uuid"

	"github.com/billfn/billfn/cmd/internal/kafkaacl"
	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/platform"
)

// TestLocalStackEndToEnd builds and starts the whole local stack on free
// ports, as make run does, and drives it from outside: an HTTP call through
// the gateway with a JWT, a CloudEvent produced into Kafka with a real client
// reaching its function, a schedule tick's effect, a function killed and
// restarted, and a stop that leaves no process behind.
func TestLocalStackEndToEnd(t *testing.T) {
	e := startStack(t, stackOptions{createDatabase: true})
	kafkaAddr, marker, out := e.kafka, e.marker, e.out

	t.Run("the gateway lists the functions with their annotations", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, e.gateway+"/system/functions", nil)
		req.SetBasicAuth(e.secret(basicAuthUser), e.secret(basicAuthPassword))
		res, err := e.client.Do(req)
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
		body, _ := events.Marshal(e.asIntegrator(t, ev))
		// as the integrator: the principal allowed to request transfers
		pcfg := outbox.ProducerConfig()
		if err := e.kafkaAs(kafkaacl.Integrator).Apply(pcfg); err != nil {
			t.Fatal(err)
		}
		p, err := sarama.NewSyncProducer([]string{kafkaAddr}, pcfg)
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
	e.stop()
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
	if first["database-url"] != cfg.DatabaseURL || first["stripe-api-key"] != localStripeKey || first["smtp-url"] != "smtp://"+cfg.MailpitSMTPAddr+"?starttls=none" {
		t.Errorf("got %v", first)
	}
	if !strings.HasPrefix(first["stripe-webhook-secret"], "whsec_") {
		t.Errorf("stripe-webhook-secret %q", first["stripe-webhook-secret"])
	}
	if _, ok := first["jwt-secret"]; ok {
		t.Error("the stack still writes an HS256 jwt-secret")
	}
	// The key pair: the service token verifies with the public key the
	// functions get.
	v, err := auth.NewVerifier(auth.Config{Alg: "EdDSA", PublicKey: first[jwtPublicKey], Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(first["service-token"]); err != nil || p.Role != auth.RoleService {
		t.Errorf("service token: %+v, %v", p, err)
	}
	second, err := writeSecrets(dir, cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"event-signing-key", "sandbox-webhook-secret", jwtPrivateKey, jwtPublicKey} {
		if second[name] != first[name] {
			t.Errorf("generated secret %s changed across restarts", name)
		}
	}
	for _, name := range []string{jwtPrivateKey, "event-signing-key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v", name, fi.Mode(), err)
		}
	}
	if !strings.Contains(first[jwtPrivateKey], "BEGIN PRIVATE KEY") || !strings.Contains(first[jwtPublicKey], "BEGIN PUBLIC KEY") {
		t.Errorf("the key pair is not PEM PKCS#8 / PKIX")
	}
}

// The functions and the kafka-trigger get a secrets directory of their own
// (SECRETS_DIR): what stack.yml declares for them, never the private key
// that signs the stack's tokens, and of the Kafka passwords only their own.
func TestFunctionsGetNoPrivateKey(t *testing.T) {
	cfg, err := loadConfig(func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.RunDir = t.TempDir()
	cfg.StackFile = filepath.Join("..", "..", "stack.yml")
	st, err := stackfile.Load(cfg.StackFile, cfg.lookup)
	if err != nil {
		t.Fatal(err)
	}
	// What an older stack left in its secrets directory does not leak in.
	old := filepath.Join(cfg.secretsDir(), functionsSubdir)
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(old, "jwt-secret"), []byte("old"), 0o600)
	os.WriteFile(filepath.Join(old, jwtPrivateKey), []byte("old"), 0o600)
	all, err := writeSecrets(cfg.secretsDir(), cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	common := map[string]bool{"event-signing-key": true, jwtPublicKey: true, originPublicKeysSecret: true}
	for _, name := range st.Names() {
		for _, sec := range st.Functions[name].Secrets {
			if !isKafkaPassword(sec) && !isOriginKey(sec) {
				common[sec] = true
			}
		}
	}
	top, err := os.ReadDir(old)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range top {
		if !e.IsDir() || !slices.Contains(processNames(st), e.Name()) {
			t.Errorf("%s holds %s, no process's directory", old, e.Name())
		}
	}
	for _, proc := range processNames(st) {
		want := maps.Clone(common)
		want["kafka-password-"+proc] = true // its own, and no other
		if slices.Contains(st.Names(), proc) {
			want[platform.OriginKeySecret(proc)] = true // its own origin key, and no other (not the integrator's)
		}
		entries, err := os.ReadDir(cfg.functionSecretsDir(proc))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, e := range entries {
			got[e.Name()] = true
			b, _ := os.ReadFile(filepath.Join(cfg.functionSecretsDir(proc), e.Name()))
			if !want[e.Name()] {
				t.Errorf("%s's secrets hold %s, which stack.yml does not give it", proc, e.Name())
			}
			if (strings.Contains(string(b), "PRIVATE KEY") && e.Name() != platform.OriginKeySecret(proc)) || strings.Contains(string(b), strings.TrimSpace(all[jwtPrivateKey])) {
				t.Errorf("%s's %s holds the private key", proc, e.Name())
			}
			if string(b) != all[e.Name()] {
				t.Errorf("%s's %s differs from the stack's", proc, e.Name())
			}
		}
		for name := range want {
			if !got[name] {
				t.Errorf("%s's secrets lack %s", proc, name)
			}
		}
	}
	// Every child is pointed at its own directory, none at the issuer's.
	var b []byte
	for _, src := range []string{"run.go", "provider.go"} {
		part, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, part...)
	}
	sets := regexp.MustCompile(`"SECRETS_DIR="\+([a-zA-Z.]+)\([a-zA-Z.]+\)`).FindAllStringSubmatch(string(b), -1)
	if len(sets) < 2 {
		t.Errorf("run.go and provider.go set SECRETS_DIR %d times; want the functions' and the kafka-trigger's", len(sets))
	}
	for _, m := range sets {
		if !strings.HasSuffix(m[1], ".functionSecretsDir") {
			t.Errorf("the stack hands a child SECRETS_DIR=%s(), not functionSecretsDir()", m[1])
		}
	}
	// A stack.yml that gives a function the private key does not start.
	bad := *st
	bad.Functions = maps.Clone(st.Functions)
	f := *bad.Functions["aggregate-report"]
	f.Secrets = append(slices.Clone(f.Secrets), jwtPrivateKey)
	bad.Functions["aggregate-report"] = &f
	if _, err := writeSecrets(t.TempDir(), cfg, &bad); err == nil {
		t.Error("a function was given jwt-private-key")
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
		!cfg.usesStripeMock(cp["STRIPE_API_BASE"]) || cp["GATEWAY_ROUTES"] != "*=sandbox" || cp["SANDBOX_ENABLED"] != "true" {
		t.Errorf("capture-payment environment %v", cp)
	}
	for _, bad := range []map[string]string{{"BILLFN_FUNCTION_PORT": "x"}, {"BILLFN_GATEWAY_ADDR": "8080"}, {"BILLFN_TICK_EVERY": "10ms"}} {
		if _, err := loadConfig(func(k string) (string, bool) { v, ok := bad[k]; return v, ok }); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
