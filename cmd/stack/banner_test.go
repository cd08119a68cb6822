package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestBannerTryCommandsWork pastes the commands the banner offers under
// "Try" with the TOKEN and GW it exports, as a reader of make run's output
// does. The second one read GET /accounts/SYS-EXTERNAL-USD, which is not a
// route (an account is read by its id), so the first thing a new user
// pasted from the banner answered 404 not_found.
func TestBannerTryCommandsWork(t *testing.T) {
	e := startStack(t, stackOptions{})
	var lines []string
	for _, l := range strings.Split(e.out.String(), "\n") {
		if _, after, ok := strings.Cut(l, "| "); ok && strings.HasPrefix(l, "stack ") {
			lines = append(lines, after)
		}
	}
	var try []string
	export := map[string]string{}
	in := false
	for _, l := range lines {
		if m := regexp.MustCompile(`^\s+export (TOKEN|GW)=(\S+)$`).FindStringSubmatch(l); m != nil {
			export[m[1]] = m[2]
		}
		switch {
		case strings.HasPrefix(l, "Try "):
			in = true
		case in && strings.HasPrefix(strings.TrimSpace(l), "curl "):
			try = append(try, strings.TrimSpace(l))
		case in && len(try) > 0 && strings.TrimSpace(l) == "":
			in = false
		}
	}
	if len(try) < 2 || export["TOKEN"] == "" || export["GW"] == "" {
		t.Fatalf("the banner offers %d commands to try (TOKEN %t, GW %q):\n%s", len(try), export["TOKEN"] != "", export["GW"], tail(e.out.String(), 40))
	}
	for _, c := range try {
		cmd := exec.Command("bash", "-c", "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; }\n"+c)
		cmd.Dir = e.root
		cmd.Env = append(os.Environ(), "TOKEN="+export["TOKEN"], "GW="+export["GW"])
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Errorf("the banner's %s: %v\n%s", c, err, out.String())
		}
	}
}
