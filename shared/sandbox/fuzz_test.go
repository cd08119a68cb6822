package sandbox_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/sandbox"
)

// FuzzEvent decodes a webhook body as the contract's types. Whatever
// decodes survives a re-encode unchanged (envelope and object), and an
// expandable ID accepts exactly a string, null or an object, reading the
// string or the object's id.
func FuzzEvent(f *testing.F) {
	body, _ := sandbox.NewEvent("evt_sbx_1", "payment_intent.succeeded", time.Unix(1_800_000_000, 0), sandbox.PaymentIntent{
		ID: "pi_sbx_1", Object: "payment_intent", Amount: 1050, AmountReceived: 1050, Currency: "usd", Status: "succeeded",
		Metadata: map[string]string{sandbox.MetadataPaymentID: "6f1c7e0a-0000-4000-8000-000000000001"}})
	f.Add(body)
	f.Add([]byte(`{"id":"evt_1","object":"event","type":"charge.refunded","data":{"object":{"object":"charge","payment_intent":{"id":"pi_1"},"charge":null}}}`))
	f.Add([]byte(`"pi_1"`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkID(t, body)
		var ev sandbox.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			return
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", ev, err)
		}
		var back sandbox.Event
		if err := json.Unmarshal(again, &back); err != nil {
			t.Fatalf("re-encoded event %s is rejected: %v", again, err)
		}
		if !sameJSON(ev.Data.Object, back.Data.Object) {
			t.Fatalf("data.object changed: %s, then %s", ev.Data.Object, back.Data.Object)
		}
		ev.Data, back.Data = sandbox.EventData{}, sandbox.EventData{}
		if !reflect.DeepEqual(ev, back) {
			t.Fatalf("envelope changed in a round trip:\n%+v\n%+v", ev, back)
		}
		checkID(t, ev.Data.Object)
		var o sandbox.Object
		if len(ev.Data.Object) == 0 || json.Unmarshal(ev.Data.Object, &o) != nil {
			return
		}
		again, err = json.Marshal(o)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", o, err)
		}
		var ob sandbox.Object
		if err := json.Unmarshal(again, &ob); err != nil {
			t.Fatalf("re-encoded object %s is rejected: %v", again, err)
		}
		if !reflect.DeepEqual(o, ob) {
			t.Fatalf("object changed in a round trip:\n%+v\n%+v", o, ob)
		}
	})
}

// checkID decodes raw (any JSON value) as an expandable ID.
func checkID(t *testing.T, raw []byte) {
	t.Helper()
	if !json.Valid(raw) {
		return
	}
	var id sandbox.ID
	err := json.Unmarshal(raw, &id)
	v := bytes.TrimSpace(raw)
	switch {
	case string(v) == "null":
		if err != nil || id != "" {
			t.Fatalf("null: %q, %v", id, err)
		}
	case v[0] == '"':
		var s string
		_ = json.Unmarshal(v, &s)
		if err != nil || string(id) != s {
			t.Fatalf("string %s: %q, %v", v, id, err)
		}
	case v[0] == '{':
		var o struct {
			ID string `json:"id"`
		}
		oerr := json.Unmarshal(v, &o)
		if (err == nil) != (oerr == nil) || string(id) != o.ID && err == nil {
			t.Fatalf("object %s: %q, %v; its id is %q (%v)", v, id, err, o.ID, oerr)
		}
	default:
		if err == nil {
			t.Fatalf("%s is neither a string, null nor an object, yet decoded to %q", v, id)
		}
	}
}

func sameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b) || string(bytes.TrimSpace(a)) == "null" || string(bytes.TrimSpace(b)) == "null"
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// FuzzVerify: Secrets reads a rotation list into trimmed, non-empty
// secrets; a body signed with any of them verifies against the list, and
// one signed with a secret not in it never does.
func FuzzVerify(f *testing.F) {
	f.Add(" new , old ,", []byte(`{"id":"evt_1"}`), int64(1_800_000_000))
	f.Add("", []byte(``), int64(0))
	f.Add(",,, ,\t,", []byte(`x`), int64(-1))
	f.Fuzz(func(t *testing.T, list string, body []byte, ts int64) {
		secrets := sandbox.Secrets(list)
		at := time.Unix(ts, 0)
		in := map[string]bool{}
		for _, s := range secrets {
			if len(s) == 0 || strings.TrimSpace(string(s)) != string(s) || bytes.ContainsRune(s, ',') {
				t.Fatalf("Secrets(%q) holds %q", list, s)
			}
			in[string(s)] = true
			if err := sandbox.Verify(secrets, sandbox.Sign(s, at, body), body, at, sandbox.DefaultTolerance); err != nil {
				t.Fatalf("signed with %q of %q: %v", s, list, err)
			}
		}
		other := "rotated-out:" + list
		if in[other] {
			return
		}
		err := sandbox.Verify(secrets, sandbox.Sign([]byte(other), at, body), body, at, sandbox.DefaultTolerance)
		if err == nil {
			t.Fatalf("a body signed with %q verified against %q", other, list)
		}
		if !errors.Is(err, events.ErrBadSignature) {
			t.Fatalf("a foreign signature: %v, want ErrBadSignature", err)
		}
	})
}
