package auth_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
)

// kubeletSecret lays out dir as the kubelet mounts a Secret volume
// (<name> -> ..data/<name>, ..data -> ..<version>) and returns a function
// that publishes a new value by swapping ..data atomically, as a secret
// rotation does.
func kubeletSecret(t *testing.T, dir, name, first string) func(string) {
	t.Helper()
	n := 0
	publish := func(value string) {
		n++
		v := fmt.Sprintf("..2026_12_03_00_00_%02d", n)
		if err := os.Mkdir(filepath.Join(dir, v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, v, name), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(v, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(first)
	if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	return publish
}

// eventually retries f until it holds or a few seconds pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A rotation of the mounted key (Kubernetes' ..data swap) takes effect
// without a restart: tokens of the new key verify, those of the old key
// stop verifying, even one verified (and cached) before.
func TestVerifierFollowsARotatedPublicKeyFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	priv1, pub1, _ := auth.GenerateEd25519PEM()
	priv2, pub2, _ := auth.GenerateEd25519PEM()
	rotate := kubeletSecret(t, dir, "jwt-public-key", pub1)
	unsetenv(t, "JWT_ALG", "JWT_PUBLIC_KEY", "JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE", "SECRETS_RELOAD_EVERY")
	t.Setenv("SECRETS_RELOAD_EVERY", "10ms")
	var cfg auth.Config
	if err := config.Load(&cfg); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(priv string) string {
		s, err := auth.SignerFor(auth.SignerConfig{Alg: "EdDSA", PrivateKey: priv, Issuer: "billfn", Audience: "billfn"})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := s.Sign(uuid.NewString(), auth.RoleAdmin, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	old, next := sign(priv1), sign(priv2)
	if _, err := v.Verify(old); err != nil {
		t.Fatalf("the first key: %v", err)
	}
	if _, err := v.Verify(next); err == nil {
		t.Fatal("a token of the next key verified before the rotation")
	}
	rotate(pub2)
	eventually(t, "the rotated key", func() error { _, err := v.Verify(next); return err })
	if _, err := v.Verify(old); err == nil {
		t.Error("a token of the old key (cached) still verifies after the rotation")
	}
	if _, err := v.Verify(sign(priv1)); err == nil {
		t.Error("a fresh token of the old key verifies after the rotation")
	}
	// A new file that is not a key leaves the key in force.
	rotate("not a key")
	time.Sleep(50 * time.Millisecond)
	if _, err := v.Verify(sign(priv2)); err != nil {
		t.Errorf("after a broken rotation the key in force stopped verifying: %v", err)
	}
}

// The opt-in HS256 secret follows its file too, and a rotated-in secret
// shorter than the minimum is refused.
func TestVerifierFollowsARotatedHS256SecretFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	s1, s2 := "first-secret-0123456789abcdef0123456789", "second-secret-0123456789abcdef012345678"
	path := filepath.Join(dir, "jwt-secret")
	if err := os.WriteFile(path, []byte(s1+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Alg: "HS256", Secret: s1, Issuer: "billfn", Audience: "billfn", ReloadEvery: time.Millisecond, MaxLifetime: auth.DefaultMaxLifetimes()})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(secret string) string {
		tok, err := auth.NewHS256Signer(secret, "billfn", "billfn").Sign(uuid.NewString(), auth.RoleService, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	old := sign(s1)
	if _, err := v.Verify(old); err != nil {
		t.Fatal(err)
	}
	// Replaced by rename, as an atomic writer does.
	tmp := filepath.Join(dir, ".jwt-secret.tmp")
	if err := os.WriteFile(tmp, []byte(s2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the rotated secret", func() error { _, err := v.Verify(sign(s2)); return err })
	if _, err := v.Verify(old); err == nil {
		t.Error("a token of the old secret still verifies")
	}
	if err := os.WriteFile(tmp, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := v.Verify(sign("short")); err == nil {
		t.Error("a rotated-in secret below the minimum is in force")
	}
	if _, err := v.Verify(sign(s2)); err != nil {
		t.Errorf("the secret in force stopped verifying: %v", err)
	}
}
