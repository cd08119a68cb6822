package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/gateway"
	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startHandleWebhook builds handle-webhook and runs it as its own process
// (as the local stack does) on port, against this test's database, Redis
// and Kafka.
func startHandleWebhook(t *testing.T, port int, brokers []string, sandboxSecret string) string {
	t.Helper()
	dir := t.TempDir()
	testenv.WriteOriginSecrets(t, dir, "handle-webhook")
	bin := filepath.Join(dir, "handle-webhook")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/billfn/billfn/functions/handle-webhook").CombinedOutput(); err != nil {
		t.Fatalf("build handle-webhook: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"PORT="+strconv.Itoa(port),
		"DATABASE_URL="+testenv.DatabaseURL(t),
		"REDIS_URL="+testenv.RedisURL(),
		"REDIS_PREFIX=billfn-test:e2e:"+strconv.Itoa(port)+":",
		"KAFKA_BROKERS="+strings.Join(brokers, ","),
		"JWT_PUBLIC_KEY="+testenv.JWTPublicKey,
		"EVENT_SIGNING_KEYS="+testenv.EventKey,
		"SANDBOX_WEBHOOK_SECRET="+sandboxSecret,
		"STRIPE_WEBHOOK_SECRET=whsec_e2e",
		"SECRETS_DIR="+dir,
		"LOG_LEVEL=warn",
	)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/_/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("handle-webhook not ready after 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEndToEndSandboxWebhookThroughHandleWebhookSettlesThePayment is the
// path of a delayed payment: the sandbox settles and sends its signed
// webhook to handle-webhook (a real process), whose outbox puts the
// normalized event on Kafka; read back from Kafka and delivered as the
// kafka-trigger delivers it, it moves the payment to succeeded.
func TestEndToEndSandboxWebhookThroughHandleWebhookSettlesThePayment(t *testing.T) {
	const secret = "sandbox-e2e-secret"
	port := freePort(t)
	g := newRig(t, func(c *Config) {
		c.SandboxWebhooks, c.SandboxWebhookSecret = gateway.WebhooksAsync, secret
		c.SandboxWebhookURL = "http://127.0.0.1:" + strconv.Itoa(port) + "/sandbox"
		c.SandboxSettleDelay = config.Duration(5 * time.Second)
		c.ReconcileAfter = config.Duration(time.Hour) // the webhook, not reconciliation, settles it
	})
	hw := startHandleWebhook(t, port, g.kit.Brokers, secret)

	p := g.pay(4321, "USD", "pm_sandbox_delayed", "automatic", true)
	if p.Status != payments.Processing {
		t.Fatalf("delayed payment: %s", p.Status)
	}
	g.clock.Advance(6 * time.Second)
	g.tick() // the sandbox settles and sends its webhook
	var unsent int
	_ = g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM sandbox_webhooks WHERE sent_at IS NULL`).Scan(&unsent)
	if unsent != 0 {
		t.Fatalf("%d sandbox webhooks not delivered to handle-webhook", unsent)
	}
	if got := g.get(p.ID); got.Status != payments.Processing {
		t.Fatalf("settled before the event came back: %s", got.Status)
	}

	updates := g.consume(events.TopicPayment, 1, func(r record) bool {
		return r.Event.Type() == "billfn.payment.gateway_updated" && r.Key == p.ID
	})
	if len(updates) != 1 {
		t.Fatal("handle-webhook's gateway_updated never reached Kafka")
	}
	if rec := g.deliver(updates[0].Event); rec.Code != 200 {
		t.Fatalf("delivery to capture-payment: %d %s", rec.Code, rec.Body)
	}
	got := g.get(p.ID)
	if got.Status != payments.Succeeded || got.AmountCaptured != 4321 {
		t.Fatalf("after the gateway's webhook: %+v", got)
	}
	if rec := g.deliver(updates[0].Event); rec.Code != 200 { // the trigger redelivers
		t.Fatalf("redelivery: %d", rec.Code)
	}
	if n := len(postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))); n != 1 {
		t.Fatalf("%d capture postings", n)
	}

	// handle-webhook kept the delivery for audit.
	req, _ := http.NewRequest("GET", hw+"/events?gateway=sandbox&status=processed&limit=100", nil)
	req.Header.Set("Authorization", "Bearer "+g.kit.Token(t, g.admin, auth.RoleAdmin))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			Type      string  `json:"type"`
			PaymentID *string `json:"payment_id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /events: %d %v", resp.StatusCode, err)
	}
	found := false
	for _, d := range list.Data {
		found = found || (d.PaymentID != nil && *d.PaymentID == p.ID && d.Type == "payment_intent.succeeded")
	}
	if !found {
		t.Fatalf("handle-webhook has no processed delivery for the payment: %+v", list.Data)
	}
}
