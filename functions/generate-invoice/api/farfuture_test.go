package api

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// A subscription's start was bounded in the past (a year back) and not in
// the future: "start":"9999-12-31T00:00:00Z" made a first period ending
// in year 10000, which its billfn.subscription.created event cannot encode
// — events.Must panicked inside the transaction and the answer was a 500.
// start and trial_end are now at most five years ahead (a 422 naming
// them, nothing written); a start four years ahead is still taken.
func TestASubscriptionStartsAndEndsItsTrialAtMostFiveYearsAhead(t *testing.T) {
	g := newRig(t)
	var before, after int
	count := func(n *int) {
		if err := g.d.Pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM subscriptions) + (SELECT count(*) FROM idempotency_keys)`).Scan(n); err != nil {
			t.Fatal(err)
		}
	}
	count(&before)
	for _, c := range []struct{ member, at string }{
		{"start", "9999-12-31T00:00:00Z"},
		{"start", "2031-03-11T09:30:00Z"}, // the rig's clock is 2026-03-10 09:30
		{"trial_end", "9999-12-31T00:00:00Z"},
	} {
		rec := g.call(call{method: "POST", path: "/subscriptions", body: subBody(uuid.NewString(), monthly(1000), c.member, c.at),
			sub: g.admin, role: auth.RoleService})
		if rec.Code != 422 || !strings.Contains(rec.Body.String(), `"pointer":"#/`+c.member+`"`) {
			t.Errorf("%s %s: %d %s, want a 422 naming it", c.member, c.at, rec.Code, rec.Body)
		}
	}
	count(&after)
	if after != before {
		t.Errorf("refused subscriptions wrote %d rows", after-before)
	}
	g.subscribe(subBody(uuid.NewString(), monthly(1000), "start", "2030-03-10T09:30:00Z"))
	g.subscribe(subBody(uuid.NewString(), monthly(1000), "trial_end", "2031-03-10T09:30:00Z"))
}
