package testenv

import (
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/events"
)

// IntegratorSource is the source of the test deployments' outside
// integrator: a principal of its own that may sign commands only.
const IntegratorSource = "/integrators/test"

// OriginSigner signs origin proofs (events.OriginSigner) as source in test
// deployments: its Ed25519 key is derived from the source, so a function
// started as a separate process in a test, and the test itself, agree on
// every key without sharing files. Never use these keys outside tests.
func OriginSigner(source string) *events.OriginSigner {
	return events.NewOriginSigner(originKey(source))
}

func originKey(source string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("billfn-test-origin-key:" + source))
	return ed25519.NewKeyFromSeed(seed[:])
}

// OriginKeyPEM is the private origin key of function in test deployments
// (PEM PKCS#8), what platform.Config.OriginPrivateKey holds.
func OriginKeyPEM(function string) string {
	pem, err := events.OriginKeyPEM(originKey(events.Source(function)))
	if err != nil {
		panic(err)
	}
	return pem
}

// OriginPublicKeys is the origin public keys file of test deployments:
// every function, the extra functions named (a test's "demo"), and
// IntegratorSource.
func OriginPublicKeys(extra ...string) string {
	var b strings.Builder
	for _, f := range append(slices.Clone(events.Functions), extra...) {
		b.WriteString(OriginSigner(events.Source(f)).PublicLine(events.Source(f)) + "\n")
	}
	b.WriteString(OriginSigner(IntegratorSource).PublicLine(IntegratorSource) + "\n")
	return b.String()
}

// OriginKeys parses OriginPublicKeys.
func OriginKeys() *events.OriginKeys {
	ks, err := events.ParseOriginKeys(OriginPublicKeys(), "testenv")
	if err != nil {
		panic(err)
	}
	return ks
}

// SignOrigin adds to each event the origin proof of its source's test key
// (OriginSigner), as its producer would.
func SignOrigin(evs ...*events.Event) {
	for _, ev := range evs {
		OriginSigner(ev.Source()).Sign(ev)
	}
}

// WriteOriginSecrets writes into dir, a test's SECRETS_DIR for a function
// started as its own process, what platform.Open reads: function's
// private origin key (origin-key-<function>) and the public keys of test
// deployments (origin-public-keys).
func WriteOriginSecrets(tb testing.TB, dir, function string) {
	tb.Helper()
	for name, v := range map[string]string{
		"origin-key-" + function: OriginKeyPEM(function),
		"origin-public-keys":     OriginPublicKeys(function),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}
