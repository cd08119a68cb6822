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
	unsetenv(t, "JWT_ALG", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_LEEWAY")
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
		cfg.Issuer != "billfn" || cfg.Audience != "billfn" || cfg.Leeway != 30*time.Second {
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
