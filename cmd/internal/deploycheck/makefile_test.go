package deploycheck

import (
	"regexp"
	"strings"
	"testing"
)

func TestMakefileHasEveryDocumentedTarget(t *testing.T) {
	mk := read(t, "Makefile")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):.*## `).FindAllStringSubmatch(mk, -1) {
		documented[m[1]] = true
	}
	for _, target := range []string{"run", "test", "build", "images", "kind-up", "deploy-openfaas", "deploy-knative", "e2e", "token", "clean"} {
		if !documented[target] {
			t.Errorf("make %s is missing or has no ## help", target)
		}
	}
	// make test runs every package with the race detector, so the local
	// stack's end-to-end test (cmd/stack) is part of it.
	test := regexp.MustCompile(`(?m)^test:.*\n((?:\t.*\n)+)`).FindStringSubmatch(mk)
	if test == nil || !strings.Contains(test[1], "test -race") || !strings.Contains(test[1], "$(PKGS)") ||
		!regexp.MustCompile(`(?m)^PKGS\s*\?=\s*\./\.\.\.$`).MatchString(mk) {
		t.Error("make test must run go test -race over ./... (which includes cmd/stack's end-to-end test)")
	}
	if !strings.Contains(mk, "TestLocalStackEndToEnd") {
		t.Error("make e2e does not run TestLocalStackEndToEnd")
	}
	if !strings.Contains(mk, "kubectl apply -k knative\n") || !strings.Contains(mk, "kubectl apply -k knative/openfaas") ||
		!strings.Contains(mk, "faas-cli deploy -f stack.yml") || !strings.Contains(mk, "--config kind-config.yaml") {
		t.Error("the deploy targets must apply knative/, knative/openfaas, stack.yml and kind-config.yaml")
	}
}
