package ledger

import (
	"strings"
	"testing"
)

// Unstorable's surrogate rule and numericDigits' range agree with
// Postgres 15's jsonb input on each case (checked with psql:
// '{"a":1e131072}'::jsonb overflows, 9e131071 does not, …).
func TestUnstorableIsWhatJSONBRefuses(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{`{"a":"\ud800"}`, true}, {`{"a":"\udc00x"}`, true}, {`{"a":"\ud83d\ude00"}`, false}, {`{"a":"\\ud800"}`, false},
		{`{"a":"\ud83dx\ude00"}`, true}, {`{"\ud800":1}`, true}, {`{"a":"\u00e9"}`, false}, {`{"a":"x\"\ud800"}`, true},
		{`{"a":"\ud800\ud800"}`, true}, {`{"a":"\ud800`, true}, {`{"a":[1,2.5,-3e10]}`, false}, {`{"a":-0}`, false},
	} {
		if got := Unstorable([]byte(c.in)) != ""; got != c.want {
			t.Errorf("%s: %v", c.in, got)
		}
	}
	for _, c := range []struct {
		n      string
		fits   bool
		digits int64
	}{
		{"1e131071", true, 131072}, {"9e131071", true, 131072}, {"1e131072", false, 0}, {"10e131071", false, 0},
		{"1e-16383", true, 16384}, {"1e-16384", false, 0}, {"0.1e-16383", false, 0}, {"0e200000", true, 1},
		{"0e-20000", false, 0}, {"1.5e-16382", true, 16384}, {"1.05e-16382", false, 0}, {"-0", true, 1},
		{"1e99999999999999999999", false, 0}, {"0.00001e131076", true, 131072}, {"0.00001e131077", false, 0},
		{"1.50", true, 3}, {"-12.5", true, 3}, {"1e300", true, 301}, {"1.5e-7", true, 9}, {"1234", true, 4},
	} {
		if d, fits := numericDigits(c.n); fits != c.fits || d != c.digits {
			t.Errorf("%s: %d digits, fits %v; want %d, %v", c.n, d, fits, c.digits, c.fits)
		}
	}
	// Numbers are fine while written out they stay within 8 KiB together.
	if why := Unstorable([]byte(`{"n":[` + strings.Repeat("1e300,", 27) + `1]}`)); why != "" {
		t.Errorf("27 numbers of 301 digits: %s", why)
	}
	if why := Unstorable([]byte(`{"n":[` + strings.Repeat("1e300,", 28) + `1]}`)); why == "" {
		t.Error("28 numbers of 301 digits (8428) passed")
	}
}
