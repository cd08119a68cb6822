package events

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/config"
)

// A delivery-signing key rotated in its secret file (Kubernetes' ..data
// symlink swap) is in force at once: signatures with the new key verify,
// those with the removed key do not, and a broken file changes nothing.
func TestKeyRingFollowsARotatedSecretFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	old := "old-event-signing-key-0123456789abcdef"
	next := "new-event-signing-key-0123456789abcdef"
	version := 0
	publish := func(value string) {
		version++
		v := filepath.Join(dir, "..v"+string(rune('0'+version)))
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, "event-signing-key"), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		_ = os.Symlink(filepath.Base(v), filepath.Join(dir, "..tmp"))
		if err := os.Rename(filepath.Join(dir, "..tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(old)
	if err := os.Symlink("..data/event-signing-key", filepath.Join(dir, "event-signing-key")); err != nil {
		t.Fatal(err)
	}
	ring, err := WatchKeys(old, "EVENT_SIGNING_KEYS", "event-signing-key", time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"1"}`)
	now := time.Now()
	verify := func(key string) error {
		return VerifySignature(ring.Keys(), Sign([]byte(key), now, body), body, now, time.Minute)
	}
	if err := verify(old); err != nil {
		t.Fatal(err)
	}
	if verify(next) == nil {
		t.Fatal("the next key verified before the rotation")
	}
	// Step 1 of a rotation: both keys, the new one first (it signs).
	publish(next + "," + old)
	time.Sleep(5 * time.Millisecond)
	if err := verify(next); err != nil {
		t.Fatalf("during the rotation, the new key: %v", err)
	}
	if err := verify(old); err != nil {
		t.Fatalf("during the rotation, the old key: %v", err)
	}
	if got := string(ring.Keys()[0]); got != next {
		t.Errorf("signing key %q, want the new one", got)
	}
	// Step 2: the old key is removed.
	publish(next)
	time.Sleep(5 * time.Millisecond)
	if err := verify(old); !errors.Is(err, ErrBadSignature) {
		t.Errorf("the removed key: %v, want ErrBadSignature", err)
	}
	publish("short")
	time.Sleep(5 * time.Millisecond)
	if err := verify(next); err != nil {
		t.Errorf("a rotated-in key below the minimum replaced the keys in force: %v", err)
	}
}

func TestKeyRingWithoutAFileKeepsItsKeys(t *testing.T) {
	t.Setenv(config.SecretsDirEnv, t.TempDir())
	k := "only-event-signing-key-0123456789abcdef"
	ring, err := WatchKeys(k, "EVENT_SIGNING_KEYS", "event-signing-key", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := ring.Keys(); len(got) != 1 || string(got[0]) != k {
		t.Fatalf("%q", got)
	}
	if _, err := WatchKeys("short", "EVENT_SIGNING_KEYS", "event-signing-key", 0); err == nil {
		t.Error("a short key was accepted")
	}
}
