package store

import (
	"errors"
	"strings"
	"testing"
)

func TestSealerSealsBoundToTheEndpointAndRotates(t *testing.T) {
	const (
		oldKey = "0123456789abcdef0123456789abcdef-old"
		newKey = "0123456789abcdef0123456789abcdef-new"
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	)
	old, err := NewSealer(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal("ep1", secret)
	if err != nil || !strings.HasPrefix(sealed, sealedPrefix) || strings.Contains(sealed, "MfKQ9r8") {
		t.Fatalf("sealed %q (%v)", sealed, err)
	}
	if again, _ := old.Seal("ep1", secret); again == sealed {
		t.Fatal("two seals of one secret are equal: the nonce is not fresh")
	}
	if got, err := old.Open("ep1", sealed); err != nil || got != secret {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := old.Open("ep2", sealed); err == nil {
		t.Fatal("a secret sealed for ep1 opened as ep2's")
	}
	// Rotation: the new key seals, the old one still opens.
	both, err := NewSealer(newKey + ", " + oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := both.Open("ep1", sealed); err != nil || got != secret {
		t.Fatalf("the old key after a rotation: %q %v", got, err)
	}
	resealed, _ := both.Seal("ep1", secret)
	if _, err := old.Open("ep1", resealed); !errors.Is(err, ErrNoSecretsKey) {
		t.Fatalf("sealed with the new key, opened with the old only: %v", err)
	}
	// No key: plain text passes both ways; a sealed one does not open.
	var none *Sealer
	if got, _ := none.Seal("ep1", secret); got != secret {
		t.Fatalf("no key sealed %q", got)
	}
	if got, err := both.Open("ep1", secret); err != nil || got != secret {
		t.Fatalf("a plain secret (stored before the key): %q %v", got, err)
	}
	if _, err := none.Open("ep1", sealed); !errors.Is(err, ErrNoSecretsKey) {
		t.Fatalf("no key opened a sealed secret: %v", err)
	}
	if _, err := NewSealer("short"); err == nil {
		t.Fatal("a 5-character key was accepted")
	}
}
