package payments_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/billfn/billfn/functions/capture-payment/payments"
)

// tokenRE is the definition ValidToken implements without compiling it at
// every start.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_]{3,255}$`)

func TestValidTokenIsTheRegexp(t *testing.T) {
	for _, s := range []string{"", "pm", "pm_", "pm_card_visa", "PM_123", "pm-card", "pm card", "pm_card\n", "\npm_card", "pm_é",
		"pm_\x00", strings.Repeat("a", 255), strings.Repeat("a", 256), strings.Repeat("a", 254) + "-", "tok_" + strings.Repeat("Z9", 100)} {
		if got, want := payments.ValidToken(s), tokenRE.MatchString(s); got != want {
			t.Errorf("ValidToken(%q) = %v, the regexp says %v", s, got, want)
		}
	}
}

func FuzzValidToken(f *testing.F) {
	for _, s := range []string{"pm_card_visa", "pm-x", "ab", strings.Repeat("b", 255), "pm_\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := payments.ValidToken(s), tokenRE.MatchString(s); got != want {
			t.Fatalf("ValidToken(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
