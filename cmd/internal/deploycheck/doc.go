// Package deploycheck holds the tests that keep billfn's deploy files
// honest, since no cluster runs where they are developed: stack.yml,
// knative/, kind-config.yaml, the Dockerfile, the Makefile and
// docs/platform.md are decoded strictly and checked against each other.
package deploycheck
