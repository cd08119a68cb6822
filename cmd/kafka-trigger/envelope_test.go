package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/IBM/sarama"

	"github.com/billfn/billfn/cmd/internal/stackfile"
)

// FuzzWalkHead: walkHead finds, in valid JSON, exactly what decoding the
// whole record as a map of its members finds: whether it is an object
// (then whole),
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
		if !h.whole {
			t.Fatalf("%q: a valid object is not whole", v)
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

// BenchmarkInspectFor: what the trigger spends on one payment event for a
// function that wants it and for one that
// skips it by type (its type only), as generate-invoice skips most of
// payment-events.
func BenchmarkInspectFor(b *testing.B) {
	v := []byte(`{"specversion":"1.0","id":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3b","source":"/functions/capture-payment","type":"billfn.payment.authorized","subject":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3c","time":"2026-12-03T08:14:00.123456Z","datacontenttype":"application/json","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","originkid":"0123456789abcdef","originsig":"` +
		strings.Repeat("A", 86) + `","data":{"payment_id":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3c","account_id":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3d","user_id":"0193a5f0-7b7e-7c4e-9a43-5c2d7e1f2a3e","invoice_id":null,"amount":1234,"currency":"EUR","status":"requires_capture","gateway":"sandbox","gateway_payment_id":"pi_0193a5f07b7e7c4e9a435c2d","capture_method":"manual","payment_method":"pm_card_visa","amount_capturable":1234,"amount_captured":0,"amount_refunded":0,"amount_refund_pending":0,"attempts":1,"pending_operation":null,"description":"a payment of the benchmark","metadata":{"order":"1234"},"cancellation_reason":null,"last_payment_error":null,"next_action":null,"disputed_at":null,"authorized_at":"2026-12-03T08:14:00.123456Z","captured_at":null,"canceled_at":null,"created_at":"2026-12-03T08:14:00.123456Z","updated_at":"2026-12-03T08:14:00.123456Z"}}`)
	m := &sarama.ConsumerMessage{Topic: "payment-events", Value: v}
	for _, c := range []struct {
		name  string
		types string
		kept  bool
	}{{"wanted", "billfn.payment.*", true}, {"skipped", "billfn.payment.captured,billfn.payment.failed", false}} {
		sub, err := stackfile.ParseSubscription(map[string]string{stackfile.AnnotationTopic: "payment-events", stackfile.AnnotationTypes: c.types})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, kept := inspectFor(m, sub.Wants); kept != c.kept {
					b.Fatal(kept)
				}
			}
		})
	}
}
