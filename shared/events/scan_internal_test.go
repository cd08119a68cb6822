package events

import (
	"encoding/json"
	"strings"
	"testing"
)

// scanCorpus are bodies at the edges of JSON's grammar and of
// encoding/json's nesting limit.
func scanCorpus() []string {
	deep := func(n int) string { return "[" + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + "]" }
	deepObj := func(n int) string { return "[" + strings.Repeat(`{"a":`, n-1) + "1" + strings.Repeat("}", n-1) + "]" }
	return []string{
		`[]`, ` [ ] `, `[1]`, `[1,]`, `[,1]`, `[1 2]`, `[null]`, `[true,false,null]`, `[tru]`, `[truex]`, `[nul]`,
		`[0]`, `[-0]`, `[01]`, `[-]`, `[1.]`, `[.5]`, `[1.5e]`, `[1e+]`, `[1E-7]`, `[-12.50e+03]`, `[1e5.5]`, `[0x1]`,
		`[""]`, `["\u00e9\n\t\"\\\/\b\f\r"]`, `["\x"]`, `["\u12"]`, `["\u12G4"]`, "[\"a\x01\"]", "[\"\xff\xfe\"]", `["]`,
		`[{}]`, `[{"a":1}]`, `[{"a":1,}]`, `[{"a" 1}]`, `[{a:1}]`, `[{"a":1 "b":2}]`, `[{"a":[{"b":{}}]}]`, `[{,}]`,
		`[1]x`, `[1] ]`, `[1`, `[`, `[{`, `[{"a":`, `[{"a":1`, "[1]\n", "[\t1\r\n,\n2 ]", `[1]]`, `[[]`, `[[1],[2,[3]]]`,
		deep(maxScanDepth), deep(maxScanDepth + 1), deepObj(maxScanDepth), deepObj(maxScanDepth + 1),
	}
}

// scanBatch says what json.Valid says of a body that starts with '[', and
// its elements are the ones json.Unmarshal reads into []json.RawMessage.
func FuzzScanBatch(f *testing.F) {
	for _, s := range scanCorpus() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b := trimJSONSpace(body)
		if len(b) == 0 || b[0] != '[' {
			return
		}
		spans, ok := scanBatch(b, nil)
		if want := json.Valid(b); ok != want {
			t.Fatalf("%.200q: scanBatch %v, json.Valid %v", b, ok, want)
		}
		if !ok {
			return
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(b, &raws); err != nil {
			t.Fatal(err)
		}
		if len(raws) != len(spans) {
			t.Fatalf("%.200q: %d elements, json.Unmarshal %d", b, len(spans), len(raws))
		}
		for k, sp := range spans {
			if string(b[sp[0]:sp[1]]) != string(raws[k]) {
				t.Fatalf("%.200q: element %d is %q, json.Unmarshal's %q", b, k, b[sp[0]:sp[1]], raws[k])
			}
		}
	})
}
