package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteSecret publishes value as the secret file <dir>/<name> the way a
// rotation does: written beside it, then renamed over it (a new inode).
func WriteSecret(t testing.TB, dir, name, value string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}
