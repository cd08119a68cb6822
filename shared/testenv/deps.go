package testenv

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FunctionImports returns every package the five functions link, each
// with the packages it imports (go list -deps over functions/*), for the
// tests that keep a package out of every function's executable. It must
// be called from a package two levels below the repository (shared/x,
// functions/x), as the other helpers reading the repository are.
func FunctionImports(t testing.TB) map[string][]string {
	t.Helper()
	fns, err := filepath.Glob(filepath.Join("..", "..", "functions", "*"))
	if err != nil || len(fns) < 5 {
		t.Fatalf("functions: %v %v", fns, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`}
	for _, fn := range fns {
		args = append(args, "./"+filepath.Base(fn))
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Join("..", "..", "functions")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if fields := strings.Fields(line); len(fields) > 0 {
			imports[fields[0]] = fields[1:]
		}
	}
	return imports
}
