package httpx

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/billfn/billfn/shared/problem"
)

type address struct {
	Zip  int    `json:"zip"`
	City string `json:"city"`
}

type customer struct {
	Name    string  `json:"name"`
	Address address `json:"address"`
}

type lineItem struct {
	Qty int `json:"qty"`
}

type payment struct {
	Amount   int64             `json:"amount"`
	Currency string            `json:"currency"`
	Customer customer          `json:"customer"`
	Items    []lineItem        `json:"items"`
	Meta     map[string]string `json:"meta"`
}

func jsonRequest(body, contentType string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/payments", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

// asProblem asserts err is a *problem.Error and returns it.
func asProblem(t *testing.T, err error) *problem.Error {
	t.Helper()
	if err == nil {
		t.Fatal("got nil error, want a problem")
	}
	var pe *problem.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *problem.Error", err, err)
	}
	if got := problem.From(err); got != pe {
		t.Fatalf("problem.From returned a different error than the one in the chain")
	}
	return pe
}

func TestDecodeJSONAcceptsJSONContentTypes(t *testing.T) {
	for _, ct := range []string{
		"application/json",
		"application/json; charset=utf-8",
		"Application/JSON",
		"application/merge-patch+json",
		"application/vnd.billfn.v1+json",
	} {
		var p payment
		if err := DecodeJSON(jsonRequest(`{"amount":1250,"currency":"USD"}`, ct), &p); err != nil {
			t.Fatalf("Content-Type %q: %v", ct, err)
		}
		if p.Amount != 1250 || p.Currency != "USD" {
			t.Fatalf("Content-Type %q decoded %+v", ct, p)
		}
	}
}

func TestDecodeJSONRejectsOtherContentTypesWith415(t *testing.T) {
	for _, ct := range []string{
		"",
		"text/plain",
		"application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x",
		"application/jsonx",
		"json",
		"application/json; charset", // malformed parameter
		"application/xml",
	} {
		var p payment
		err := DecodeJSON(jsonRequest(`{"amount":1}`, ct), &p)
		pe := asProblem(t, err)
		if pe.Code != problem.UnsupportedMedia || problem.Common.Status(pe) != http.StatusUnsupportedMediaType {
			t.Fatalf("Content-Type %q: got %s/%d, want unsupported_media_type/415", ct, pe.Code, problem.Common.Status(pe))
		}
		if p.Amount != 0 {
			t.Fatalf("Content-Type %q: the body was decoded anyway", ct)
		}
	}
}

func TestDecodeJSONTurnsClientMistakesIntoProblems(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		code    problem.Code
		status  int
		pointer string // errors[0].pointer, when the problem names a field
	}{
		{"empty body", ``, problem.BadRequest, 400, ""},
		{"whitespace only", "  \n\t", problem.BadRequest, 400, ""},
		{"malformed", `{"amount":1,}`, problem.BadRequest, 400, ""},
		{"truncated", `{"amount":`, problem.BadRequest, 400, ""},
		{"bare word", `amount`, problem.BadRequest, 400, ""},
		{"not an object", `[1,2]`, problem.BadRequest, 400, ""},
		{"a string", `"hello"`, problem.BadRequest, 400, ""},
		{"two values", `{"amount":1}{"amount":2}`, problem.BadRequest, 400, ""},
		{"trailing garbage", `{"amount":1} x`, problem.BadRequest, 400, ""},
		{"trailing partial value", `{"amount":1} {"amount"`, problem.BadRequest, 400, ""},
		{"trailing number", `{"amount":1} 2`, problem.BadRequest, 400, ""},
		{"unknown field", `{"amount":1,"amuont":2}`, problem.BadRequest, 400, "#/amuont"},
		{"unknown field with a slash", `{"a/b~c":1}`, problem.BadRequest, 400, "#/a~1b~0c"},
		{"unknown field with a quote", `{"a\"b":1}`, problem.BadRequest, 400, `#/a"b`},
		{"string for integer", `{"amount":"12"}`, problem.ValidationFailed, 422, "#/amount"},
		{"fraction for integer", `{"amount":12.5}`, problem.ValidationFailed, 422, "#/amount"},
		{"integer overflow", `{"amount":99999999999999999999}`, problem.ValidationFailed, 422, "#/amount"},
		{"number for string", `{"currency":840}`, problem.ValidationFailed, 422, "#/currency"},
		{"nested wrong type", `{"customer":{"address":{"zip":"10001"}}}`, problem.ValidationFailed, 422, "#/customer/address/zip"},
		{"object for array", `{"items":{}}`, problem.ValidationFailed, 422, "#/items"},
		{"array for object", `{"customer":[]}`, problem.ValidationFailed, 422, "#/customer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p payment
			err := DecodeJSON(jsonRequest(tt.body, "application/json"), &p)
			pe := asProblem(t, err)
			if pe.Code != tt.code || problem.Common.Status(pe) != tt.status {
				t.Fatalf("body %q: got %s/%d (%q), want %s/%d", tt.body, pe.Code, problem.Common.Status(pe), pe.Detail, tt.code, tt.status)
			}
			if tt.pointer == "" {
				if len(pe.Errors) != 0 {
					t.Fatalf("body %q: unexpected field errors %+v", tt.body, pe.Errors)
				}
				return
			}
			if len(pe.Errors) != 1 || pe.Errors[0].Pointer != tt.pointer {
				t.Fatalf("body %q: errors %+v, want one with pointer %q", tt.body, pe.Errors, tt.pointer)
			}
		})
	}
}

