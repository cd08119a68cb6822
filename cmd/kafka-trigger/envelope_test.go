package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

// FuzzWalkHead: walkHead finds, in valid JSON, exactly what decoding the
// whole record as a map of its members finds: whether it is an object,
// and the raw last member named type, traceparent and tracestate (names
// compared exactly, escapes decoded); jsonString reads a member as
// encoding/json does. In any other bytes it finds what it finds, without
// panicking or running forever.
func FuzzWalkHead(f *testing.F) {
	for _, s := range []string{
		`{"specversion":"1.0","id":"1","source":"/s","type":"billfn.transfer.posted","data":{"type":"inner","a":[1,{"b":"}"}]}}`,
		` { "type" : "a" , "type":"b", "traceparent":"00-x", "tracestate":"k=v" } `,
		`{"TYPE":"upper","\u0074ype":"escaped","data":"\"type\":\"no\""}`,
		`{"type":"a\\","b":"\\\"","c":"\\\\"}`,
		`{"type":5}`, `{"type":null}`, `{"type":"\ud83d\ude00 \u00e9"}`, "{\"type\":\"\xff\"}",
		`null`, `[{"type":"x"}]`, `"type"`, `{}`, `{"a":{}}`, `not json`, `{"type":"x"`, ``,
		`{"type"`, `{"type":`, `{,`, `{"a":"b",`, `{"a\`, `{"type":"x\"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		h := walkHead(v) // on any bytes: returns, without a panic
		if !json.Valid(v) {
			return
		}
		var members map[string]json.RawMessage
		isObject := json.Unmarshal(v, &members) == nil && members != nil
		if h.object != isObject {
			t.Fatalf("%q: object %v, want %v", v, h.object, isObject)
		}
		if !isObject {
			return
		}
		for name, got := range map[string][]byte{"type": h.typ, "traceparent": h.traceParent, "tracestate": h.traceState} {
			want, ok := members[name]
			if ok != (got != nil) || !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
				t.Fatalf("%q: member %s is %q, want %q", v, name, got, want)
			}
			var s string
			if json.Unmarshal(want, &s) != nil {
				s = ""
			}
			if jsonString(got) != s {
				t.Fatalf("%q: member %s reads as %q, want %q", v, name, jsonString(got), s)
			}
		}
	})
}

// BenchmarkInspect: what the trigger spends reading one transfer event.
func BenchmarkInspect(b *testing.B) {
	v := []byte(`{"specversion":"1.0","id":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3b","source":"/functions/process-transaction","type":"billfn.transaction.posted","subject":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3c","time":"2026-12-03T08:14:00.123456Z","datacontenttype":"application/json","originkid":"0123456789abcdef","originsig":"` +
		strings.Repeat("A", 86) + `","data":{"id":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3c","from_account":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3d","to_account":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3e","amount":1234,"currency":"EUR","status":"posted","description":"a transfer of the benchmark","created_at":"2026-12-03T08:14:00.123456Z"}}`)
	m := &sarama.ConsumerMessage{Topic: "transaction-events", Value: v}
	b.ReportAllocs()
	for b.Loop() {
		if r := inspect(m); r.typ != "billfn.transaction.posted" || !r.batchable {
			b.Fatal(r.typ)
		}
	}
}
