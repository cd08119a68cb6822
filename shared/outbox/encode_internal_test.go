package outbox

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/telemetry"
)

// oldEncode is Writer.Add's encoding before events.MarshalEvent, kept as
// the reference: events.Marshal (encoding/json over the SDK's MarshalJSON),
// then sign (SignEncoded, or Sign and Marshal for an event with a proof).
func oldEncode(w Writer, ev events.Event) ([]byte, *string, error) {
	b, err := events.Marshal(ev)
	if err != nil {
		return nil, nil, err
	}
	b, kid := w.sign(ev, b)
	return b, kid, nil
}

// sameEncoding fails t unless w.encode(ev) returns what oldEncode does:
// the same bytes, key id and error or none.
func sameEncoding(t *testing.T, w Writer, ev events.Event) []byte {
	t.Helper()
	want, wantKid, wantErr := oldEncode(w, ev)
	got, gotKid, gotErr := w.encode(ev)
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("encode error %v, old %v", gotErr, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encode\n%s\nold\n%s", got, want)
	}
	if (gotKid == nil) != (wantKid == nil) || gotKid != nil && *gotKid != *wantKid {
		t.Fatalf("encode key id %v, old %v", gotKid, wantKid)
	}
	return got
}

var testSigner = events.NewOriginSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))

