package events_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// A dead letter keeps the whole event as jsonb, and jsonb refuses data
// that encoding/json takes: U+0000 (the data Decode parks for holding
// it), a \u escape of half a surrogate pair, a number beyond numeric. So
// parking such an event failed, and the delivery answered 503: the
// trigger retries a 503 until the function takes the record, so one
// event with a valid signature — or none: an unproven event is parked too
// — held its whole partition back for good. Such an event is now parked
// with its data kept as data_base64 (the same bytes, in the CloudEvents
// form for data that is not JSON text), and answered 200.
func TestAnEventWhoseDataJSONBCannotHoldIsStillParked(t *testing.T) {
	g := newRig(t, false)
	for _, data := range []string{
		`{"amount":1,"description":"a\u0000b"}`, // Decode parks it
		`{"amount":-1,"description":"\ud800"}`,  // the handler's poison
		`{"amount":-1,"n":1e200000}`,
		`{"amount":"x","description":"\udc00"}`, // undecodable
	} {
		ev := newEvent(t, 1)
		if err := ev.SetData("application/json", json.RawMessage(data)); err != nil {
			t.Fatal(err)
		}
		s := structured(t, ev)
		code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
		if code != 200 || res.Parked != 1 {
			t.Errorf("data %s: %d %+v, want 200 and parked", data, code, res)
			continue
		}
		var stored []byte
		if err := testenv.Pool(t).QueryRow(context.Background(), `SELECT event->>'data_base64' FROM dead_letters WHERE consumer = $1 AND event_id = $2`,
			g.consumer, ev.ID()).Scan(&stored); err != nil {
			t.Fatalf("data %s: %v", data, err)
		}
		if got, err := base64.StdEncoding.DecodeString(string(stored)); err != nil || !bytes.Equal(got, []byte(data)) {
			t.Errorf("data %s: dead letter's data_base64 %q, want the data's bytes", data, stored)
		}
	}
	// Data jsonb holds is kept as JSON, as before.
	ev := newEvent(t, -1)
	s := structured(t, ev)
	if code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s); code != 200 || res.Parked != 1 {
		t.Fatalf("poison: %d %+v", code, res)
	}
	var amount int64
	if err := testenv.Pool(t).QueryRow(context.Background(), `SELECT (event->'data'->>'amount')::bigint FROM dead_letters WHERE consumer = $1 AND event_id = $2`,
		g.consumer, ev.ID()).Scan(&amount); err != nil || amount != -1 {
		t.Fatalf("a storable event's dead letter: %d %v", amount, err)
	}
}

// An event's id is stored in text columns (processed_events, and
// dead_letters with the whole event as jsonb), which refuse U+0000 and
// bytes that are not UTF-8 — and so do the CloudEvents spec's String
// attributes. Such an event answered 503 for good (the trigger retrying
// it, its partition waiting behind it); its delivery is now refused as
// malformed (400: the trigger dead-letters the record at once, a batch
// record by record), and nothing is applied or recorded.
func TestAnEventAttributeNoTextColumnCanHoldIsMalformed(t *testing.T) {
	g := newRig(t, false)
	ok := newEvent(t, 7)
	for _, c := range []struct {
		name string
		body func() ([]byte, http.Header)
	}{
		{"structured id with U+0000", func() ([]byte, http.Header) {
			ev := newEvent(t, 1)
			s := bytes.Replace(structured(t, ev), []byte(`"id":"`+ev.ID()+`"`), []byte(`"id":"a\u0000b"`), 1)
			return s, http.Header{"Content-Type": {events.ContentTypeStructured}}
		}},
		{"structured subject with U+0000", func() ([]byte, http.Header) {
			ev := newEvent(t, -1)
			s := bytes.Replace(structured(t, ev), []byte(`"subject":"`+ev.Subject()+`"`), []byte(`"subject":"\u0000"`), 1)
			return s, http.Header{"Content-Type": {events.ContentTypeStructured}}
		}},
		{"batch with an extension holding U+0000", func() ([]byte, http.Header) {
			ev := newEvent(t, -1)
			s := bytes.Replace(structured(t, ev), []byte(`"specversion":"1.0"`), []byte(`"specversion":"1.0","note":"\u0000"`), 1)
			return []byte("[" + string(structured(t, ok)) + "," + string(s) + "]"), http.Header{"Content-Type": {events.ContentTypeBatch}}
		}},
		{"CloudEvents 0.3 id with U+0000", func() ([]byte, http.Header) {
			ev := newEvent(t, 1)
			s := bytes.Replace(structured(t, ev), []byte(`"specversion":"1.0"`), []byte(`"specversion":"0.3"`), 1)
			s = bytes.Replace(s, []byte(`"id":"`+ev.ID()+`"`), []byte(`"id":"a\u0000b"`), 1)
			return s, http.Header{"Content-Type": {events.ContentTypeStructured}}
		}},
		{"binary id not UTF-8", func() ([]byte, http.Header) {
			ev := newEvent(t, 1)
			return ev.Data(), http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"caf\xe9"},
				"Ce-Source": {ev.Source()}, "Ce-Type": {ev.Type()}}
		}},
		{"binary type not UTF-8", func() ([]byte, http.Header) {
			ev := newEvent(t, 1)
			return ev.Data(), http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {ev.ID()},
				"Ce-Source": {ev.Source()}, "Ce-Type": {"billfn.payment.captured\xff"}}
		}},
	} {
		body, hdr := c.body()
		if code, res := g.send(g.signed(body, hdr), body); code != 400 {
			t.Errorf("%s: %d %+v, want 400", c.name, code, res)
		}
	}
	if n, _ := g.sum(); n != 0 {
		t.Errorf("%d events applied", n)
	}
	var recorded int
	if err := testenv.Pool(t).QueryRow(context.Background(), `SELECT (SELECT count(*) FROM processed_events WHERE consumer = $1) +
		(SELECT count(*) FROM dead_letters WHERE consumer = $1)`, g.consumer).Scan(&recorded); err != nil || recorded != 0 {
		t.Errorf("%d events recorded (%v)", recorded, err)
	}
	// Text the columns hold is fine, whatever its script.
	ev := newEvent(t, 3)
	ev.SetID("événement-" + strings.Repeat("ü", 3))
	s := structured(t, ev)
	if code, res := g.send(g.signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s); code != 200 || res.Processed != 1 {
		t.Errorf("an id outside ASCII: %d %+v", code, res)
	}
}