func TestDecodeJSONNamesTheExpectedTypeOfAWrongMember(t *testing.T) {
	var p payment
	pe := asProblem(t, DecodeJSON(jsonRequest(`{"amount":"12"}`, "application/json"), &p))
	if want := "must be an integer, not string"; pe.Errors[0].Detail != want {
		t.Fatalf("detail = %q, want %q", pe.Errors[0].Detail, want)
	}
	if pe.Detail != "amount: must be an integer, not string" {
		t.Fatalf("problem detail = %q", pe.Detail)
	}
}

func TestDecodeJSONAcceptsOneValueWithTrailingWhitespace(t *testing.T) {
	body := `{"amount":1,"currency":"EUR","customer":{"name":"Ada","address":{"zip":10001,"city":"NYC"}},` +
		`"items":[{"qty":2},{"qty":3}],"meta":{"order":"A-1"}}` + " \n\t "
	var p payment
	if err := DecodeJSON(jsonRequest(body, "application/json"), &p); err != nil {
		t.Fatalf("DecodeJSON: %v", err)
	}
	if p.Amount != 1 || p.Currency != "EUR" || p.Customer.Address.Zip != 10001 || p.Customer.Address.City != "NYC" ||
		len(p.Items) != 2 || p.Items[1].Qty != 3 || p.Meta["order"] != "A-1" {
		t.Fatalf("decoded %+v", p)
	}
}

func TestDecodeJSONReportsAnOversizeBodyAs413(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		limit int64
	}{
		{"limit inside the value", `{"currency":"` + strings.Repeat("a", 4096) + `"}`, 64},
		{"limit in the trailing whitespace", `{"amount":1}` + strings.Repeat(" ", 4096), 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			r := jsonRequest(tt.body, "application/json")
			r.Body = http.MaxBytesReader(rec, r.Body, tt.limit)
			var p payment
			pe := asProblem(t, DecodeJSON(r, &p))
			if pe.Code != problem.PayloadTooLarge || problem.Common.Status(pe) != http.StatusRequestEntityTooLarge {
				t.Fatalf("got %s/%d (%q), want payload_too_large/413", pe.Code, problem.Common.Status(pe), pe.Detail)
			}
			if !strings.Contains(pe.Detail, "64 bytes") {
				t.Fatalf("detail %q does not state the limit", pe.Detail)
			}
		})
	}
}

func TestDecodeJSONWithinTheLimitSucceeds(t *testing.T) {
	rec := httptest.NewRecorder()
	body := `{"amount":7}`
	r := jsonRequest(body, "application/json")
	r.Body = http.MaxBytesReader(rec, r.Body, int64(len(body)))
	var p payment
	if err := DecodeJSON(r, &p); err != nil || p.Amount != 7 {
		t.Fatalf("DecodeJSON at exactly the limit = %+v, %v", p, err)
	}
}

// strictCode is a type with its own UnmarshalJSON, as money types have.
type strictCode string

func (c *strictCode) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if len(s) != 3 {
		return fmt.Errorf("currency %q is not three letters", s)
	}
	*c = strictCode(s)
	return nil
}

// problemCode rejects values with its own problem.
type problemCode string

func (c *problemCode) UnmarshalJSON(b []byte) error {
	return problem.Invalid(problem.Field("code", "is not a known code"))
}

func TestDecodeJSONReportsCustomUnmarshalerErrors(t *testing.T) {
	var a struct {
		Currency strictCode `json:"currency"`
	}
	pe := asProblem(t, Unmarshal([]byte(`{"currency":"DOLLARS"}`), &a))
	if pe.Code != problem.BadRequest || !strings.Contains(pe.Detail, "not three letters") {
		t.Fatalf("custom UnmarshalJSON error became %s %q, want bad_request with its message", pe.Code, pe.Detail)
	}

	var b struct {
		Code problemCode `json:"code"`
	}
	pe = asProblem(t, Unmarshal([]byte(`{"code":"x"}`), &b))
	if pe.Code != problem.ValidationFailed || len(pe.Errors) != 1 || pe.Errors[0].Pointer != "#/code" {
		t.Fatalf("a problem from UnmarshalJSON became %s %+v, want it passed through", pe.Code, pe.Errors)
	}
}

