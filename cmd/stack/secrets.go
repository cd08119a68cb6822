package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/platform"
)

// serviceSubject is the subject of the local stack's service token.
const serviceSubject = "5e7a1ce0-0000-4000-8000-00000000b111"

// localStripeKey is what stripe-mock accepts (any sk_test_ key works).
const localStripeKey = "sk_test_123"

// The JWT key pair of the local stack (EdDSA). The private key is the
// issuer's only: the stack (banner, service token), make token and the load
// generator read it from bin/run/secrets; functions and the kafka-trigger
// get functionSecretsDir, which never holds it.
const (
	jwtPrivateKey = "jwt-private-key"
	jwtPublicKey  = "jwt-public-key"
)

// functionsSubdir is the directory under the secrets directory that holds
// one directory per function and one for the kafka-trigger, each the
// SECRETS_DIR of that process (functionSecretsDir): the secrets stack.yml
// declares, without the JWT private key, and of the Kafka passwords only
// the process's own (kafka.go).
const functionsSubdir = "functions"

// writeSecrets writes every secret stack.yml names into dir, as OpenFaaS
// mounts them at /var/openfaas/secrets, plus the JWT private key that
// signs the stack's tokens: the connection URLs follow the stack's
// configuration on every start; generated ones (the Ed25519 key pair,
// signing and webhook keys) are kept across restarts so the values stay
// valid for whatever already holds them. The secrets a function or the
// kafka-trigger may see are copied into dir/functions/<name> (its
// SECRETS_DIR), which holds no private key and no other process's Kafka
// password.
func writeSecrets(dir string, cfg config, st *stackfile.Stack) (map[string]string, error) {
	if err := os.MkdirAll(filepath.Join(dir, functionsSubdir), 0o700); err != nil {
		return nil, err
	}
	names := []string{"event-signing-key", jwtPublicKey} // the kafka-trigger's, and what every verifier needs
	for _, f := range st.Functions {
		names = append(names, f.Secrets...)
	}
	kafkaNames, err := kafkaPasswordNames(cfg)
	if err != nil {
		return nil, err
	}
	names = append(names, kafkaNames...)
	slices.Sort(names)
	names = slices.Compact(names)
	if slices.Contains(names, jwtPrivateKey) {
		return nil, fmt.Errorf("stack.yml gives a function secret %s: functions verify tokens with %s only", jwtPrivateKey, jwtPublicKey)
	}
	out := map[string]string{}
	priv, pub, err := keyPair(dir)
	if err != nil {
		return nil, err
	}
	out[jwtPrivateKey], out[jwtPublicKey] = priv, pub
	signer, err := auth.SignerFor(auth.SignerConfig{Alg: "EdDSA", PrivateKey: priv, Issuer: "billfn", Audience: "billfn"})
	if err != nil {
		return nil, err
	}
	// The origin keys (origin.go): each function's private key and the
	// public keys file, handed out below like any secret; the
	// integrator's stays here.
	origin, err := originKeys(dir, st.Names())
	if err != nil {
		return nil, err
	}
	for _, f := range st.Names() {
		names = append(names, platform.OriginKeySecret(f))
	}
	names = append(names, originPublicKeysSecret)
	slices.Sort(names)
	names = slices.Compact(names)
	out[integratorOriginKey] = origin[integratorOriginKey]
	for _, name := range names {
		path := filepath.Join(dir, name)
		var value string
		if v, ok := origin[name]; ok {
			out[name] = v // kept in dir by originKeys
			continue
		}
		switch name {
		case jwtPublicKey:
			value = pub
		case "database-url":
			value = cfg.DatabaseURL
		case "redis-url":
			value = cfg.RedisURL
		case "stripe-api-key":
			value = localStripeKey
		case "smtp-url":
			// The stack's Mailpit: every email lands in its web UI.
			value = cfg.smtpURL()
		case "service-token":
			// What a function presents to read account and invoice facts
			// through from another function; minted fresh on every start.
			tok, err := signer.Sign(serviceSubject, auth.RoleService, 30*24*time.Hour)
			if err != nil {
				return nil, err
			}
			value = tok
		default:
			b, err := os.ReadFile(path)
			if err == nil && len(strings.TrimSpace(string(b))) > 0 {
				value = strings.TrimSpace(string(b))
				break
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("secret %s: %w", name, err)
			}
			value = generated(name)
		}
		if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
		out[name] = value
	}
	if err := writeProcessSecrets(filepath.Join(dir, functionsSubdir), processNames(st), names, out); err != nil {
		return nil, err
	}
	return out, nil
}

// writeFunctionSecrets makes fdir hold exactly names (never the private
// key), removing what an earlier version of the stack left there.
func writeFunctionSecrets(fdir string, names []string, values map[string]string) error {
	entries, err := os.ReadDir(fdir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !slices.Contains(names, e.Name()) {
			if err := os.RemoveAll(filepath.Join(fdir, e.Name())); err != nil {
				return err
			}
		}
	}
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(fdir, name), []byte(values[name]), 0o600); err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
	}
	return nil
}

// keyPair returns the stack's Ed25519 key pair as PEM: the private key kept
// in dir/jwt-private-key (PKCS#8, 0600) since the first start, or a fresh
// one; the public key (PKIX) is derived from it on every start.
func keyPair(dir string) (privPEM, pubPEM string, err error) {
	path := filepath.Join(dir, jwtPrivateKey)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("secret %s: %w", jwtPrivateKey, err)
	}
	if err == nil {
		if k, perr := auth.ParsePrivateKeyPEM(b); perr == nil {
			if ek, ok := k.(ed25519.PrivateKey); ok {
				return auth.Ed25519PEM(ek, ek.Public().(ed25519.PublicKey))
			}
		}
		// Unreadable or not Ed25519: replaced below, as a missing one is.
	}
	privPEM, pubPEM, err = auth.GenerateEd25519PEM()
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(path, []byte(privPEM), 0o600); err != nil {
		return "", "", fmt.Errorf("secret %s: %w", jwtPrivateKey, err)
	}
	return privPEM, pubPEM, nil
}

// generated makes a fresh random secret, shaped like what real systems hand
// out (Stripe webhook secrets start with whsec_).
func generated(name string) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	v := hex.EncodeToString(b)
	if strings.Contains(name, "webhook") {
		return "whsec_" + v
	}
	return v
}
