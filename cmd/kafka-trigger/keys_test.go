package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/config"
)

// The trigger signs with the first key of its secret file as it is now: a
// rotation (new,old on the functions, then new here) needs no restart.
func TestTriggerSignsWithTheRotatedKeyWithoutARestart(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(config.SecretsDirEnv, dir)
	old, next := "old-event-signing-key-0123456789abcdef", "new-event-signing-key-0123456789abcdef"
	write := func(v string) {
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "event-signing-key")); err != nil {
			t.Fatal(err)
		}
	}
	write(old)
	tr := &Trigger{}
	var err error
	if tr.keys, err = (Config{SigningKeys: old}).keys(); err != nil {
		t.Fatal(err)
	}
	if got := string(tr.key()); got != old {
		t.Fatalf("signs with %q, want %q", got, old)
	}
	write(next + "," + old)
	deadline := time.Now().Add(10 * time.Second) // the file is looked at every config.DefaultReloadEvery
	for string(tr.key()) != next && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := string(tr.key()); got != next {
		t.Fatalf("after the rotation the trigger signs with %q, want the new key", got)
	}
}
