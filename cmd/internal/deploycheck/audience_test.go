package deploycheck

import (
	"strings"
	"testing"
)

// TestEveryFunctionVerifiesItsAudience: each function of stack.yml and
// each Knative Service sets a non-empty JWT_ISSUER and JWT_AUDIENCE (the
// verifier refuses to start without them, and checks both on every token),
// and none trusts HS256 on a cluster.
func TestEveryFunctionVerifiesItsAudience(t *testing.T) {
	st := clusterStack(t)
	check := func(where string, env map[string]string) {
		t.Helper()
		for _, k := range []string{"JWT_ISSUER", "JWT_AUDIENCE"} {
			if strings.TrimSpace(env[k]) == "" {
				t.Errorf("%s: %s is not set", where, k)
			}
		}
		if env["JWT_ALG"] == "HS256" {
			t.Errorf("%s: JWT_ALG=HS256 on a cluster: every holder of the secret could mint tokens", where)
		}
	}
	for _, name := range st.Names() {
		check("stack.yml "+name, st.Functions[name].Environment)
	}
	n := 0
	for _, s := range decodeAll[knService](t, "knative/services.yaml", "serving.knative.dev/v1", "Service") {
		for _, c := range s.Spec.Template.Spec.Containers {
			n++
			check("knative "+s.Metadata.Name, envMap(c))
		}
	}
	if n != 2*len(st.Names()) {
		t.Errorf("%d Knative containers, want %d", n, 2*len(st.Names()))
	}
}
