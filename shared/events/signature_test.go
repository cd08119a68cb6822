package events

import (
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

// A Signer signs as Sign does, byte for byte, also across a key rotation
// (its kept state is the old key's), with one allocation: its result.
func TestASignerSignsAsSign(t *testing.T) {
	keys := [][]byte{[]byte(strings.Repeat("k", 32)), []byte(strings.Repeat("r", 48))}
	body := []byte(`{"specversion":"1.0","id":"x","type":"billfn.payment.authorized","data":{}}`)
	now := time.Unix(1796418000, 0)
	var s Signer
	for i := range 6 {
		k, b, at := keys[i/3], body[:len(body)-i], now.Add(time.Duration(i)*time.Second)
		if got, want := s.Sign(k, at, b), Sign(k, at, b); got != want {
			t.Fatalf("Signer %q, Sign %q", got, want)
		}
	}
	if got, want := s.Sign(keys[0], now, nil), Sign(keys[0], now, nil); got != want {
		t.Fatalf("no body: Signer %q, Sign %q", got, want)
	}
	if n := testing.AllocsPerRun(200, func() { s.Sign(keys[0], now, body) }); n > 1 {
		t.Errorf("Signer.Sign: %v allocations, want 1", n)
	}
}
