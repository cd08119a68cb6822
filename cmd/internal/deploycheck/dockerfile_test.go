package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The Dockerfile cannot be built here (no Docker engine), so its shape is
// checked by reading it: what faas-cli passes must be what it uses.
func TestDockerfileBuildsEveryFunctionStaticAndNonRoot(t *testing.T) {
	df := read(t, "Dockerfile")
	st := clusterStack(t)
	froms := regexp.MustCompile(`(?m)^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("a multi-stage build is expected, found %d stages", len(froms))
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") || !strings.HasSuffix(final, ":nonroot") {
		t.Errorf("final image %q, want distroless static nonroot", final)
	}
	last := df[strings.LastIndex(df, "\nFROM "):]
	if m := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(last); m == nil || strings.HasPrefix(m[1], "0") || m[1] == "root" {
		t.Errorf("the final stage must run as a non-root USER")
	}
	for _, want := range []string{
		"ARG FUNCTION", "ARG DIR=functions", "ENV CGO_ENABLED=0", `-o /out/app "./${DIR}/${FUNCTION}"`,
		"ARG TEST_ENABLED=false", `go test -count=1 "./${DIR}/${FUNCTION}/..."`, "ENTRYPOINT [\"/usr/local/bin/app\"]", "EXPOSE 8080",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile no longer has %q", want)
		}
	}
	// faas-cli gives each function its build_args; the Dockerfile turns
	// FUNCTION into ./functions/<FUNCTION>, which must be the function.
	for _, name := range st.Names() {
		f := st.Functions[name]
		dir := filepath.Join("functions", f.BuildArgs["FUNCTION"])
		if fi, err := os.Stat(filepath.Join(root, dir)); err != nil || !fi.IsDir() {
			t.Errorf("%s: build_args.FUNCTION=%s, but %s is not a folder", name, f.BuildArgs["FUNCTION"], dir)
		}
		for arg := range f.BuildArgs {
			if !strings.Contains(df, "ARG "+arg) {
				t.Errorf("%s passes build arg %s, which the Dockerfile does not declare", name, arg)
			}
		}
	}
	// The commands the Makefile builds with DIR=cmd exist.
	for _, c := range strings.Fields(regexp.MustCompile(`(?m)^CMD_IMAGES\s*:=\s*(.*)$`).FindStringSubmatch(read(t, "Makefile"))[1]) {
		if _, err := os.Stat(filepath.Join(root, "cmd", c, "main.go")); err != nil {
			t.Errorf("CMD_IMAGES names %s: %v", c, err)
		}
	}
}

func TestDockerignoreKeepsWhatTheBuildNeeds(t *testing.T) {
	ignored := map[string]bool{}
	for _, line := range strings.Split(read(t, ".dockerignore"), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			ignored[line] = true
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "shared", "functions", "cmd", "migrations"} {
		if ignored[need] {
			t.Errorf(".dockerignore drops %s, which the build needs", need)
		}
	}
	for _, local := range []string{".git", "bin", "build"} {
		if !ignored[local] {
			t.Errorf(".dockerignore should drop %s (local state or output)", local)
		}
	}
}
