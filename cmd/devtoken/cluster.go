package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/events"
)

// ClusterServiceSubject is the subject of the cluster's service token.
const ClusterServiceSubject = "5e7a1ce0-0000-4000-8000-00000000c1a5"

// clusterServiceTTL is how long the cluster's service token is valid,
// unless JWT_MAX_SERVICE_LIFETIME (read where make deploy-secrets runs)
// allows less; make deploy-* mints a fresh one on every run.
const clusterServiceTTL = 90 * 24 * time.Hour

// clusterServiceLifetime is the cluster's service token's lifetime: 90
// days, or JWT_MAX_SERVICE_LIFETIME when it is lower, for the functions
// refuse a token that lives longer than their bound.
func clusterServiceLifetime() (time.Duration, error) {
	var bound auth.MaxLifetimes
	if err := config.Load(&bound); err != nil {
		return 0, err
	}
	if err := bound.Check(); err != nil {
		return 0, err
	}
	return min(clusterServiceTTL, bound.Service), nil
}

// placeholder is a template value to be generated: <what it is>.
var placeholder = regexp.MustCompile(`<[^<>]*>`)

// templateEntry is one line of the secrets template.
type templateEntry struct{ name, value string }

// readTemplate reads knative/infra/secrets.env: name=value lines, where a
// value is a placeholder (<...>), a text with <other-name> references, or
// a value that is no credential (the in-cluster Redis URL).
func readTemplate(path string) ([]templateEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []templateEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not name=value", path, line)
		}
		out = append(out, templateEntry{k, v})
	}
	return out, sc.Err()
}

// clusterSecrets writes the cluster's secrets into dir, one file per
// secret (the names of the template, as OpenFaaS and the billfn-secrets
// Secret hold them), and the JWT private key into privPath, outside dir so
// it is never applied to the cluster. Generated values (the Ed25519 key
// pair, random keys and passwords, webhook secrets) are kept across runs;
// the service token is minted afresh with the private key. It refuses to
// leave any placeholder behind.
func clusterSecrets(dir, privPath, template string) ([]string, error) {
	entries, err := readTemplate(template)
	if err != nil {
		return nil, err
	}
	ttl, err := clusterServiceLifetime() // refused before anything is written
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(privPath), 0o700); err != nil {
		return nil, err
	}
	priv, err := clusterKey(privPath)
	if err != nil {
		return nil, err
	}
	_, pubPEM, err := auth.Ed25519PEM(priv, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	values := map[string]string{}
	// Whole placeholders first, so references (<postgres-password> in the
	// database URL) resolve to generated values.
	for _, e := range entries {
		if e.name == "jwt-private-key" || e.name == "jwt-secret" {
			return nil, fmt.Errorf("%s lists %s: the cluster gets only jwt-public-key", template, e.name)
		}
		if !isPlaceholder(e.value) {
			continue
		}
		var v string
		switch {
		case e.name == originPublicKeys:
			continue // from the origin keys, below
		case strings.HasPrefix(e.name, originKeyPrefix):
			if v, err = originKey(filepath.Join(dir, e.name)); err != nil {
				return nil, err
			}
		case e.name == "jwt-public-key":
			v = pubPEM
		case e.name == "service-token":
			s, err := auth.NewSigner(priv, "billfn", "billfn")
			if err != nil {
				return nil, err
			}
			if v, err = s.Sign(ClusterServiceSubject, auth.RoleService, ttl); err != nil {
				return nil, err
			}
		case e.name == "stripe-api-key":
			// The kind cluster's stripe-mock accepts any sk_test_ key;
			// STRIPE_API_KEY gives a real (test-mode) one.
			if v = os.Getenv("STRIPE_API_KEY"); v == "" {
				v = "sk_test_stripe_mock"
			}
		case e.name == "smtp-url":
			// generate-invoice's SMTP server: SMTP_URL, else a Mailpit in
			// the namespace (emails stay queued until one answers).
			if v = os.Getenv("SMTP_URL"); v == "" {
				v = "smtp://mailpit.billfn.svc.cluster.local:1025?starttls=none"
			}
		default:
			if v, err = kept(filepath.Join(dir, e.name)); err != nil {
				return nil, err
			}
			if v == "" {
				v = random(e.name)
			}
		}
		values[e.name] = v
	}
	if err := originPublic(entries, values, filepath.Join(filepath.Dir(privPath), originKeyPrefix+"integrator")); err != nil {
		return nil, err
	}
	for _, e := range entries {
		if isPlaceholder(e.value) {
			continue
		}
		var missing []string
		values[e.name] = placeholder.ReplaceAllStringFunc(e.value, func(ref string) string {
			if v, ok := values[strings.Trim(ref, "<>")]; ok {
				return v
			}
			missing = append(missing, ref)
			return ref
		})
		if len(missing) > 0 {
			return nil, fmt.Errorf("%s: %s refers to %s, which the template does not generate", template, e.name, strings.Join(missing, ", "))
		}
	}
	var names []string
	for _, e := range entries {
		v := values[e.name]
		if strings.TrimSpace(v) == "" || placeholder.MatchString(v) {
			return nil, fmt.Errorf("secret %s would be deployed as the placeholder %q", e.name, v)
		}
		if err := os.WriteFile(filepath.Join(dir, e.name), []byte(v), 0o600); err != nil {
			return nil, err
		}
		names = append(names, e.name)
	}
	slices.Sort(names)
	return names, nil
}

