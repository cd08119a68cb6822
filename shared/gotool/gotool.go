// Package gotool finds the programs billfn builds from their own modules,
// outside its go.mod, at pinned versions (stripe-mock, Mailpit, Jaeger):
// on PATH, else in GOBIN (or the first GOPATH's bin), where go install
// and go build -o put them.
package gotool

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Path returns where the program name is: on PATH or already in GOBIN
// (installed is true), else the GOBIN path an install would write
// (installed is false).
func Path(ctx context.Context, name string) (path string, installed bool, err error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true, nil
	}
	gobin, err := Bin(ctx)
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(gobin, name)
	_, err = os.Stat(path)
	return path, err == nil, nil
}

// Bin returns GOBIN, or the first GOPATH's bin when GOBIN is unset: where
// go install (and billfn's builds of these programs) put them.
func Bin(ctx context.Context) (string, error) {
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		return gobin, nil
	}
	out, err := exec.CommandContext(ctx, "go", "env", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOPATH: %w", err)
	}
	return filepath.Join(strings.Split(strings.TrimSpace(string(out)), string(os.PathListSeparator))[0], "bin"), nil
}
