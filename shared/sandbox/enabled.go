package sandbox

import (
	"fmt"
	"os"
	"strings"
)

// EnabledEnv is the variable that lets a function route payments to the
// sandbox gateway. The sandbox answers test cards (pm_card_visa) as if money
// moved, so on a cluster it would let anyone create balance: it is for the
// local stack (make run sets it) and tests only.
const EnabledEnv = "SANDBOX_ENABLED"

// RequireEnabled refuses a gateway routing (capture-payment's
// GATEWAY_ROUTES, "<CURRENCY|*>=<gateway>[,<gateway>…];…") that names the
// sandbox unless SANDBOX_ENABLED=true is set explicitly in the environment.
// A function calls it at start, before it opens anything.
func RequireEnabled(routes string) error {
	v, _ := os.LookupEnv(EnabledEnv)
	return CheckRoutes(routes, v)
}

// CheckRoutes is RequireEnabled with the value of SANDBOX_ENABLED given:
// only "true" (any case) enables the sandbox; "false" or nothing refuses a
// sandbox route, and any other value is refused so that a typo never turns
// it on or hides the reason.
func CheckRoutes(routes, enabled string) error {
	enabled = strings.TrimSpace(enabled)
	var on bool
	switch strings.ToLower(enabled) {
	case "true":
		on = true
	case "false", "":
	default:
		return fmt.Errorf("%s=%q: set %s=true to allow the sandbox gateway, or leave it unset", EnabledEnv, enabled, EnabledEnv)
	}
	var to []string
	for _, entry := range strings.Split(routes, ";") {
		cur, list, ok := strings.Cut(entry, "=")
		if !ok {
			continue // GATEWAY_ROUTES' own parser reports it
		}
		for _, g := range strings.Split(list, ",") {
			if strings.EqualFold(strings.TrimSpace(g), "sandbox") {
				to = append(to, strings.TrimSpace(cur))
			}
		}
	}
	if len(to) == 0 || on {
		return nil
	}
	return fmt.Errorf("GATEWAY_ROUTES routes %s to the sandbox gateway, which takes test cards (pm_card_visa) as real money and is meant "+
		"for a local stack only: set %s=true to run it on purpose, or route to Stripe (GATEWAY_ROUTES=*=stripe with STRIPE_API_KEY or the secret file stripe-api-key)",
		strings.Join(to, ", "), EnabledEnv)
}
