package ledger

import "testing"

// Unstorable agrees with Postgres 15's jsonb input on each case (checked
// with psql: '{"a":1e131072}'::jsonb overflows, 9e131071 does not, …).
func TestUnstorableIsWhatJSONBRefuses(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{`{"a":"\ud800"}`, true}, {`{"a":"\udc00x"}`, true}, {`{"a":"\ud83d\ude00"}`, false}, {`{"a":"\\ud800"}`, false},
		{`{"a":"\ud83dx\ude00"}`, true}, {`{"\ud800":1}`, true}, {`{"a":"\u00e9"}`, false}, {`{"a":"x\"\ud800"}`, true},
		{`{"a":1e131071}`, false}, {`{"a":9e131071}`, false}, {`{"a":1e131072}`, true}, {`{"a":10e131071}`, true},
		{`{"a":1e-16383}`, false}, {`{"a":1e-16384}`, true}, {`{"a":0.1e-16383}`, true}, {`{"a":0e200000}`, false},
		{`{"a":0e-20000}`, true}, {`{"a":1.5e-16382}`, false}, {`{"a":1.05e-16382}`, true}, {`{"a":-0}`, false},
		{`{"a":1e99999999999999999999}`, true}, {`{"a":0.00001e131076}`, false}, {`{"a":[1,2.5,-3e10]}`, false},
		{`{"a":"\ud800\ud800"}`, true}, {`{"a":"\ud800`, true},
	} {
		if got := Unstorable([]byte(c.in)) != ""; got != c.want {
			t.Errorf("%s: %v", c.in, got)
		}
	}
}
