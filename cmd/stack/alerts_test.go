package main

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestAlertRulesAreValid: promtool (Debian's prometheus package, which
// make observe installs) accepts docs/prometheus-alerts.yml. A missing promtool
// fails the test: install it with apt-get install prometheus.
func TestAlertRulesAreValid(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is needed (apt-get install --no-install-recommends prometheus): %v", err)
	}
	out, err := exec.Command(promtool, "check", "rules", filepath.Join("..", "..", "docs", "prometheus-alerts.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
