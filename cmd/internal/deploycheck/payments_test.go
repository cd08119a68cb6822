package deploycheck

import (
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/sandbox"
)

// TestClusterRoutesPaymentsToStripeNotTheSandbox: on a cluster (stack.yml
// with its in-cluster defaults, and every Knative Service) capture-payment
// routes to Stripe, with the key from a secret, and the sandbox, which takes
// test cards as real money, is off: the function itself refuses to start
// with a sandbox route unless SANDBOX_ENABLED=true.
func TestClusterRoutesPaymentsToStripeNotTheSandbox(t *testing.T) {
	st := clusterStack(t)
	f, ok := st.Functions["capture-payment"]
	if !ok {
		t.Fatal("stack.yml has no capture-payment")
	}
	check := func(where string, env map[string]string) {
		t.Helper()
		routes := env["GATEWAY_ROUTES"]
		if routes == "" {
			t.Errorf("%s: GATEWAY_ROUTES is not set (the function's default is the sandbox)", where)
		}
		if !strings.Contains(routes, "stripe") {
			t.Errorf("%s: GATEWAY_ROUTES=%q routes nothing to Stripe", where, routes)
		}
		if err := sandbox.CheckRoutes(routes, ""); err != nil {
			t.Errorf("%s: %v", where, err)
		}
		if v := env[sandbox.EnabledEnv]; strings.EqualFold(strings.TrimSpace(v), "true") {
			t.Errorf("%s: %s=%q on a cluster", where, sandbox.EnabledEnv, v)
		}
	}
	check("stack.yml", f.Environment)
	hasSecret := false
	for _, s := range f.Secrets {
		hasSecret = hasSecret || s == "stripe-api-key"
	}
	if !hasSecret {
		t.Error("stack.yml: capture-payment is not given the secret stripe-api-key")
	}
	n := 0
	for _, s := range decodeAll[knService](t, "knative/services.yaml", "serving.knative.dev/v1", "Service") {
		if s.Metadata.Name != "capture-payment" && s.Metadata.Name != "capture-payment-events" {
			continue
		}
		n++
		for _, c := range s.Spec.Template.Spec.Containers {
			check("knative "+s.Metadata.Name, envMap(c))
		}
	}
	if n != 2 {
		t.Errorf("knative/services.yaml has %d capture-payment Services, want 2", n)
	}
}
