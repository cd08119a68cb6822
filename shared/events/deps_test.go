package events_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// No function links go.uber.org/zap, nor the CloudEvents SDK's protocol
// packages that bring it (its protocol/http, protocol and context): Parse
// reads binary mode with the SDK's binding package over a message of its
// own (binary.go), and nothing else in a function needs them. Fewer linked
// packages is less executable and less idle RSS (issue 20).
func TestNoFunctionLinksZap(t *testing.T) {
	banned := []string{"go.uber.org/zap", "github.com/cloudevents/sdk-go/v2/protocol", "github.com/cloudevents/sdk-go/v2/context"}
	fns, err := filepath.Glob("../../functions/*")
	if err != nil || len(fns) < 5 {
		t.Fatalf("functions: %v %v", fns, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, fn := range fns {
		cmd := exec.CommandContext(ctx, "go", "list", "-deps", "./"+filepath.Base(fn))
		cmd.Dir = "../../functions"
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v", fn, err)
		}
		for _, pkg := range strings.Fields(string(out)) {
			for _, b := range banned {
				if pkg == b || strings.HasPrefix(pkg, b+"/") {
					t.Errorf("%s links %s", filepath.Base(fn), pkg)
				}
			}
		}
	}
}