func TestUnmarshalAppliesTheSameRules(t *testing.T) {
	var p payment
	if err := Unmarshal([]byte(`{"amount":5}`), &p); err != nil || p.Amount != 5 {
		t.Fatalf("Unmarshal valid = %+v, %v", p, err)
	}
	pe := asProblem(t, Unmarshal([]byte(`{"amount":5,"extra":1}`), &p))
	if pe.Code != problem.BadRequest || pe.Errors[0].Pointer != "#/extra" {
		t.Fatalf("Unmarshal with an unknown field = %s %+v", pe.Code, pe.Errors)
	}
	pe = asProblem(t, Unmarshal([]byte(`{"amount":5} {}`), &p))
	if pe.Code != problem.BadRequest {
		t.Fatalf("Unmarshal with two values = %s", pe.Code)
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusCreated, map[string]any{"id": "inv_1", "amount": 100})
	if rec.Code != http.StatusCreated || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("WriteJSON: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if got := rec.Body.String(); got != `{"amount":100,"id":"inv_1"}` {
		t.Fatalf("WriteJSON body = %s", got)
	}
}

func TestWriteJSONAnswers500WhenTheValueCannotBeEncoded(t *testing.T) {
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusOK, map[string]any{"ch": make(chan int)})
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Content-Type") != problem.ContentType {
		t.Fatalf("unencodable value served as %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["code"] != "internal" {
		t.Fatalf("body %s, want an internal problem", rec.Body.String())
	}
	if !strings.Contains(logs.String(), "unsupported type: chan int") {
		t.Fatalf("the encoding failure was not logged: %q", logs.String())
	}
}

