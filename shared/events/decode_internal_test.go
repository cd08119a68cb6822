package events

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

// decodeCorpus are events as billfn writes them, and objects at the
// edges of what decodeCommon takes.
func decodeCorpus(tb testing.TB) []string {
	ev := Must(New(context.Background(), "capture-payment", TypePaymentCaptured, "pay_1",
		map[string]any{"payment_id": "pay_1", "amount": 2550, "currency": "USD", "ratio": 0.5, "ok": true, "none": nil, "list": []any{1, "a"}}))
	ev.SetExtension(OriginSigExt, "c2lnbmF0dXJl")
	ev.SetExtension(OriginKidExt, "capture-payment-1")
	b, err := json.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	deep := `{"specversion":"1.0","id":"1","source":"/x","type":"t","data":` + strings.Repeat("[", maxDataDepth+1) + strings.Repeat("]", maxDataDepth+1) + `}`
	return []string{
		string(b),
		`{"specversion":"1.0","id":"1","source":"/x","type":"t"}`,
		`{"id":"1","source":"/x","type":"t","data":{"a":1},"datacontenttype":"application/json","specversion":"1.0"}`,
		`{"data": {"a":1} ,"specversion":"1.0","id":"1","source":"/x","type":"t"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","data":null}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","data":"text"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","data":{"n":-1,"e":1e999999}}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","data":{"n":-2550,"m":[-0.5,-0],"o":-123456789012345}}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","data":{"n":-92233720368547758089}}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","data":-1e5}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","datacontenttype":"text/plain","data":"x"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","datacontenttype":"application/json; charset=utf-8"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","subject":""}`,
		`{"specversion":"1.0","id":"","source":"/x","type":"t"}`,
		`{"specversion":"1.0","id":"1","source":"%zz","type":"t"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","time":"2026-12-05T06:00:00.123+01:00"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","time":"yesterday"}`,
		`{"specversion":"1.0","id":"1","id":"2","source":"/x","type":"t"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","ext":"a","ext":"b"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","Ext":"a"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","ext":1}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","ext":"\u00e9"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","dataschema":"http://x/y"}`,
		`{"specversion":"1.0","id":"1","source":"/x","type":"t","data_base64":"AAE="}`,
		`{"specversion":"0.3","id":"1","source":"/x","type":"t"}`,
		`{"id":"1","source":"/x","type":"t"}`,
		`{"specversion":"1.0","id":"a\"b","source":"/x","type":"t"}`,
		deep, `{}`, `[]`, `null`, `"x"`,
	}
}

// decodeEvent gives the Event (or an error, when) the SDK's decoder does.
func FuzzDecodeEventIsTheSDKs(f *testing.F) {
	for _, s := range decodeCorpus(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = trimJSONSpace(b)
		if !json.Valid(b) {
			return
		}
		var got, want Event
		gotErr := decodeEvent(b, &got)
		wantErr := want.UnmarshalJSON(b)
		if (gotErr != nil) != (wantErr != nil) || gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\ndecodeEvent: %v %#v\nSDK:         %v %#v", b, gotErr, got, wantErr, want)
		}
	})
}

// The events billfn writes are decoded without the SDK's generic path: a
// signed payment event costs at most 10 allocations (its context, the
// string its attributes are cut from, its subject, time and content type,
// the extensions' map and their three values; 41 through the SDK). Its
// source's URL costs none when the event before had the same source
// (lastSource), as a delivery's events mostly do; see also
// TestAnEventsSourceIsItsOwnWhateverCameBefore.
func TestDecodeEventAllocations(t *testing.T) {
	for _, s := range []string{decodeCorpus(t)[0], `{"specversion":"1.0","id":"1","source":"/x","type":"t","data":{"n":-2550,"m":[-0.5,-0]}}`} {
		var ev Event
		if !decodeCommon([]byte(s), &ev) {
			t.Fatalf("decodeCommon declines %s", s)
		}
	}
	b := []byte(decodeCorpus(t)[0])
	var ev Event
	_ = decodeCommon(b, &ev)
	allocs := testing.AllocsPerRun(100, func() {
		var ev Event
		if err := decodeEvent(b, &ev); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Errorf("decodeEvent of a payment event: %.0f allocations, want at most 10", allocs)
	}
	if _, ok := ev.Context.(*event.EventContextV1); !ok {
		t.Errorf("context %T, want a 1.0 context", ev.Context)
	}
}

// Events whose sources alternate each get their own source, the URL the
// SDK would parse, and a source remembered from an earlier event does not
// keep that event's body: it is parsed from a copy.
func TestAnEventsSourceIsItsOwnWhateverCameBefore(t *testing.T) {
	sources := []string{"/functions/capture-payment", "/functions/process-transaction", "/functions/capture-payment", "https://acme.example/billing?x=1", "/functions/capture-payment"}
	for i, src := range sources {
		body := []byte(`{"specversion":"1.0","id":"` + strconv.Itoa(i) + `","source":"` + src + `","type":"t"}`)
		var got, want Event
		if !decodeCommon(body, &got) {
			t.Fatalf("decodeCommon declines %s", body)
		}
		if err := want.UnmarshalJSON(body); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\ndecodeCommon %#v\nSDK          %#v", body, got, want)
		}
		copy(body, strings.Repeat("x", len(body))) // the delivery's buffer, reused
		if got.Source() != src {
			t.Fatalf("event %d's source reads %q after its body was reused, want %q", i, got.Source(), src)
		}
		if p := lastSource.Load(); p == nil || p.s != src {
			t.Fatalf("lastSource after event %d: %+v", i, p)
		}
	}
}

