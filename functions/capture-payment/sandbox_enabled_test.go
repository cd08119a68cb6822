package main

import (
	"bytes"
	"context"
	"errors"
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

	"github.com/billfn/billfn/shared/testenv"
)

// TestRefusesToStartWithASandboxRouteUnlessSandboxEnabled starts the real
// binary with a valid configuration: a route to the sandbox (which makes
// money from test cards) without SANDBOX_ENABLED=true set explicitly stops
// it before it opens anything, with a message naming the variable; with it,
// or with Stripe routes only, the function starts.
func TestRefusesToStartWithASandboxRouteUnlessSandboxEnabled(t *testing.T) {
	dir := t.TempDir()
	testenv.WriteOriginSecrets(t, dir, "capture-payment") // its origin key and the public keys (issue 15)
	bin := filepath.Join(dir, "capture-payment")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dbURL := testenv.DatabaseURL(t)
	run := func(routes, enabled string) (started bool, stderr string) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SECRETS_DIR=" + dir,
			"PORT=" + strconv.Itoa(port), "DATABASE_URL=" + dbURL, "REDIS_URL=" + testenv.RedisURL(),
			"JWT_PUBLIC_KEY=" + testenv.JWTPublicKey, "EVENT_SIGNING_KEYS=" + testenv.EventKey,
			"SANDBOX_WEBHOOK_SECRET=whsec_sandbox_enabled_test", "STRIPE_API_KEY=sk_test_123", "LOG_LEVEL=warn"}
		if routes != "" {
			env = append(env, "GATEWAY_ROUTES="+routes)
		}
		if enabled != "" {
			env = append(env, "SANDBOX_ENABLED="+enabled)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = env
		var errb bytes.Buffer
		cmd.Stderr = &errb
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		for {
			select {
			case err := <-exited:
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 {
					t.Errorf("GATEWAY_ROUTES=%q SANDBOX_ENABLED=%q: %v, want exit status 1", routes, enabled, err)
				}
				return false, errb.String()
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/_/health")
			if err == nil {
				resp.Body.Close()
				_ = cmd.Process.Signal(syscall.SIGTERM)
				<-exited
				return true, errb.String()
			}
		}
	}
	for _, tc := range []struct{ routes, enabled string }{
		{"", ""}, // the default route is the sandbox
		{"*=sandbox", ""},
		{"USD=stripe;EUR=stripe,sandbox", ""},
		{"*=sandbox", "false"},
		{"*=SANDBOX", "no"},
	} {
		started, msg := run(tc.routes, tc.enabled)
		if started {
			t.Errorf("GATEWAY_ROUTES=%q SANDBOX_ENABLED=%q: started", tc.routes, tc.enabled)
			continue
		}
		if !strings.Contains(msg, "SANDBOX_ENABLED=true") || !strings.Contains(msg, "sandbox gateway") {
			t.Errorf("GATEWAY_ROUTES=%q SANDBOX_ENABLED=%q: the message does not name SANDBOX_ENABLED=true and the sandbox gateway:\n%s", tc.routes, tc.enabled, msg)
		}
	}
	for _, tc := range []struct{ routes, enabled string }{
		{"*=sandbox", "true"},
		{"*=stripe", ""},
	} {
		if started, msg := run(tc.routes, tc.enabled); !started {
			t.Errorf("GATEWAY_ROUTES=%q SANDBOX_ENABLED=%q: did not start:\n%s", tc.routes, tc.enabled, msg)
		}
	}
}