func TestListEnvelope(t *testing.T) {
	tests := []struct {
		list List[int]
		want string
	}{
		{List[int]{Data: []int{1, 2}, NextCursor: "abc", HasMore: true}, `{"data":[1,2],"next_cursor":"abc","has_more":true}`},
		{List[int]{Data: []int{}}, `{"data":[],"has_more":false}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.list)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Fatalf("Marshal(%+v) = %s, want %s", tt.list, b, tt.want)
		}
	}
}

func TestPageKeepsLimitRowsAndPointsPastTheLastOneShown(t *testing.T) {
	cursor := func(id string) any { return position{ID: id} }
	full := Page([]string{"c", "b", "a"}, 2, cursor) // the query asked for 3: there is more
	if len(full.Data) != 2 || full.Data[1] != "b" || !full.HasMore {
		t.Fatalf("page %+v", full)
	}
	r := requestWithQuery(url.Values{"cursor": {full.NextCursor}})
	var pos position
	if ok, err := DecodeCursor(r, &pos); !ok || err != nil || pos.ID != "b" {
		t.Fatalf("the cursor gives %+v, %v, %v; want the last row shown", pos, ok, err)
	}
	last := Page([]string{"a"}, 2, cursor)
	if len(last.Data) != 1 || last.HasMore || last.NextCursor != "" {
		t.Fatalf("last page %+v", last)
	}
	if b, _ := json.Marshal(Page[string](nil, 2, cursor)); string(b) != `{"data":[],"has_more":false}` {
		t.Fatalf("empty page %s", b)
	}
}

type position struct {
	CreatedAt int64  `json:"t"`
	ID        string `json:"id"`
}

func requestWithQuery(q url.Values) *http.Request {
	return httptest.NewRequest(http.MethodGet, "/v1/invoices?"+q.Encode(), nil)
}

func TestCursorRoundTripsThroughTheQuery(t *testing.T) {
	for _, want := range []position{
		{CreatedAt: 1717171717123456, ID: "inv_0001"},
		{CreatedAt: -1, ID: "ünïcode/+?&="},
		{},
	} {
		c := EncodeCursor(want)
		if strings.ContainsAny(c, "+/=") {
			t.Fatalf("cursor %q is not URL-safe unpadded base64", c)
		}
		var got position
		ok, err := DecodeCursor(requestWithQuery(url.Values{"cursor": {c}}), &got)
		if err != nil || !ok {
			t.Fatalf("DecodeCursor(%q) = %v, %v", c, ok, err)
		}
		if got != want {
			t.Fatalf("cursor round trip = %+v, want %+v", got, want)
		}
	}
}

func TestAbsentCursorLeavesThePositionAlone(t *testing.T) {
	pos := position{ID: "untouched"}
	for _, path := range []string{"/v1/invoices", "/v1/invoices?cursor=", "/v1/invoices?limit=5"} {
		ok, err := DecodeCursor(httptest.NewRequest(http.MethodGet, path, nil), &pos)
		if ok || err != nil || pos.ID != "untouched" {
			t.Fatalf("%s: DecodeCursor = %v, %v, pos %+v", path, ok, err, pos)
		}
	}
}

func TestGarbageCursorIsAValidationProblem(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	for _, c := range []string{
		"!!!not base64!!!",
		b64([]byte("not json")),
		b64([]byte(`{"t":1,"id":"x","admin":true}`)), // a member the position lacks
		b64([]byte(`{"t":"yesterday"}`)),
		b64([]byte(`[1,2]`)),
		EncodeCursor(position{ID: "x"}) + "=", // padding is not ours
	} {
		var pos position
		ok, err := DecodeCursor(requestWithQuery(url.Values{"cursor": {c}}), &pos)
		if ok {
			t.Fatalf("cursor %q was accepted", c)
		}
		pe := asProblem(t, err)
		if pe.Code != problem.ValidationFailed || problem.Common.Status(pe) != 422 {
			t.Fatalf("cursor %q: %s/%d, want validation_failed/422", c, pe.Code, problem.Common.Status(pe))
		}
		if len(pe.Errors) != 1 || pe.Errors[0].Parameter != "cursor" || pe.Errors[0].Pointer != "" {
			t.Fatalf("cursor %q: errors %+v, want the cursor parameter named", c, pe.Errors)
		}
	}
}

func TestLimit(t *testing.T) {
	tests := []struct {
		query string
		want  int
	}{
		{"", 20},
		{"limit=", 20},
		{"limit=1", 1},
		{"limit=50", 50},
		{"limit=100", 100},
		{"limit=007", 7},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/v1/invoices?"+tt.query, nil)
		got, err := Limit(r, 20, 100)
		if err != nil || got != tt.want {
			t.Fatalf("Limit(%q) = %d, %v; want %d", tt.query, got, err, tt.want)
		}
	}
}

func TestLimitRejectsOutOfRangeOrNonIntegers(t *testing.T) {
	for _, v := range []string{"0", "-1", "abc", "101", "1.5", " 5", "1e2", "99999999999999999999"} {
		got, err := Limit(requestWithQuery(url.Values{"limit": {v}}), 20, 100)
		pe := asProblem(t, err)
		if got != 0 {
			t.Fatalf("Limit(%q) = %d alongside an error", v, got)
		}
		if pe.Code != problem.ValidationFailed || len(pe.Errors) != 1 || pe.Errors[0].Parameter != "limit" {
			t.Fatalf("Limit(%q): %s %+v, want validation_failed naming limit", v, pe.Code, pe.Errors)
		}
		if !strings.Contains(pe.Errors[0].Detail, "1 to 100") {
			t.Fatalf("Limit(%q): detail %q does not give the range", v, pe.Errors[0].Detail)
		}
	}
}

func TestEmptyListEncodesAnEmptyArray(t *testing.T) {
	b, err := json.Marshal(List[int]{})
	if err != nil || string(b) != `{"data":[],"has_more":false}` {
		t.Fatalf("got %s, %v", b, err)
	}
	b, _ = json.Marshal(List[int]{Data: []int{1}, NextCursor: "c", HasMore: true})
	if string(b) != `{"data":[1],"next_cursor":"c","has_more":true}` {
		t.Fatalf("got %s", b)
	}
}

// A JSON string holding U+0000 is refused at decoding: Postgres text and
// jsonb cannot store it, and the functions answered 500 when it reached
// the database (found by the stack's attack test). An escaped backslash
// before "u0000" is ordinary text.
func TestDecodeRefusesNULInStrings(t *testing.T) {
	for _, body := range []string{`{"a":"x\u0000y"}`, `{"a":{"b":["\u0000"]}}`, `{"a\u0000":1}`, `{"a":"\\\u0000"}`} {
		var v any
		err := DecodeJSONBody(iotest.OneByteReader(strings.NewReader(body)), &v)
		var pe *problem.Error
		if !errors.As(err, &pe) || pe.Code != problem.BadRequest {
			t.Errorf("%s: %v", body, err)
		}
		if !HasNULEscape([]byte(body)) {
			t.Errorf("HasNULEscape(%s) = false", body)
		}
	}
	for _, body := range []string{`{"a":"\\u0000"}`, `{"a":"\u0001 u0000"}`, `{"a":"\\\\u0000"}`} {
		var v map[string]any
		if err := DecodeJSONBody(iotest.OneByteReader(strings.NewReader(body)), &v); err != nil {
			t.Errorf("%s: %v", body, err)
		}
		if HasNULEscape([]byte(body)) {
			t.Errorf("HasNULEscape(%s) = true", body)
		}
	}
}
