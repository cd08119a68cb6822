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
	"github.com/billfn/billfn/shared/events"
)

// keyDir writes a fresh Ed25519 key pair as the local stack does
// (bin/run/secrets/jwt-private-key and jwt-public-key) and returns the
// directory and the public key.
func keyDir(t *testing.T, dir string) string {
	t.Helper()
	priv, pub, err := auth.GenerateEd25519PEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwt-private-key"), []byte(priv), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jwt-public-key"), []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return pub
}

// unsetJWT removes the JWT_* variables for the test (an empty one would be
// read as set: JWT_ALG="" is no algorithm).
func unsetJWT(t *testing.T) {
	for _, k := range []string{"JWT_ALG", "JWT_SECRET", "JWT_PRIVATE_KEY", "JWT_PUBLIC_KEY", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_MAX_LIFETIME", "JWT_MAX_SERVICE_LIFETIME"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func verify(t *testing.T, publicKey, tok string) auth.Principal {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Alg: "EdDSA", PublicKey: publicKey, Issuer: "billfn", Audience: "billfn", Leeway: 30 * time.Second, MaxLifetime: auth.DefaultMaxLifetimes()})
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
	dir := t.TempDir()
	pub := keyDir(t, dir)
	t.Setenv("SECRETS_DIR", dir)
	unsetJWT(t)
	var subs []string
	for range 2 {
		tok, err := mint("", auth.RoleAdmin, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		p := verify(t, pub, tok)
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
	if p := verify(t, pub, tok); p.Subject != "6f1c7e0a-0000-4000-8000-000000000001" || p.Role != auth.RoleCustomer {
		t.Errorf("-sub did not override: %+v", p)
	}
	if _, err := mint("not-a-uuid", auth.RoleAdmin, time.Hour); err == nil {
		t.Error("a -sub that is not a UUID was accepted")
	}
}

// A -ttl the functions would refuse (longer than JWT_MAX_LIFETIME, or for
// a service token JWT_MAX_SERVICE_LIFETIME) is refused with the variable
// named; the longest allowed is minted and verifies.
func TestDevtokenRefusesATTLTheFunctionsWouldRefuse(t *testing.T) {
	dir := t.TempDir()
	pub := keyDir(t, dir)
	t.Setenv("SECRETS_DIR", dir)
	unsetJWT(t)
	for _, tc := range []struct {
		role auth.Role
		ttl  time.Duration
		name string
	}{
		{auth.RoleCustomer, 25 * time.Hour, "JWT_MAX_LIFETIME"},
		{auth.RoleAdmin, 365 * 24 * time.Hour, "JWT_MAX_LIFETIME"},
		{auth.RoleService, 91 * 24 * time.Hour, "JWT_MAX_SERVICE_LIFETIME"},
	} {
		if tok, err := mint("", tc.role, tc.ttl); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("-role %s -ttl %v: %q, %v; want an error naming %s", tc.role, tc.ttl, tok, err, tc.name)
		}
	}
	for role, ttl := range map[auth.Role]time.Duration{auth.RoleCustomer: 24 * time.Hour, auth.RoleAdmin: 24 * time.Hour, auth.RoleService: 90 * 24 * time.Hour} {
		tok, err := mint("", role, ttl)
		if err != nil {
			t.Fatalf("-role %s -ttl %v: %v", role, ttl, err)
		}
		if p := verify(t, pub, tok); p.Role != role {
			t.Errorf("role %s", p.Role)
		}
	}
	// The maximum is the one configured, as for the functions.
	t.Setenv("JWT_MAX_LIFETIME", "1h")
	if _, err := mint("", auth.RoleAdmin, 2*time.Hour); err == nil {
		t.Error("JWT_MAX_LIFETIME=1h: a 2h token was minted")
	}
	t.Setenv("JWT_MAX_LIFETIME", "0")
	if _, err := mint("", auth.RoleAdmin, time.Minute); err == nil || !strings.Contains(err.Error(), "JWT_MAX_LIFETIME") {
		t.Errorf("JWT_MAX_LIFETIME=0: %v; want an error naming it", err)
	}
}

// Without a private key there is no token: no public fallback secret.
func TestNoKeyNoToken(t *testing.T) {
	t.Setenv("SECRETS_DIR", t.TempDir())
	unsetJWT(t)
	if tok, err := mint("", auth.RoleAdmin, time.Hour); err == nil {
		t.Fatalf("minted %s without any key", tok)
	}
}

// make token signs with the running stack's private key (bin/run/secrets),
// so the stack accepts what it prints; twice, the same subject.
func TestMakeTokenUsesTheStacksSecretAndOneSubject(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed")
	}
	root, _ := filepath.Abs("../..")
	run := t.TempDir()
	pub := keyDir(t, filepath.Join(run, "secrets"))
	var subs []string
	for range 2 {
		cmd := exec.Command("make", "-s", "token")
		cmd.Dir = root
		unsetJWT(t)
		cmd.Env = append(os.Environ(), "BILLFN_RUN_DIR="+run, "SECRETS_DIR=", "SUB=", "ROLE=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make token: %v\n%s", err, out)
		}
		subs = append(subs, verify(t, pub, strings.TrimSpace(string(out))).Subject)
	}
	if subs[0] != subs[1] || subs[0] != localdev.AdminSubject {
		t.Errorf("make token twice: %v, want %s twice", subs, localdev.AdminSubject)
	}
}

