package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/cmd/internal/localdev"
	"github.com/billfn/billfn/shared/auth"
)

func verify(t *testing.T, secret, tok string) auth.Principal {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Alg: "HS256", Secret: secret, Issuer: "billfn", Audience: "billfn", Leeway: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("the token does not verify: %v", err)
	}
	return p
}

// Every call names the same admin, the banner's: an Idempotency-Key
// retried after re-exporting the token still replays.
func TestTokenTwiceIsTheSameAdmin(t *testing.T) {
	t.Setenv("SECRETS_DIR", t.TempDir())
	t.Setenv("JWT_SECRET", "")
	var subs []string
	for range 2 {
		tok, err := mint("", auth.RoleAdmin, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		p := verify(t, auth.LocalDevSecret, tok)
		if p.Role != auth.RoleAdmin {
			t.Errorf("role %s", p.Role)
		}
		subs = append(subs, p.Subject)
	}
	if subs[0] != subs[1] || subs[0] != localdev.AdminSubject {
		t.Errorf("subjects %v, want %s twice", subs, localdev.AdminSubject)
	}
	tok, err := mint("6f1c7e0a-0000-4000-8000-000000000001", auth.RoleCustomer, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p := verify(t, auth.LocalDevSecret, tok); p.Subject != "6f1c7e0a-0000-4000-8000-000000000001" || p.Role != auth.RoleCustomer {
		t.Errorf("-sub did not override: %+v", p)
	}
	if _, err := mint("not-a-uuid", auth.RoleAdmin, time.Hour); err == nil {
		t.Error("a -sub that is not a UUID was accepted")
	}
}

// make token signs with the running stack's secret (bin/run/secrets), so
// the stack accepts what it prints; twice, the same subject.
func TestMakeTokenUsesTheStacksSecretAndOneSubject(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed")
	}
	root, _ := filepath.Abs("../..")
	run := t.TempDir()
	if err := os.MkdirAll(filepath.Join(run, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	secret := strings.Repeat("s", 40)
	if err := os.WriteFile(filepath.Join(run, "secrets", "jwt-secret"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	var subs []string
	for range 2 {
		cmd := exec.Command("make", "-s", "token")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "BILLFN_RUN_DIR="+run, "JWT_SECRET=", "SECRETS_DIR=", "SUB=", "ROLE=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make token: %v\n%s", err, out)
		}
		subs = append(subs, verify(t, secret, strings.TrimSpace(string(out))).Subject)
	}
	if subs[0] != subs[1] || subs[0] != localdev.AdminSubject {
		t.Errorf("make token twice: %v, want %s twice", subs, localdev.AdminSubject)
	}
}
