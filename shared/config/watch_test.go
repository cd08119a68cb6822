package config

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// k8sSecretDir lays out dir as the kubelet mounts a Secret volume:
// <name> -> ..data/<name>, ..data -> ..<version>/, and returns a function
// that publishes a new version by swapping the ..data symlink atomically.
func k8sSecretDir(t *testing.T, dir, name, first string) (rotate func(value string)) {
	t.Helper()
	version := 0
	publish := func(value string) {
		version++
		v := filepath.Join(dir, "..v"+string(rune('0'+version)))
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v, name), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(v), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(first)
	if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	return publish
}

type applied struct {
	mu   sync.Mutex
	vals []string
}

func (a *applied) apply(v string) error {
	if v == "bad" {
		return errors.New("refused")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.vals = append(a.vals, v)
	return nil
}

func (a *applied) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.vals) == 0 {
		return ""
	}
	return a.vals[len(a.vals)-1]
}

func TestWatchSecretFollowsAKubernetesDataSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(SecretsDirEnv, dir)
	rotate := k8sSecretDir(t, dir, "jwt-public-key", "one\n")
	var a applied
	w, err := WatchSecret("jwt-public-key", time.Hour, a.apply)
	if err != nil || w == nil {
		t.Fatalf("WatchSecret: %v %v", w, err)
	}
	if a.last() != "one" {
		t.Fatalf("first value %q", a.last())
	}
	if w.Reload() {
		t.Error("reloaded an unchanged file")
	}
	rotate("two")
	if !w.Reload() || a.last() != "two" {
		t.Fatalf("after the ..data swap: %q", a.last())
	}
	rotate("bad") // a value apply refuses: the old one stays
	if w.Reload() || a.last() != "two" {
		t.Fatalf("a refused value replaced the value in force: %q", a.last())
	}
	if w.Reload() {
		t.Error("a refused version was applied on a second look")
	}
	rotate("three")
	if !w.Reload() || a.last() != "three" {
		t.Fatalf("after a refused version, the next one: %q", a.last())
	}
}

func TestWatchSecretFollowsAFileRewrittenInPlaceOrRenamedOver(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(SecretsDirEnv, dir)
	path := filepath.Join(dir, "event-signing-key")
	if err := os.WriteFile(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	var a applied
	w, err := WatchSecret("event-signing-key", time.Hour, a.apply)
	if err != nil || w == nil {
		t.Fatal(err)
	}
	// In place, same size, a later mtime.
	if err := os.WriteFile(path, []byte("secnd"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(path, later, later)
	if !w.Reload() || a.last() != "secnd" {
		t.Fatalf("in place: %q", a.last())
	}
	// Renamed over (a new inode).
	tmp := filepath.Join(dir, ".tmp")
	if err := os.WriteFile(tmp, []byte("third"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if !w.Reload() || a.last() != "third" {
		t.Fatalf("renamed over: %q", a.last())
	}
	// Removed: the value in force stays.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if w.Reload() || a.last() != "third" {
		t.Fatalf("removed: %q", a.last())
	}
}

func TestWatchSecretChecksAtMostOncePerInterval(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(SecretsDirEnv, dir)
	path := filepath.Join(dir, "k")
	_ = os.WriteFile(path, []byte("a"), 0o600)
	var a applied
	w, err := WatchSecret("k", time.Minute, a.apply)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	w.now = func() time.Time { return now }
	w.next.Store(now.Add(time.Minute).UnixNano())
	_ = os.WriteFile(filepath.Join(dir, ".t"), []byte("b"), 0o600)
	_ = os.Rename(filepath.Join(dir, ".t"), path)
	w.Check()
	if a.last() != "a" {
		t.Fatalf("looked before the interval: %q", a.last())
	}
	now = now.Add(time.Minute)
	w.Check()
	if a.last() != "b" {
		t.Fatalf("did not look after the interval: %q", a.last())
	}
}

func TestWatchSecretWithoutAFileIsNil(t *testing.T) {
	t.Setenv(SecretsDirEnv, t.TempDir())
	w, err := WatchSecret("absent", 0, func(string) error { t.Error("applied"); return nil })
	if w != nil || err != nil {
		t.Fatalf("%v %v", w, err)
	}
	w.Check() // a nil Watched does nothing
	dir := t.TempDir()
	t.Setenv(SecretsDirEnv, dir)
	_ = os.WriteFile(filepath.Join(dir, "bad"), []byte("bad"), 0o600)
	if _, err := WatchSecret("bad", 0, (&applied{}).apply); err == nil {
		t.Error("a first value apply refuses was accepted")
	}
}

func TestFollowServesTheRotatedValueAndKeepsTheOldOnAnEmptyFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(SecretsDirEnv, dir)
	rotate := k8sSecretDir(t, dir, "service-token", "first")
	l := Follow("service-token", "first")
	if got := l.Value(); got != "first" {
		t.Fatalf("Value %q, want first", got)
	}
	rotate("second")
	l.w.Reload()
	if got := l.Value(); got != "second" {
		t.Fatalf("after the rotation Value %q, want second", got)
	}
	rotate("")
	l.w.Reload()
	if got := l.Value(); got != "second" {
		t.Fatalf("after an empty file Value %q, want second still", got)
	}
}

func TestFollowWithoutAFileKeepsTheStartValue(t *testing.T) {
	t.Setenv(SecretsDirEnv, t.TempDir())
	l := Follow("stripe-api-key", "from-the-environment")
	if l.w != nil || l.Value() != "from-the-environment" {
		t.Fatalf("watch %v, Value %q", l.w, l.Value())
	}
	var none *Live
	if none.Value() != "" {
		t.Fatal("a nil Live has a value")
	}
}