// The docs' `go run ./cmd/devtoken -role customer -sub <uuid>`, from the
// repository with the local stack's secrets in place and no SECRETS_DIR,
// signs with the stack's key as make token does; it used to answer "no
// JWT private key" while the stack ran.
func TestDevtokenFindsTheLocalStacksKey(t *testing.T) {
	root, _ := filepath.Abs("../..")
	run := t.TempDir()
	pub := keyDir(t, filepath.Join(run, "secrets"))
	const sub = "6f1c7e0a-0000-4000-8000-000000000001"
	cmd := exec.Command("go", "run", "./cmd/devtoken", "-role", "customer", "-sub", sub)
	cmd.Dir = root
	unsetJWT(t)
	t.Setenv("SECRETS_DIR", "")
	os.Unsetenv("SECRETS_DIR")
	cmd.Env = append(os.Environ(), "BILLFN_RUN_DIR="+run)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run ./cmd/devtoken: %v\n%s", err, out)
	}
	if p := verify(t, pub, strings.TrimSpace(string(out))); p.Subject != sub || p.Role != auth.RoleCustomer {
		t.Errorf("the token names %+v", p)
	}
}

// The cluster's secrets come from the template with nothing left a
// placeholder: the functions' public key verifies the service token, the
// private key stays outside the directory that is deployed, and a second
// run keeps the generated values.
func TestClusterSecretsFromTheTemplate(t *testing.T) {
	root, _ := filepath.Abs("../..")
	base := t.TempDir()
	dir, priv := filepath.Join(base, "secrets"), filepath.Join(base, "jwt-private-key")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	names, err := clusterSecrets(dir, priv, filepath.Join(root, "knative/infra/secrets.env"))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(names) {
		t.Errorf("%d files for %d secrets", len(entries), len(names))
	}
	for _, n := range names {
		if n == "jwt-private-key" || n == "jwt-secret" {
			t.Errorf("the deployed secrets hold %s", n)
		}
		v := read(n)
		if strings.ContainsAny(v, "<>") || strings.TrimSpace(v) == "" {
			t.Errorf("%s = %q: a placeholder is left", n, v)
		}
		if fi, _ := os.Stat(filepath.Join(dir, n)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", n, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(priv); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v, %v", fi, err)
	}
	p := verify(t, read("jwt-public-key"), read("service-token"))
	if p.Role != auth.RoleService {
		t.Errorf("service token role %s", p.Role)
	}
	if !strings.Contains(read("database-url"), ":"+read("postgres-password")+"@postgres.billfn.svc.cluster.local:5432/") {
		t.Errorf("database-url %q does not use the generated postgres-password", read("database-url"))
	}
	if len(read("event-signing-key")) < 32 {
		t.Error("event-signing-key is shorter than 32 bytes")
	}
	// Origin keys: each function's private key, deployed; every public
	// key, the integrator's too, in origin-public-keys; the integrator's
	// private key beside the JWT key, never in the deployed directory.
	ks, err := events.ParseOriginKeys(read("origin-public-keys"), "origin-public-keys")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range events.Functions {
		s, err := events.ParseOriginSigner([]byte(read("origin-key-" + f)))
		if err != nil || !ks.Holds(events.Source(f), s.Public()) {
			t.Errorf("origin-key-%s: %v, or its public key is not %s's in origin-public-keys", f, err, events.Source(f))
		}
	}
	integ, err := os.ReadFile(filepath.Join(base, "origin-key-integrator"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := events.ParseOriginSigner(integ); err != nil || !ks.Holds("/integrators/default", s.Public()) {
		t.Errorf("the integrator's key: %v, or not in origin-public-keys", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "origin-key-integrator")); err == nil {
		t.Error("the integrator's private key is among the deployed secrets")
	}
	first := map[string]string{}
	for _, n := range names {
		first[n] = read(n)
	}
	if _, err := clusterSecrets(dir, priv, filepath.Join(root, "knative/infra/secrets.env")); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n != "service-token" && read(n) != first[n] {
			t.Errorf("%s changed on the second run", n)
		}
	}
	// A template that names a secret nothing generates is refused.
	bad := filepath.Join(base, "bad.env")
	os.WriteFile(bad, []byte("database-url=postgres://billfn:<nope-password>@db/billfn\n"), 0o600)
	if _, err := clusterSecrets(filepath.Join(base, "bad"), priv, bad); err == nil {
		t.Error("an unresolved placeholder was accepted")
	}
	os.WriteFile(bad, []byte("jwt-private-key=<the private key>\n"), 0o600)
	if _, err := clusterSecrets(filepath.Join(base, "bad"), priv, bad); err == nil {
		t.Error("a template handing the cluster the private key was accepted")
	}
}

// The cluster's service token lives no longer than the deployment lets a
// service token live: with JWT_MAX_SERVICE_LIFETIME lowered (set where
// make deploy-secrets runs, as in the deployment), a 90-day token would
// get 401 from every function.
func TestClusterServiceTokenLivesNoLongerThanTheConfiguredMaximum(t *testing.T) {
	root, _ := filepath.Abs("../..")
	unsetJWT(t)
	t.Setenv("JWT_MAX_SERVICE_LIFETIME", "720h")
	base := t.TempDir()
	dir := filepath.Join(base, "secrets")
	if _, err := clusterSecrets(dir, filepath.Join(base, "jwt-private-key"), filepath.Join(root, "knative/infra/secrets.env")); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "jwt-public-key"))
	tok, _ := os.ReadFile(filepath.Join(dir, "service-token"))
	v, err := auth.NewVerifier(auth.Config{Alg: "EdDSA", PublicKey: string(pub), Issuer: "billfn", Audience: "billfn", Leeway: 30 * time.Second,
		MaxLifetime: auth.MaxLifetimes{User: 24 * time.Hour, Service: 720 * time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(string(tok)); err != nil {
		t.Errorf("JWT_MAX_SERVICE_LIFETIME=720h: the cluster's service token is refused by a function configured alike: %v", err)
	}
	t.Setenv("JWT_MAX_SERVICE_LIFETIME", "0")
	if _, err := clusterSecrets(filepath.Join(base, "zero"), filepath.Join(base, "jwt-private-key"), filepath.Join(root, "knative/infra/secrets.env")); err == nil || !strings.Contains(err.Error(), "JWT_MAX_SERVICE_LIFETIME") {
		t.Errorf("JWT_MAX_SERVICE_LIFETIME=0: %v; want an error naming it", err)
	}
	if _, err := os.Stat(filepath.Join(base, "zero")); !os.IsNotExist(err) {
		t.Errorf("JWT_MAX_SERVICE_LIFETIME=0: the secrets directory was made (%v)", err)
	}
}