// The origin keys (docs/security.md "Origin proofs"): origin-key-<function>
// per function, deployed to that function only, and origin-public-keys with
// every function's public key and the integrator's, whose private key is
// kept beside the JWT private key and never deployed.
const (
	originKeyPrefix  = "origin-key-"
	originPublicKeys = "origin-public-keys"
)

// originKey returns the origin private key kept at path (an earlier run's),
// or a fresh one (PEM PKCS#8 Ed25519).
func originKey(path string) (string, error) {
	if v, err := kept(path); err != nil || v != "" {
		if _, perr := events.ParseOriginSigner([]byte(v)); err == nil && perr == nil {
			return v + "\n", nil
		}
		if err != nil {
			return "", err
		}
	}
	priv, _, err := events.GenerateOriginKey("")
	return priv, err
}

// originPublic fills values[origin-public-keys], when the template asks for
// it, with the public key of every origin-key-<function> in values and of
// the integrator's key at integratorPath (kept there, or made).
func originPublic(entries []templateEntry, values map[string]string, integratorPath string) error {
	asked := false
	for _, e := range entries {
		asked = asked || e.name == originPublicKeys
	}
	if !asked {
		return nil
	}
	var b strings.Builder
	b.WriteString("# billfn's origin public keys, one per line: source, then the base64 Ed25519 public key\n")
	for _, e := range entries {
		if !strings.HasPrefix(e.name, originKeyPrefix) {
			continue
		}
		s, err := events.ParseOriginSigner([]byte(values[e.name]))
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		b.WriteString(s.PublicLine(events.Source(strings.TrimPrefix(e.name, originKeyPrefix))) + "\n")
	}
	integ, err := originKey(integratorPath)
	if err != nil {
		return err
	}
	if err := os.WriteFile(integratorPath, []byte(integ), 0o600); err != nil {
		return err
	}
	s, err := events.ParseOriginSigner([]byte(integ))
	if err != nil {
		return err
	}
	b.WriteString(s.PublicLine("/integrators/default") + "\n")
	values[originPublicKeys] = b.String()
	return nil
}

// isPlaceholder reports whether a template value is one placeholder.
func isPlaceholder(v string) bool {
	return strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">") && placeholder.FindString(v) == v
}

// clusterKey returns the Ed25519 private key kept at path, or a fresh one
// written there (PEM PKCS#8, 0600).
func clusterKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := auth.ParsePrivateKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%s is not an Ed25519 key", path)
		}
		return ek, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	privPEM, _, err := auth.GenerateEd25519PEM()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(privPEM), 0o600); err != nil {
		return nil, err
	}
	k, err := auth.ParsePrivateKeyPEM([]byte(privPEM))
	if err != nil {
		return nil, err
	}
	return k.(ed25519.PrivateKey), nil
}

// kept reads a value an earlier run generated ("" when there is none).
func kept(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	v := strings.TrimSpace(string(b))
	if isPlaceholder(v) {
		return "", nil
	}
	return v, err
}

// random is a fresh 32-byte secret in hex (whsec_ first for webhook
// secrets, as Stripe hands them out).
func random(name string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := hex.EncodeToString(b)
	if strings.Contains(name, "webhook") {
		return "whsec_" + v
	}
	return v
}
