package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
)

// The origin keys of the local stack (docs/security.md "Who signs what"):
// one Ed25519 key pair per function, which signs the events it publishes,
// and one for the local outside integrator, which signs the commands a
// person produces into Kafka (go run ./cmd/sign-event). Generated on the
// first start into bin/run/secrets and kept. Each function's SECRETS_DIR
// holds only its own private key (origin-key-<function>) and everyone's
// public keys (origin-public-keys); the integrator's private key stays in
// bin/run/secrets, for cmd/sign-event.
const (
	// integratorOriginKey names the integrator's private key file.
	integratorOriginKey = "origin-key-integrator"
	// originPublicKeysSecret names the public keys file every function gets.
	originPublicKeysSecret = "origin-public-keys"
	// IntegratorSource is the CloudEvents source of the local integrator:
	// its key verifies only events of this source, and a source that is
	// no function may emit commands only (events.AllowedSource).
	integratorSource = "/integrators/local"
)

// isOriginKey reports whether a secret is a private origin key.
func isOriginKey(name string) bool { return strings.HasPrefix(name, platform.OriginKeySecret("")) }

// originKeys returns the private origin key of every function and of the
// integrator (PEM PKCS#8, kept in dir since the first start, or fresh),
// and the public keys file that trusts each for its source.
func originKeys(dir string, functions []string) (map[string]string, error) {
	out := map[string]string{}
	var public strings.Builder
	public.WriteString("# The origin public keys of the local stack: <source> <base64 Ed25519 public key>.\n")
	add := func(name, source string) error {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("secret %s: %w", name, err)
		}
		s, perr := events.ParseOriginSigner(b)
		if err != nil || perr != nil {
			// Missing or unreadable: a fresh pair replaces it.
			priv, _, gerr := events.GenerateOriginKey(source)
			if gerr != nil {
				return gerr
			}
			if s, err = events.ParseOriginSigner([]byte(priv)); err != nil {
				return err
			}
			b = []byte(priv)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
		out[name] = string(b)
		public.WriteString(s.PublicLine(source) + "\n")
		return nil
	}
	for _, f := range functions {
		if err := add(platform.OriginKeySecret(f), events.Source(f)); err != nil {
			return nil, err
		}
	}
	if err := add(integratorOriginKey, integratorSource); err != nil {
		return nil, err
	}
	out[originPublicKeysSecret] = public.String()
	if err := os.WriteFile(filepath.Join(dir, originPublicKeysSecret), []byte(public.String()), 0o600); err != nil {
		return nil, fmt.Errorf("secret %s: %w", originPublicKeysSecret, err)
	}
	return out, nil
}
