package events

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// Issue 15, item 4: an event signing key shorter than MinKeyLen bytes is
// refused with an error naming the variable and never showing the key.
func TestParseKeysRefusesWeakKeys(t *testing.T) {
	long := strings.Repeat("a", MinKeyLen)
	refused := map[string]string{
		"empty":                      "",
		"only separators":            " , ,",
		"one key of 31 bytes":        strings.Repeat("b", MinKeyLen-1),
		"a short key beside a good":  long + ",tiny-key-value",
		"a short key before a good":  "tiny-key-value," + long,
		"a short key after trimming": "  " + strings.Repeat("c", MinKeyLen-2) + "  ",
	}
	for name, list := range refused {
		t.Run(name, func(t *testing.T) {
			keys, err := ParseKeys(list, "EVENT_SIGNING_KEYS")
			if err == nil {
				t.Fatalf("ParseKeys accepted %d keys", len(keys))
			}
			if !strings.Contains(err.Error(), "EVENT_SIGNING_KEYS") {
				t.Fatalf("error %q does not name EVENT_SIGNING_KEYS", err)
			}
			if strings.Contains(err.Error(), "tiny-key-value") || strings.Contains(err.Error(), "bbbbbbbb") {
				t.Fatalf("error %q shows the key", err)
			}
		})
	}
	keys, err := ParseKeys(" "+long+" , "+strings.Repeat("z", 48), "EVENT_SIGNING_KEYS")
	if err != nil || len(keys) != 2 || string(keys[0]) != long {
		t.Fatalf("ParseKeys(two good keys) = %d keys, %v", len(keys), err)
	}
}

// A Signer signs as SignDelivery does, byte for byte, also across a key
// rotation (its kept state is the old key's) and from one function to
// another, with one allocation: its result.
func TestASignerSignsAsSignDelivery(t *testing.T) {
	keys := [][]byte{[]byte(strings.Repeat("k", 32)), []byte(strings.Repeat("r", 48))}
	fns := []string{"process-transaction", "aggregate-report"}
	body := []byte(`{"specversion":"1.0","id":"x","type":"billfn.payment.authorized","data":{}}`)
	now := time.Unix(1796418000, 0)
	var s Signer
	for i := range 6 {
		k, fn, b, at := keys[i/3], fns[i%2], body[:len(body)-i], now.Add(time.Duration(i)*time.Second)
		if got, want := s.SignDelivery(k, at, fn, b), SignDelivery(k, at, fn, b); got != want {
			t.Fatalf("Signer %q, SignDelivery %q", got, want)
		}
	}
	if got, want := s.SignDelivery(keys[0], now, fns[0], nil), SignDelivery(keys[0], now, fns[0], nil); got != want {
		t.Fatalf("no body: Signer %q, SignDelivery %q", got, want)
	}
	if n := testing.AllocsPerRun(200, func() { s.SignDelivery(keys[0], now, fns[0], body) }); n > 1 {
		t.Errorf("Signer.SignDelivery: %v allocations, want 1", n)
	}
}

// A delivery's signature holds for the function it names only, and its
// bytes are documented: HMAC-SHA256(key, "<t>.<function>.<body>"), so an
// operator can check one with openssl. A recipient that could make the
// signed bytes split two ways (a '.') or none is refused.
func TestADeliverySignatureNamesItsFunction(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	body := []byte(`{"id":"x"}`)
	now := time.Unix(1796418000, 0)
	h := SignDelivery(key, now, "generate-invoice", body)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("1796418000.generate-invoice." + string(body)))
	if want := "t=1796418000,v1=" + hex.EncodeToString(m.Sum(nil)); h != want {
		t.Fatalf("SignDelivery = %q, want %q", h, want)
	}
	keys := [][]byte{key}
	if err := VerifyDelivery(keys, h, "generate-invoice", body, now, time.Minute); err != nil {
		t.Fatalf("for its function: %v", err)
	}
	for _, fn := range []string{"process-transaction", "generate-invoic", "generate-invoice.", ""} {
		if err := VerifyDelivery(keys, h, fn, body, now, time.Minute); err == nil {
			t.Errorf("a delivery signed for generate-invoice verified for %q", fn)
		}
	}
	if err := VerifySignature(keys, h, body, now, time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a delivery signature verified as a recipient-less one: %v", err)
	}
	// "a.b" with body "X" and "a" with body "b.X" would sign the same bytes.
	if err := VerifyDelivery(keys, SignDelivery(key, now, "a", []byte("b.X")), "a.b", []byte("X"), now, time.Minute); !errors.Is(err, ErrBadRecipient) {
		t.Errorf("a recipient with a '.': %v, want ErrBadRecipient", err)
	}
}