// SourceOf is Source(), and takes no allocation for billfn's sources.
func TestSourceOfIsSource(t *testing.T) {
	for _, src := range []string{"/functions/capture-payment", "/", "/a//b", "//host/p", "/a b", "/a%20b", "/é", "a:b",
		"a/b", "https://example.com/x", "/x?q=1", "/x#f", "/x?", "urn:billfn:x", "*", "/*", "mailto:a@b", "./a:b", "/a:b"} {
		for _, ev := range []Event{event.New(), event.New(event.CloudEventsVersionV03)} {
			ev.SetSource(src)
			if got, want := SourceOf(ev), ev.Source(); got != want {
				t.Errorf("%q (%s): SourceOf %q, Source() %q", src, ev.SpecVersion(), got, want)
			}
		}
	}
	ev := event.New()
	ev.SetSource(Source("capture-payment"))
	if n := testing.AllocsPerRun(100, func() { _ = SourceOf(ev) }); n != 0 {
		t.Errorf("SourceOf: %.0f allocations, want none", n)
	}
}

// From(ev, f) is ev.Source() == Source(f), for every source and name.
func TestFromIsSourceEquality(t *testing.T) {
	sources := []string{"/functions/capture-payment", "/functions/capture-paymentx", "/functions/", "/functions",
		"/functionsx/capture-payment", "functions/capture-payment", "/functions/capture%2Dpayment", "/functions/a b",
		"https://x/functions/capture-payment", "/functions/capture-payment?", "/functions/capture-payment#", "/x"}
	names := []string{"capture-payment", "capture", "", "a b", "capture-paymentx"}
	for _, src := range sources {
		for _, ev := range []Event{event.New(), event.New(event.CloudEventsVersionV03)} {
			ev.SetSource(src)
			for _, f := range names {
				if got, want := From(ev, f), ev.Source() == Source(f); got != want {
					t.Errorf("From(%q (%s), %q) = %v, Source() == Source(f) is %v", src, ev.SpecVersion(), f, got, want)
				}
			}
		}
	}
	ev := event.New()
	ev.SetSource(Source("capture-payment"))
	if n := testing.AllocsPerRun(100, func() { _ = From(ev, "capture-payment") }); n != 0 {
		t.Errorf("From: %.0f allocations, want none", n)
	}
}

func FuzzFromIsSourceEquality(f *testing.F) {
	f.Add("/functions/capture-payment", "capture-payment")
	f.Add("/functions/a%20b", "a b")
	f.Fuzz(func(t *testing.T, src, name string) {
		ev := event.New()
		ev.SetSource(src)
		if got, want := From(ev, name), ev.Source() == Source(name); got != want {
			t.Errorf("From(%q, %q) = %v, Source() == Source(f) is %v", src, name, got, want)
		}
	})
}

// plainValid never says valid of a context Validate refuses, and says it
// of billfn's events.
func TestPlainValidIsValidate(t *testing.T) {
	for _, s := range decodeCorpus(t) {
		var ev Event
		if err := ev.UnmarshalJSON([]byte(s)); err != nil || ev.Context == nil {
			continue
		}
		if plainValid(ev.Context) && ev.Context.Validate() != nil {
			t.Errorf("%s: plainValid, Validate %v", s, ev.Context.Validate())
		}
	}
	blank := " "
	for _, ec := range []*event.EventContextV1{
		{ID: " ", Type: "t"}, {ID: "1", Type: "\t"}, {ID: "1", Type: "t", Subject: &blank}, {ID: "1", Type: "t"},
	} {
		ec.Source.Path = "/x"
		if plainValid(ec) && ec.Validate() != nil {
			t.Errorf("%+v: plainValid, Validate %v", ec, ec.Validate())
		}
	}
	var ev Event
	if err := decodeEvent([]byte(decodeCorpus(t)[0]), &ev); err != nil || !plainValid(ev.Context) {
		t.Errorf("a billfn event: %v, plainValid %v", err, plainValid(ev.Context))
	}
}
