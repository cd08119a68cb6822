package events_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/problem"
)

// Delivery forms FuzzParse builds a request in.
const (
	formStructured = iota // Content-Type application/cloudevents+json (or the fuzzed one)
	formBatch             // application/cloudevents-batch+json
	formBinary            // ce-* headers, the body is the data
	formConnector         // the kafka-connector: the structured event whatever the Content-Type
	formCount
)

// fuzzRequest builds the delivery: headers are "Name: value" lines.
func fuzzRequest(form uint8, contentType, headers string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	for _, line := range strings.Split(headers, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k != "" {
			r.Header.Add(k, strings.TrimSpace(v))
		}
	}
	switch form % formCount {
	case formStructured:
		if contentType == "" {
			contentType = events.ContentTypeStructured
		}
		r.Header.Set("Content-Type", contentType)
	case formBatch:
		r.Header.Set("Content-Type", events.ContentTypeBatch+contentType) // e.g. "; charset=utf-8"
	case formBinary:
		if r.Header.Get("Ce-Specversion") == "" {
			r.Header.Set("Ce-Specversion", "1.0")
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
	case formConnector:
		r.Header.Set("X-Topic", "payment-events")
		r.Header.Set("X-Connector", "kafka-connector")
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

// FuzzParse: a delivery in any form is either events that are all valid
// CloudEvents (as many as the batch holds) or a 4xx *problem.Error; a
// structured event survives Marshal and Unmarshal unchanged.
func FuzzParse(f *testing.F) {
	valid := `{"specversion":"1.0","id":"0190a6f0-0000-7000-8000-000000000001","source":"/functions/capture-payment",` +
		`"type":"billfn.payment.captured","subject":"p1","time":"2026-03-01T10:30:00Z","datacontenttype":"application/json",` +
		`"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":{"amount":1050}}`
	f.Add(uint8(formStructured), "", "", []byte(valid))
	f.Add(uint8(formBatch), "", "", []byte("["+valid+","+valid+"]"))
	f.Add(uint8(formBinary), "application/json", "Ce-Id: 1\nCe-Source: /x\nCe-Type: billfn.payment.captured\nCe-Time: 2026-03-01T10:30:00Z", []byte(`{"amount":1}`))
	f.Add(uint8(formConnector), "text/plain", "", []byte(valid))
	f.Fuzz(func(t *testing.T, form uint8, contentType, headers string, body []byte) {
		r := fuzzRequest(form, contentType, headers, body)
		evs, err := events.Parse(r, body)
		if err != nil {
			var pe *problem.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *problem.Error", err, err)
			}
			if s := problem.Common.Status(pe); s < 400 || s >= 500 {
				t.Fatalf("status %d for a malformed delivery, want 4xx: %v", s, err)
			}
			if evs != nil {
				t.Fatalf("events alongside error %v", err)
			}
			return
		}
		if len(evs) == 0 {
			t.Fatal("no events and no error")
		}
		for i, ev := range evs {
			if err := ev.Validate(); err != nil {
				t.Fatalf("event %d is invalid but was returned: %v", i, err)
			}
		}
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == events.ContentTypeBatch {
			var raw []json.RawMessage
			if err := json.Unmarshal(body, &raw); err != nil || len(raw) != len(evs) {
				t.Fatalf("batch of %d events from a body holding %d (%v)", len(evs), len(raw), err)
			}
		} else if len(evs) != 1 {
			t.Fatalf("%d events from a single-event delivery", len(evs))
		}
		for i, ev := range evs {
			b, err := events.Marshal(ev)
			if err != nil {
				t.Fatalf("event %d: re-encoding: %v", i, err)
			}
			back, err := events.Unmarshal(b)
			if err != nil {
				t.Fatalf("event %d re-encoded as %s is rejected: %v", i, b, err)
			}
			if back.ID() != ev.ID() || back.Source() != ev.Source() || back.Type() != ev.Type() ||
				back.Subject() != ev.Subject() || !back.Time().Equal(ev.Time()) || !sameData(back.Data(), ev.Data()) {
				t.Fatalf("event %d changed in a round trip:\n%s\n%s", i, ev, back)
			}
		}
	})
}

// sameData compares event data as JSON values when both are JSON, as bytes otherwise.
func sameData(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

var (
	fuzzNow  = time.Unix(1_800_000_000, 0)
	fuzzKeys = [][]byte{[]byte("old-event-key"), []byte("current-event-key")}
)

// How FuzzVerifySignature builds its header.
const (
	sigRaw      = iota // the fuzzed header alone
	sigSigned          // Sign with key k at ts
	sigPrefixed        // the fuzzed header, then a signed one
	sigSuffixed        // a signed header, then the fuzzed one
	sigModes
)

// FuzzVerifySignature: VerifySignature accepts a header only when one of
// its v1 values is the HMAC, with one of the keys, of "<t>.<body>" for a t
// the header carries within the tolerance; it accepts every header Sign
// makes with a key in time, and none made with another key.
func FuzzVerifySignature(f *testing.F) {
	body := []byte(`{"specversion":"1.0","id":"1","source":"/x","type":"t"}`)
	f.Add(body, "", uint8(sigSigned), uint8(1), int64(1_800_000_000))
	f.Add(body, "t=1800000000,v1=00", uint8(sigRaw), uint8(0), int64(0))
	f.Add(body, "t=1,v1="+strings.Repeat("ab", 32), uint8(sigPrefixed), uint8(0), int64(1_800_000_100))
	f.Add(body, "t=99999999999999999999", uint8(sigSuffixed), uint8(2), int64(1_800_000_000))
	f.Fuzz(func(t *testing.T, body []byte, header string, mode, k uint8, ts int64) {
		key := []byte("an-attacker-key")
		if int(k)%3 < len(fuzzKeys) {
			key = fuzzKeys[int(k)%3]
		}
		signed := events.Sign(key, time.Unix(ts, 0), body)
		switch mode % sigModes {
		case sigSigned:
			header = signed
		case sigPrefixed:
			header = header + "," + signed
		case sigSuffixed:
			header = signed + "," + header
		}
		err := events.VerifySignature(fuzzKeys, header, body, fuzzNow, events.DefaultTolerance)
		if err != nil {
			known := false
			for _, e := range []error{events.ErrNoSignature, events.ErrBadSignature, events.ErrStaleSignature, events.ErrMalformedSigHead} {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("unexpected error %v", err)
			}
		}
		inTime := func(sec int64) bool {
			d := fuzzNow.Sub(time.Unix(sec, 0))
			return d <= events.DefaultTolerance && d >= -events.DefaultTolerance
		}
		if mode%sigModes == sigSigned {
			known := int(k)%3 < len(fuzzKeys)
			if want := known && inTime(ts); (err == nil) != want {
				t.Fatalf("Sign(key %d, %d) = %q: VerifySignature = %v, want accepted=%v", k%3, ts, header, err, want)
			}
		}
		if err != nil {
			return
		}
		// Accepted: some t of the header is in time, and some v1 is the
		// MAC over that very t and this body with one of the keys.
		var tss []string
		var sigs [][]byte
		for _, part := range strings.Split(header, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "t":
				tss = append(tss, v)
			case "v1":
				if b, err := hex.DecodeString(v); err == nil {
					sigs = append(sigs, b)
				}
			}
		}
		for _, tv := range tss {
			sec, err := strconv.ParseInt(tv, 10, 64)
			if err != nil || !inTime(sec) {
				continue
			}
			for _, key := range fuzzKeys {
				m := hmac.New(sha256.New, key)
				m.Write([]byte(tv + "."))
				m.Write(body)
				want := m.Sum(nil)
				for _, s := range sigs {
					if hmac.Equal(s, want) {
						return
					}
				}
			}
		}
		t.Fatalf("accepted %q for body %q, which no key signed in time", header, body)
	})
}
