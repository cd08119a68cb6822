package events_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
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
		code, res := g.send(signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s)
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
	if code, res := g.send(signed(s, http.Header{"Content-Type": {events.ContentTypeStructured}}), s); code != 200 || res.Parked != 1 {
		t.Fatalf("poison: %d %+v", code, res)
	}
	var amount int64
	if err := testenv.Pool(t).QueryRow(context.Background(), `SELECT (event->'data'->>'amount')::bigint FROM dead_letters WHERE consumer = $1 AND event_id = $2`,
		g.consumer, ev.ID()).Scan(&amount); err != nil || amount != -1 {
		t.Fatalf("a storable event's dead letter: %d %v", amount, err)
	}
}
