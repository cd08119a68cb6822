package sandbox_test

import (
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/sandbox"
)

func TestCheckRoutesRefusesTheSandboxUnlessEnabledExplicitly(t *testing.T) {
	for _, tc := range []struct {
		routes, enabled string
		ok              bool
	}{
		{"*=sandbox", "", false},
		{"*=sandbox", "false", false},
		{"*=sandbox", "1", false}, // only "true" says it explicitly
		{"*=sandbox", "yes", false},
		{"USD=stripe;EUR=stripe, Sandbox", "", false},
		{"*=sandbox", "true", true},
		{"*=sandbox", "TRUE", true},
		{"USD=stripe;*=sandbox", "true", true},
		{"*=stripe", "", true},
		{"USD=stripe;EUR=stripe", "false", true},
	} {
		err := sandbox.CheckRoutes(tc.routes, tc.enabled)
		if (err == nil) != tc.ok {
			t.Errorf("routes %q, SANDBOX_ENABLED=%q: %v, want ok=%v", tc.routes, tc.enabled, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "SANDBOX_ENABLED=true") {
			t.Errorf("routes %q, SANDBOX_ENABLED=%q: %q does not say what to set", tc.routes, tc.enabled, err)
		}
	}
	err := sandbox.CheckRoutes("USD=stripe;EUR=stripe,sandbox;*=sandbox", "")
	if err == nil || !strings.Contains(err.Error(), "EUR, *") || !strings.Contains(err.Error(), "GATEWAY_ROUTES") {
		t.Errorf("the message names neither the routes nor the variable: %v", err)
	}
}

func TestRequireEnabledReadsSandboxEnabled(t *testing.T) {
	t.Setenv(sandbox.EnabledEnv, "")
	if sandbox.RequireEnabled("*=sandbox") == nil {
		t.Error("an empty SANDBOX_ENABLED allowed the sandbox")
	}
	t.Setenv(sandbox.EnabledEnv, "true")
	if err := sandbox.RequireEnabled("*=sandbox"); err != nil {
		t.Errorf("SANDBOX_ENABLED=true: %v", err)
	}
}
