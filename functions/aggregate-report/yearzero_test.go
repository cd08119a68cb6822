package main

import (
	"strings"
	"testing"
)

// A report's range defaults its start to a span before "to" (30 days for
// the summary). With "to" early in year 0 that start fell before year 0,
// which time.Time's JSON cannot write: the report was computed, then
// answered 500 ("year outside of range [0,9999]"). It is now a 422 naming
// "to" (or "from", when given so early), as for a range too long; the
// earliest range, from 0000-01-01, still answers.
func TestARangeStartingBeforeYearZeroIsA422(t *testing.T) {
	g := newRig(t)
	for _, path := range []string{
		"/reports/summary?to=0000-01-01",
		"/reports/timeseries?metric=revenue&to=0000-01-10",
		"/reports/top-accounts?currency=USD&to=0000-01-01",
	} {
		rec := g.request("GET", path, asAdmin, nil)
		if rec.Code != 422 || !strings.Contains(rec.Body.String(), `"parameter":"to"`) {
			t.Errorf("%s: %d %s, want a 422 naming to", path, rec.Code, rec.Body)
		}
	}
	if rec := g.request("GET", "/reports/summary?from=0000-01-01&to=0000-01-02", asAdmin, nil); rec.Code != 200 {
		t.Errorf("the first day of year 0: %d %s", rec.Code, rec.Body)
	}
}