// The outbox payload of every event a function writes is the bytes the
// Writer wrote before it had a fast path (events.Marshal then the origin
// proof), signed or not, of its own source or another's, with or without
// trace state, whatever the data; events billfn does not build (another
// extension, a proof already there, binary data) take the old path. The
// SDK decodes a fast-path payload to the event, with a proof that
// verifies.
func TestWriterEncodeIsMarshalThenSign(t *testing.T) {
	const fn = "capture-payment"
	traced := telemetry.FromParent(context.Background(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=a,other=b")
	ctxs := map[string]context.Context{"no trace": context.Background(), "trace": traced,
		"trace without state": events.WithTraceParent(context.Background(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")}
	datas := []any{nil, map[string]any{"amount": 1250, "currency": "EUR"}, map[string]any{"note": "<b>&amp; \u2028 ünï"},
		[]int{1, 2}, "s", 3.5, json.RawMessage(`{"a": [1, 2] }`), struct{}{}}
	subjects := []string{"", "pay_123", `quo"te\&<>`}
	writers := map[string]Writer{"unsigned": {Source: fn}, "signed": {Source: fn, Signer: testSigner},
		"signed, another source": {Source: "generate-invoice", Signer: testSigner}}
	keys, err := events.ParseOriginKeys(testSigner.PublicLine(events.Source(fn)), "test")
	if err != nil {
		t.Fatal(err)
	}
	for cname, ctx := range ctxs {
		for _, d := range datas {
			for _, sub := range subjects {
				ev, err := events.New(ctx, fn, "billfn.payment.captured", sub, d)
				if err != nil {
					t.Fatal(err)
				}
				for wname, w := range writers {
					s := w.Signer
					if w.Source != fn {
						s = nil
					}
					if _, ok := s.MarshalEvent(ev); !ok {
						t.Fatalf("%s, %s, data %v, subject %q: events.New's event not on the fast path", cname, wname, d, sub)
					}
					b := sameEncoding(t, w, ev)
					if cname == "trace" && !bytes.Contains(b, []byte(`,"tracestate":"vendor=a,other=b"`)) {
						t.Fatalf("no tracestate in %s", b)
					}
					got, err := events.Unmarshal(b)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(events.OriginBytes(got), events.OriginBytes(ev)) {
						t.Fatalf("decoded\n%s\nevent\n%s", events.OriginBytes(got), events.OriginBytes(ev))
					}
					tp, ts := events.TraceOf(got)
					if wtp, wts := events.TraceOf(ev); tp == "" || tp != wtp || ts != wts {
						t.Fatalf("decoded trace %q %q, event's %q %q", tp, ts, wtp, wts)
					}
					if s != nil {
						if err := keys.Verify(got); err != nil {
							t.Fatalf("%s: %v", wname, err)
						}
					}
				}
			}
		}
	}

	// Events of other shapes go through the old path, with the same bytes.
	base := events.Must(events.New(traced, fn, "billfn.payment.captured", "pay_1", map[string]int{"n": 1}))
	other := map[string]func(ev *events.Event){
		"another extension": func(ev *events.Event) { ev.SetExtension("partitionkey", "k") },
		"a proof already":   func(ev *events.Event) { events.NewOriginSigner(ed25519.NewKeyFromSeed(make([]byte, 32))).Sign(ev) },
		"no traceparent":    func(ev *events.Event) { delete(ev.Context.AsV1().Extensions, events.TraceParentExt) },
		"binary data":       func(ev *events.Event) { _ = ev.SetData("application/json", []byte{1, 2, 3}) },
		"text data":         func(ev *events.Event) { _ = ev.SetData("text/plain", "hello") },
		"no time":           func(ev *events.Event) { ev.SetTime(time.Time{}) },
		"non-ASCII subject": func(ev *events.Event) { ev.SetSubject("ünï") },
		"control character": func(ev *events.Event) { ev.SetExtension(events.TraceStateExt, "a\bb") },
		"dataschema":        func(ev *events.Event) { ev.SetDataSchema("https://billfn.example/schema") },
		"integer extension": func(ev *events.Event) { ev.SetExtension(events.TraceStateExt, 5) },
	}
	for name, change := range other {
		ev := base.Clone()
		change(&ev)
		for _, w := range writers {
			if _, ok := w.Signer.MarshalEvent(ev); ok {
				t.Fatalf("%s: on the fast path", name)
			}
			sameEncoding(t, w, ev)
		}
	}
}

// FuzzWriterEncodeIsMarshalThenSign holds Writer.encode to oldEncode for
// events as New builds them with fuzzed attributes, extensions and data,
// including data the SDK holds as given (not compact, not JSON at all).
func FuzzWriterEncodeIsMarshalThenSign(f *testing.F) {
	f.Add("019a-id", "capture-payment", "billfn.payment.captured", "pay_1", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "v=1", []byte(`{"a":1}`), int64(1764842400123000000), uint8(0))
	f.Add("id", "x", "t", "", "", "", []byte(` { "a" : "<&>" } `), int64(0), uint8(0xff))
	f.Add("i\"d", "fn", "t\\y", "s\u2028", "tp", "\x01", []byte(`{"a":`), int64(-1), uint8(0x15))
	f.Fuzz(func(t *testing.T, id, fn, typ, subject, tp, ts string, data []byte, nanos int64, flags uint8) {
		ev, err := events.New(context.Background(), fn, "billfn.x.y", "", nil)
		if err != nil {
			return // a source the SDK refuses
		}
		ev.SetID(id) // an invalid value leaves New's (a field error Marshal ignores)
		ev.SetType(typ)
		ev.SetSubject(subject)
		ev.SetTime(time.Unix(0, nanos))
		if flags&1 != 0 {
			ev.SetExtension(events.TraceParentExt, tp)
		}
		if flags&2 != 0 {
			ev.SetExtension(events.TraceStateExt, ts)
		}
		switch {
		case flags&4 != 0:
			ev.DataEncoded = data // as a relay or a test might set it
		case flags&8 != 0:
			if err := ev.SetData("application/json", json.RawMessage(data)); err != nil {
				return
			}
		}
		if flags&16 != 0 {
			ev.SetExtension("other", tp)
		}
		if flags&32 != 0 {
			testSigner.Sign(&ev)
		}
		source := fn
		if flags&64 != 0 {
			source += "-other"
		}
		sameEncoding(t, Writer{Source: source}, ev)
		sameEncoding(t, Writer{Source: source, Signer: testSigner}, ev)
	})
}
