package events

import (
	"bytes"
	"encoding/json"
	"testing"
)

// encode writes its envelope by hand (appendJSON): the bytes are exactly
// json.Marshal's of the same envelope, whatever the strings hold (characters
// encoding/json escapes, invalid UTF-8) and whichever optional members are
// set, with the data as json.Marshal writes it.
func TestAppendJSONIsJSONMarshal(t *testing.T) {
	strs := []string{"", "plain", "/functions/process-transaction", `q"uo\te`, "<a>&b", "ünï", "\u2028\u2029", "tab\tnl\n", "\x00\x1f\x7f", "bad\xffutf8"}
	datas := []any{nil, map[string]any{"amount": 5, "note": "<&> \u2028"}, []int{1, 2}, "s", 3.5}
	for _, a := range strs {
		for _, d := range datas {
			raw, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			for _, opt := range []string{"", "x"} {
				e := structured{SpecVersion: "1.0", ID: a, Source: a + "s", Type: "billfn." + a, Subject: opt + a,
					Time: "2026-12-04T10:00:00.123Z", DataContentType: "application/json", TraceParent: a,
					TraceState: opt, Data: raw}
				want, err := json.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				if got := e.appendJSON(nil); !bytes.Equal(got, want) {
					t.Fatalf("appendJSON\n%s\njson.Marshal\n%s", got, want)
				}
			}
		}
	}
}
