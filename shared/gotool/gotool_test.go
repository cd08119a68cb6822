package gotool

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestPathFindsGOBINAndSaysWhereAnInstallGoes(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GOBIN", dir)
	t.Setenv("PATH", t.TempDir())
	p, ok, err := Path(context.Background(), "billfn-no-such-tool")
	if err != nil || ok || p != filepath.Join(dir, "billfn-no-such-tool") {
		t.Fatalf("missing tool: %q %v %v, want the GOBIN path, not installed", p, ok, err)
	}
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if p2, ok, err := Path(context.Background(), "billfn-no-such-tool"); err != nil || !ok || p2 != p {
		t.Fatalf("installed tool: %q %v %v", p2, ok, err)
	}
}
