package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/billfn/billfn/cmd/internal/stackfile"
)

// TestBuildLikeTheDockerfile holds the stack's go build to the Dockerfile's:
// the binaries make run and make bench run (and whose start-to-ready and
// idle RSS make bench reports) are built as the deployed images are, with
// the same flags and without cgo.
func TestBuildLikeTheDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	docker := string(b)
	if !regexp.MustCompile(`(?m)^ENV CGO_ENABLED=0$`).MatchString(docker) {
		t.Fatal("the Dockerfile no longer sets CGO_ENABLED=0: update goBuildCmd with it")
	}
	m := regexp.MustCompile(`go build (.*) -o /out/app`).FindStringSubmatch(docker)
	if m == nil {
		t.Fatal("no go build -o /out/app line in the Dockerfile")
	}
	// The Dockerfile's shell quotes -ldflags="-s -w"; exec passes it unquoted.
	want := strings.ReplaceAll(m[1], `"`, "")
	if got := strings.Join(buildFlags, " "); got != want {
		t.Fatalf("the stack builds with %q, the Dockerfile with %q", got, want)
	}
	cmd := goBuildCmd(context.Background(), "go", "-o", "x", "./functions/demo")
	if !slices.Equal(cmd.Args, []string{"go", "build", "-trimpath", "-ldflags=-s -w", "-o", "x", "./functions/demo"}) {
		t.Fatalf("args = %q", cmd.Args)
	}
	if cmd.Env[len(cmd.Env)-1] != "CGO_ENABLED=0" {
		t.Fatalf("the build's environment ends with %q, not CGO_ENABLED=0 (the last value wins)", cmd.Env[len(cmd.Env)-1])
	}
}

// A build stopped before it finished (Ctrl-C, a deadline) says so. It
// used to try each package again with the dead context, have every one
// "fail", and blame the last, the kafka-trigger: "the kafka-trigger does
// not build (see above)", with nothing above, on a fresh machine whose
// first build is slow.
func TestAStoppedBuildSaysItWasStoppedNotThatTheKafkaTriggerDoesNotBuild(t *testing.T) {
	st, err := stackfile.Load(filepath.Join("..", "..", "stack.yml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s := newStack(config{Root: root, RunDir: t.TempDir()}, st, &out)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.build(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("build with a stopped context: %v, want context.Canceled", err)
	}
	if err != nil && strings.Contains(err.Error(), "does not build") || strings.Contains(out.String(), "does not build") {
		t.Errorf("a stopped build blamed on the code: %v\n%s", err, out.String())
	}
	for _, f := range s.functions {
		if f.skip != "" {
			t.Errorf("%s skipped after a stopped build: %s", f.name, f.skip)
		}
	}
}
