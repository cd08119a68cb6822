package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// The endpoints' signing secrets at rest. An HMAC key must be kept (it is
// not a password: billfn signs with it), so webhook_endpoints holds it
// sealed with AES-256-GCM under a key from the secret endpoint-secrets-key
// (WEBHOOK_SECRETS_KEY), bound to its endpoint (the endpoint id is the
// associated data: a sealed secret copied to another row does not open).
// A row reads `sealed:v1:<key id>:<base64 nonce+ciphertext>`; the key id
// (the first 4 bytes of SHA-256 of the key, in hex) names the key that
// sealed it, so keys can rotate: the first key seals, every key listed
// opens. A secret written before a key was configured is plain text
// (`whsec_…`); it is read as it is and sealed at its endpoint's next
// write (update, rotation) or by SealPlainSecrets.

const sealedPrefix = "sealed:v1:"

// ErrNoSecretsKey: a sealed secret and no key that opens it.
var ErrNoSecretsKey = errors.New("an endpoint secret is sealed with a key WEBHOOK_SECRETS_KEY does not hold")

// Sealer seals and opens the endpoints' secrets; its zero value (no key)
// stores them as they are.
type Sealer struct {
	keys []sealKey // the first seals
}

type sealKey struct {
	id   string
	aead cipher.AEAD
}

// NewSealer reads WEBHOOK_SECRETS_KEY: keys separated by commas, each at
// least 32 characters of randomness (the AES-256 key is its SHA-256); the
// first seals, all open. Empty: no sealing.
func NewSealer(keys string) (*Sealer, error) {
	s := &Sealer{}
	for _, k := range strings.Split(keys, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if len(k) < 32 {
			return nil, fmt.Errorf("WEBHOOK_SECRETS_KEY: a key of %d characters; want at least 32 random ones", len(k))
		}
		sum := sha256.Sum256([]byte(k))
		block, err := aes.NewCipher(sum[:])
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		idSum := sha256.Sum256(sum[:])
		s.keys = append(s.keys, sealKey{id: hex.EncodeToString(idSum[:4]), aead: aead})
	}
	return s, nil
}

// Seals reports whether secrets are sealed when written.
func (s *Sealer) Seals() bool { return s != nil && len(s.keys) > 0 }

// Seal is what webhook_endpoints stores for secret of endpoint id: sealed
// with the first key, or secret itself without keys ("" stays "").
func (s *Sealer) Seal(id, secret string) (string, error) {
	if !s.Seals() || secret == "" {
		return secret, nil
	}
	k := s.keys[0]
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(secret)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := k.aead.Seal(nonce, nonce, []byte(secret), []byte(id))
	return sealedPrefix + k.id + ":" + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open is the secret of endpoint id from what webhook_endpoints holds: a
// plain secret as it is, a sealed one opened with the key it names.
func (s *Sealer) Open(id, stored string) (string, error) {
	rest, sealed := strings.CutPrefix(stored, sealedPrefix)
	if !sealed {
		return stored, nil
	}
	kid, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return "", fmt.Errorf("endpoint %s: a sealed secret that is not sealed:v1:<key id>:<data>", id)
	}
	data, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("endpoint %s: a sealed secret that is not base64: %w", id, err)
	}
	if s != nil {
		for _, k := range s.keys {
			if k.id != kid || len(data) < k.aead.NonceSize() {
				continue
			}
			n := k.aead.NonceSize()
			plain, err := k.aead.Open(nil, data[:n], data[n:], []byte(id))
			if err != nil {
				return "", fmt.Errorf("endpoint %s: its secret does not open with key %s: %w", id, kid, err)
			}
			return string(plain), nil
		}
	}
	return "", fmt.Errorf("endpoint %s (key %s): %w", id, kid, ErrNoSecretsKey)
}
