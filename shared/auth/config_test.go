package auth_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
)

// unsetenv clears keys for the test, restoring them afterwards.
func unsetenv(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// secretsDir points SECRETS_DIR at a directory holding files.
func secretsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(config.SecretsDirEnv, dir)
	return dir
}

func TestLoadFillsTheAuthConfigFromASecretFile(t *testing.T) {
	unsetenv(t, "JWT_ALG", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_LEEWAY", "JWT_MAX_LIFETIME", "JWT_MAX_SERVICE_LIFETIME")
	_, pub, err := auth.GenerateEd25519PEM()
	if err != nil {
		t.Fatal(err)
	}
	secretsDir(t, map[string]string{"jwt-public-key": pub})
	var cfg auth.Config
	if err := config.Load(&cfg); err != nil {
		t.Fatalf("Load: %v", err)
	}
	// EdDSA is the default: the public key file is all a function needs.
	if cfg.Alg != "EdDSA" || cfg.PublicKey != strings.TrimSpace(pub) || cfg.Secret != "" ||
		cfg.Issuer != "billfn" || cfg.Audience != "billfn" || cfg.Leeway != 30*time.Second ||
		cfg.MaxLifetime != auth.DefaultMaxLifetimes() || cfg.MaxLifetime.User != 24*time.Hour || cfg.MaxLifetime.Service != 90*24*time.Hour {
		t.Fatalf("Load filled %+v", cfg)
	}
	if _, err := auth.NewVerifier(cfg); err != nil {
		t.Fatalf("NewVerifier on the loaded config: %v", err)
	}
}

// HS256 stays available, opt-in: JWT_ALG=HS256 and the jwt-secret file.
func TestLoadFillsAnExplicitHS256ConfigFromASecretFile(t *testing.T) {
	unsetenv(t, "JWT_ALG", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_LEEWAY")
	t.Setenv("JWT_ALG", "HS256")
	secretsDir(t, map[string]string{"jwt-secret": "0123456789abcdef0123456789abcdef\n"})
	var cfg auth.Config
	if err := config.Load(&cfg); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Alg != "HS256" || cfg.Secret != "0123456789abcdef0123456789abcdef" || cfg.PublicKey != "" {
		t.Fatalf("Load filled %+v", cfg)
	}
	if _, err := auth.NewVerifier(cfg); err != nil {
		t.Fatalf("NewVerifier on the loaded config: %v", err)
	}
}

// JWT_MAX_LIFETIME and JWT_MAX_SERVICE_LIFETIME are read like the other
// settings and bound the tokens the verifier accepts; 0 is refused at
// start-up, not read as "no bound".
func TestTheConfiguredMaximumLifetimesBoundTheTokens(t *testing.T) {
	unsetenv(t, "JWT_ALG", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_LEEWAY")
	priv, pub, err := auth.GenerateEd25519PEM()
	if err != nil {
		t.Fatal(err)
	}
	secretsDir(t, map[string]string{"jwt-public-key": pub})
	t.Setenv("JWT_MAX_LIFETIME", "1h")
	t.Setenv("JWT_MAX_SERVICE_LIFETIME", "48h")
	var cfg auth.Config
	if err := config.Load(&cfg); err != nil {
		t.Fatalf("Load: %v", err)
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.SignerFor(auth.SignerConfig{Alg: "EdDSA", PrivateKey: priv, Issuer: "billfn", Audience: "billfn"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		role auth.Role
		ttl  time.Duration
		ok   bool
	}{
		{auth.RoleCustomer, 59 * time.Minute, true},
		{auth.RoleCustomer, 2 * time.Hour, false},
		{auth.RoleAdmin, 2 * time.Hour, false},
		{auth.RoleService, 47 * time.Hour, true},
		{auth.RoleService, 49 * time.Hour, false},
	} {
		tok, err := s.Sign("8f14e45f-ceea-467a-9575-6b9d1b2ce1a7", tc.role, tc.ttl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); (err == nil) != tc.ok {
			t.Errorf("%s token of %v: %v, want accepted=%t", tc.role, tc.ttl, err, tc.ok)
		}
	}
	for _, name := range []string{"JWT_MAX_LIFETIME", "JWT_MAX_SERVICE_LIFETIME"} {
		t.Setenv(name, "0")
		var cfg auth.Config
		if err := config.Load(&cfg); err != nil {
			t.Fatalf("Load: %v", err)
		}
		if v, err := auth.NewVerifier(cfg); err == nil || v != nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=0: NewVerifier = %v, %v; want an error naming %s", name, v != nil, err, name)
		}
		t.Setenv(name, "24h")
	}
}
