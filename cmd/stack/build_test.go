package main

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
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
