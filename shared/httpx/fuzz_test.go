package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/billfn/billfn/shared/problem"
)

// fuzzTarget is shaped like a real request body: scalars, a nested object,
// a pointer, a slice of objects, a map, a free-form member and a type with
// its own UnmarshalJSON.
type fuzzTarget struct {
	Amount   int64             `json:"amount"`
	Rate     float64           `json:"rate"`
	Paid     bool              `json:"paid"`
	Memo     string            `json:"memo"`
	Currency strictCode        `json:"currency,omitempty"`
	Customer customer          `json:"customer"`
	Billing  *address          `json:"billing"`
	Items    []lineItem        `json:"items"`
	Meta     map[string]string `json:"meta"`
	Extra    any               `json:"extra"`
}

// FuzzDecodeJSON checks that no body makes DecodeJSONBody panic or fail
// with anything but a client (4xx) problem, and that whatever it accepts is
// valid JSON that survives a re-encode unchanged.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"amount":1250,"currency":"USD","customer":{"name":"Ada","address":{"zip":10001}},"items":[{"qty":1}],"meta":{"k":"v"}}`))
	f.Add([]byte(`{"amount":"12"}`))
	f.Add([]byte(`{"bogus":true}`))
	f.Add([]byte(`{"amount":1}{"amount":2}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		var dst fuzzTarget
		err := DecodeJSONBody(bytes.NewReader(body), &dst)
		if err != nil {
			var pe *problem.Error
			if !errors.As(err, &pe) {
				t.Fatalf("body %q: error %v (%T) is not a *problem.Error", body, err, err)
			}
			if s := problem.Common.Status(err); s < 400 || s >= 500 {
				t.Fatalf("body %q: status %d (%s), want a 4xx", body, s, pe.Code)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("body %q was accepted but is not valid JSON", body)
		}
		again, err := json.Marshal(dst)
		if err != nil {
			t.Fatalf("body %q: re-encoding the decoded value: %v", body, err)
		}
		var back fuzzTarget
		if err := Unmarshal(again, &back); err != nil {
			t.Fatalf("re-encoded %s is rejected: %v", again, err)
		}
		if !reflect.DeepEqual(back, dst) {
			t.Fatalf("round trip changed the value:\n%#v\n%#v", dst, back)
		}
	})
}
