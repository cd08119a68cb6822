package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultReloadEvery is how often a watched secret file is looked at.
const DefaultReloadEvery = 2 * time.Second

// Watched is a secret file that is read again when it changes, so a
// rotated key takes effect without a restart. OpenFaaS and Kubernetes
// rotate a mounted secret by replacing the file, usually by swapping the
// ..data symlink to a new directory: the path then resolves to another
// inode. Check notices that (or a rename over the file, a new size or
// modification time) with one stat(2), at most once per interval, on the
// goroutine that asks: no background goroutine, no file-system
// notification dependency (inotify misses a symlink swap unless the
// directory is watched and events are re-matched by name, which polling
// one stat a few seconds apart does not need).
//
// Only values a process can swap while running are watched (verification
// keys, signing keys, webhook secrets), never a database URL: a pool is
// not rebuilt under way.
type Watched struct {
	name  string
	path  string
	every time.Duration
	apply func(value string) error
	now   func() time.Time

	next atomic.Int64 // unix nanoseconds of the next check

	mu    sync.Mutex
	stamp stamp
}

type stamp struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

func stampOf(fi os.FileInfo) stamp {
	s := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), uint64(st.Ino)
	}
	return s
}

// WatchSecret watches the secret file <SecretsDir>/<name>: it reads it now
// and hands the trimmed value to apply, then again each time Check finds
// the file changed. It returns nil and no error when the file does not
// exist (the value came from the environment, which cannot change under a
// running process). every <= 0 means DefaultReloadEvery.
//
// When apply refuses a new value (a key too short, a PEM that does not
// parse, a half-written file), the previous value stays in force, the
// refusal is logged, and the file is read again at the next change.
func WatchSecret(name string, every time.Duration, apply func(value string) error) (*Watched, error) {
	if every <= 0 {
		every = DefaultReloadEvery
	}
	w := &Watched{name: name, path: filepath.Join(SecretsDir(), name), every: every, apply: apply, now: time.Now}
	fi, err := os.Stat(w.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	if err := apply(strings.TrimSpace(string(b))); err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	w.stamp = stampOf(fi)
	w.next.Store(w.now().Add(every).UnixNano())
	return w, nil
}

// Name is the secret's name.
func (w *Watched) Name() string { return w.name }

// Check reads the file again if at least the interval has passed since the
// last look and it changed since it was last applied. It is cheap to call
// on every request: between two looks it is one atomic load. A nil
// Watched does nothing.
func (w *Watched) Check() {
	if w == nil {
		return
	}
	now := w.now()
	next := w.next.Load()
	if now.UnixNano() < next || !w.next.CompareAndSwap(next, now.Add(w.every).UnixNano()) {
		return // not yet, or another goroutine is looking
	}
	w.Reload()
}

// Reload looks at the file now, whatever the interval, and applies its
// value if it changed. It reports whether a new value was applied.
func (w *Watched) Reload() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.path)
	if err != nil {
		// Between the removal of an old ..data and the swap, or a secret
		// deleted: keep the value in force.
		slog.Warn("secret file unreadable; the value in force stays", "secret", w.name, "err", err)
		return false
	}
	st := stampOf(fi)
	if st == w.stamp {
		return false
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		slog.Warn("secret file unreadable; the value in force stays", "secret", w.name, "err", err)
		return false
	}
	if err := w.apply(strings.TrimSpace(string(b))); err != nil {
		// Remember the refused version so it is not retried and logged on
		// every look; the next change is read again.
		w.stamp = st
		slog.Error("secret file changed to a value that is refused; the value in force stays", "secret", w.name, "err", err)
		return false
	}
	w.stamp = st
	slog.Info("secret reloaded from its file", "secret", w.name)
	return true
}

// Live is a secret's value in force for code that reads it on every use (a
// bearer token, an API key): the file's latest value when the secret is a
// file (watched, so a rotation takes effect without a restart), else the
// value the process started with. Reading it costs an atomic load between
// two looks at the file.
type Live struct {
	v atomic.Pointer[string]
	w *Watched
}

// Fixed is a Live that never changes (tests, values from the environment).
func Fixed(value string) *Live {
	l := &Live{}
	l.v.Store(&value)
	return l
}

// Follow is the secret <SecretsDir>/<name> as a Live, starting from value
// (what Load read at start, from the file or the environment). An empty
// file never replaces a value. When the file cannot be watched the start
// value stays, and that is logged.
func Follow(name, value string) *Live {
	l := Fixed(value)
	w, err := WatchSecret(name, 0, func(v string) error {
		if v == "" {
			return errors.New("empty")
		}
		if old := l.v.Load(); *old != v && *old != "" {
			slog.Info("secret rotated: the new value is in force", "secret", name)
		}
		l.v.Store(&v)
		return nil
	})
	if err != nil {
		slog.Error("secret cannot be watched: the value read at start stays", "secret", name, "err", err)
	}
	l.w = w
	return l
}

// Value is the value in force ("" for a nil Live).
func (l *Live) Value() string {
	if l == nil {
		return ""
	}
	l.w.Check()
	return *l.v.Load()
}
