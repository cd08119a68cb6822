package problem

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// captureLog sends slog's default logger to a buffer for the test.
func captureLog(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })
	return &buf
}

type response struct {
	rec  *httptest.ResponseRecorder
	body map[string]any
	raw  string
	log  string
}

// write serves err for "GET path" with the given request id and decodes the
// problem document.
func write(t *testing.T, path, requestID string, err error) response {
	t.Helper()
	logs := captureLog(t)
	r := httptest.NewRequest(http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	if requestID != "" {
		rec.Header().Set("X-Request-Id", requestID)
	}
	Write(rec, r, err)
	raw := rec.Body.String()
	var body map[string]any
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", raw, err)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", got)
	}
	return response{rec: rec, body: body, raw: raw, log: logs.String()}
}

func TestWriteServesAProblemDocument(t *testing.T) {
	res := write(t, "/v1/invoices/inv_42", "req-123", New(NotFound, "invoice %s does not exist", "inv_42"))
	if res.rec.Code != http.StatusNotFound {
		t.Fatalf("status = %d, want 404", res.rec.Code)
	}
	want := map[string]any{
		"type":       "https://billfn.dev/problems/not_found",
		"title":      "Not found",
		"status":     float64(404),
		"detail":     "invoice inv_42 does not exist",
		"instance":   "/v1/invoices/inv_42",
		"code":       "not_found",
		"request_id": "req-123",
	}
	if len(res.body) != len(want) {
		t.Fatalf("body has members %v, want exactly %v", res.body, want)
	}
	for k, v := range want {
		if res.body[k] != v {
			t.Fatalf("body[%q] = %#v, want %#v (body %s)", k, res.body[k], v, res.raw)
		}
	}
	if got := res.rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Fatalf("Cache-Control = %q, want no-store", got)
	}
	if got := res.rec.Header().Get("WWW-Authenticate"); got != "" {
		t.Fatalf("a 404 must not carry WWW-Authenticate, got %q", got)
	}
	if res.log != "" {
		t.Fatalf("a 4xx must not be logged as a failure, got %q", res.log)
	}
}

func TestWriteOmitsRequestIDWhenTheResponseHasNone(t *testing.T) {
	res := write(t, "/v1/x", "", New(Conflict, "nope"))
	if _, ok := res.body["request_id"]; ok {
		t.Fatalf("body %s has a request_id though none was set", res.raw)
	}
}

func TestWriteTakesStatusAndTypeFromTheCodeTable(t *testing.T) {
	want := map[Code]int{
		BadRequest:           400,
		ValidationFailed:     422,
		UnsupportedMedia:     415,
		PayloadTooLarge:      413,
		Unauthorized:         401,
		Forbidden:            403,
		NotFound:             404,
		MethodNotAllowed:     405,
		Conflict:             409,
		IdempotencyKeyReused: 422,
		IdempotencyInFlight:  409,
		IdempotencyRequired:  400,
		RateLimited:          429,
		Internal:             500,
		Unavailable:          503,
		Timeout:              504,
	}
	for code, status := range want {
		if Common[code].Status != status {
			t.Fatalf("Common[%s] = %d, want %d", code, Common[code].Status, status)
		}
		if got := Statuses(nil).Status(New(code, "d")); got != status {
			t.Fatalf("Status(%s) = %d, want %d", code, got, status)
		}
		res := write(t, "/p", "", New(code, "d"))
		if res.rec.Code != status || res.body["status"] != float64(status) {
			t.Fatalf("Write(%s): status %d, body status %v; want %d", code, res.rec.Code, res.body["status"], status)
		}
		if res.body["type"] != BaseURI+string(code) || res.body["code"] != string(code) {
			t.Fatalf("Write(%s): type %v, code %v", code, res.body["type"], res.body["code"])
		}
	}
}

func TestUnknownCodeIsA500TitledWithItsName(t *testing.T) {
	code := Code("never_registered_code")
	if got := Statuses(nil).Status(New(code, "d")); got != 500 {
		t.Fatalf("unregistered code status = %d, want 500", got)
	}
	res := write(t, "/p", "", New(code, "something"))
	if res.rec.Code != 500 || res.body["title"] != "never_registered_code" || res.body["code"] != "never_registered_code" {
		t.Fatalf("unregistered code served as %d %s", res.rec.Code, res.raw)
	}
}

func TestWriteListsInvalidFields(t *testing.T) {
	err := Invalid(
		Field("amount", "must be positive"),
		Param("limit", "must be an integer from 1 to 100"),
		Header("Idempotency-Key", "required"),
	)
	res := write(t, "/v1/payments", "r1", err)
	if res.rec.Code != http.StatusUnprocessableEntity || res.body["code"] != "validation_failed" {
		t.Fatalf("Invalid served as %d %s", res.rec.Code, res.raw)
	}
	if res.body["detail"] != "the request has invalid fields" {
		t.Fatalf("detail = %v", res.body["detail"])
	}
	got, ok := res.body["errors"].([]any)
	if !ok || len(got) != 3 {
		t.Fatalf("errors = %#v, want three entries", res.body["errors"])
	}
	want := []map[string]any{
		{"pointer": "#/amount", "detail": "must be positive"},
		{"parameter": "limit", "detail": "must be an integer from 1 to 100"},
		{"header": "Idempotency-Key", "detail": "required"},
	}
	for i, w := range want {
		e, _ := got[i].(map[string]any)
		if len(e) != len(w) {
			t.Fatalf("errors[%d] = %v, want exactly %v", i, e, w)
		}
		for k, v := range w {
			if e[k] != v {
				t.Fatalf("errors[%d][%q] = %v, want %v", i, k, e[k], v)
			}
		}
	}
}

func TestInvalidDetailNamesASingleField(t *testing.T) {
	tests := []struct {
		f    FieldError
		want string
	}{
		{Field("line_items/0/quantity", "must be positive"), "line_items/0/quantity: must be positive"},
		{Param("cursor", "is not a cursor"), "cursor: is not a cursor"},
		{Header("Idempotency-Key", "required"), "Idempotency-Key: required"},
		// A hand-built pointer without the "#/" prefix must not panic.
		{FieldError{Pointer: "x", Detail: "bad"}, "x: bad"},
		{FieldError{Pointer: "/amount", Detail: "bad"}, "/amount: bad"},
	}
	for _, tt := range tests {
		e := Invalid(tt.f)
		if e.Code != ValidationFailed || e.Detail != tt.want {
			t.Fatalf("Invalid(%+v) = %s %q, want validation_failed %q", tt.f, e.Code, e.Detail, tt.want)
		}
		if len(e.Errors) != 1 || e.Errors[0] != tt.f {
			t.Fatalf("Invalid(%+v).Errors = %+v", tt.f, e.Errors)
		}
	}
}

func TestFieldHelpersSetExactlyOneLocation(t *testing.T) {
	if f := Field("customer/address/zip", "d"); f != (FieldError{Pointer: "#/customer/address/zip", Detail: "d"}) {
		t.Fatalf("Field = %+v", f)
	}
	if f := Param("limit", "d"); f != (FieldError{Parameter: "limit", Detail: "d"}) {
		t.Fatalf("Param = %+v", f)
	}
	if f := Header("If-Match", "d"); f != (FieldError{Header: "If-Match", Detail: "d"}) {
		t.Fatalf("Header = %+v", f)
	}
}

func TestWriteSetsRetryAfterInWholeSecondsRoundedUp(t *testing.T) {
	tests := []struct {
		after time.Duration
		want  string
	}{
		{0, ""},
		{-time.Second, ""},
		{time.Nanosecond, "1"},
		{100 * time.Millisecond, "1"},
		{time.Second, "1"},
		{1200 * time.Millisecond, "2"},
		{1500 * time.Millisecond, "2"},
		{3 * time.Second, "3"},
		{90 * time.Second, "90"},
	}
	for _, tt := range tests {
		res := write(t, "/p", "", &Error{Code: RateLimited, Detail: "slow down", RetryAfter: tt.after})
		if got := res.rec.Header().Get("Retry-After"); got != tt.want {
			t.Fatalf("RetryAfter %v: Retry-After = %q, want %q", tt.after, got, tt.want)
		}
		if res.rec.Code != http.StatusTooManyRequests {
			t.Fatalf("RetryAfter %v: status %d, want 429", tt.after, res.rec.Code)
		}
	}
}

func TestWriteChallengesA401(t *testing.T) {
	res := write(t, "/p", "", New(Unauthorized, "token required"))
	if res.rec.Code != 401 {
		t.Fatalf("status = %d, want 401", res.rec.Code)
	}
	if got := res.rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="billfn"` {
		t.Fatalf("WWW-Authenticate = %q, want a Bearer challenge", got)
	}
}

func TestWriteKeepsAnExistingChallenge(t *testing.T) {
	captureLog(t)
	rec := httptest.NewRecorder()
	rec.Header().Set("WWW-Authenticate", `Bearer realm="billfn", error="invalid_token"`)
	Write(rec, httptest.NewRequest(http.MethodGet, "/p", nil), New(Unauthorized, "bad token"))
	if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="billfn", error="invalid_token"` {
		t.Fatalf("WWW-Authenticate = %q, want the handler's challenge kept", got)
	}
}

func TestWriteInlinesExtensionMembers(t *testing.T) {
	err := New(Conflict, "insufficient balance").With("balance", 100).With("currency", "USD").
		With("limits", map[string]int{"daily": 5})
	res := write(t, "/v1/payments", "", err)
	if res.body["balance"] != float64(100) || res.body["currency"] != "USD" {
		t.Fatalf("extension members missing: %s", res.raw)
	}
	limits, _ := res.body["limits"].(map[string]any)
	if limits["daily"] != float64(5) {
		t.Fatalf("nested extension member missing: %s", res.raw)
	}
	if res.body["code"] != "conflict" || res.body["status"] != float64(409) {
		t.Fatalf("standard members damaged by extensions: %s", res.raw)
	}
	if _, ok := res.body["Extra"]; ok {
		t.Fatalf("Extra leaked as a member: %s", res.raw)
	}
}

func TestWithCopiesAndLeavesTheOriginalAlone(t *testing.T) {
	base := New(Conflict, "x")
	one := base.With("a", 1)
	two := one.With("b", 2)
	if base.Extra != nil {
		t.Fatalf("With changed the receiver: %v", base.Extra)
	}
	if len(one.Extra) != 1 || one.Extra["a"] != 1 {
		t.Fatalf("one.Extra = %v, want only a", one.Extra)
	}
	if len(two.Extra) != 2 || two.Extra["a"] != 1 || two.Extra["b"] != 2 {
		t.Fatalf("two.Extra = %v, want a and b", two.Extra)
	}
	if two.Code != Conflict || two.Detail != "x" {
		t.Fatalf("With lost code or detail: %+v", two)
	}
}

func TestDocumentMarshalsExtensionsInSortedOrder(t *testing.T) {
	d := Document{Type: "t", Title: "T", Status: 409, Code: "c", Extra: map[string]any{"zeta": 1, "alpha": "a"}}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"t","title":"T","status":409,"code":"c","alpha":"a","zeta":1}`
	if string(b) != want {
		t.Fatalf("Marshal = %s, want %s", b, want)
	}
	d.Extra = nil
	b, err = json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"t","title":"T","status":409,"code":"c"}`; string(b) != want {
		t.Fatalf("Marshal without extensions = %s, want %s", b, want)
	}
}

func TestWriteFallsBackToA500WhenAnExtensionCannotBeEncoded(t *testing.T) {
	res := write(t, "/p", "", New(Conflict, "x").With("callback", make(chan int)))
	if res.rec.Code != 500 || res.body["code"] != "internal" || res.body["status"] != float64(500) {
		t.Fatalf("unencodable extension served as %d %s, want a 500 internal", res.rec.Code, res.raw)
	}
}

// RFC 9457 (section 3.2): extension members must not be named like the
// document's own members. A duplicate "status" key once went out: a
// client saw two statuses and kept whichever its parser kept last. Such
// an extension is a programming error: the document is refused (a 500
// internal, as for an extension that cannot be encoded) and logged with
// the member's name, so no document has two members of one name. A Go
// client matches names in any case, so "Status" is refused too.
func TestAnExtensionNamedLikeADocumentMemberIsRefused(t *testing.T) {
	for _, name := range []string{"type", "title", "status", "detail", "instance", "code", "request_id", "errors", "Status"} {
		d := Document{Type: "t", Title: "T", Status: 409, Code: "c", Extra: map[string]any{name: "x"}}
		if b, err := json.Marshal(d); err == nil || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("extension %q: Marshal = %s, %v; want an error naming it", name, b, err)
		}
		res := write(t, "/p", "", New(Conflict, "x").With(name, "x"))
		if res.rec.Code != 500 || res.body["code"] != "internal" || strings.Count(strings.ToLower(res.raw), `"`+strings.ToLower(name)+`"`) > 1 {
			t.Errorf("extension %q served as %d %s, want a 500 internal with one such member", name, res.rec.Code, res.raw)
		}
		if !strings.Contains(res.log, name) || !strings.Contains(res.log, `"code":"conflict"`) {
			t.Errorf("extension %q: the refusal was not logged with the member and the code: %s", name, res.log)
		}
	}
	// A name that only contains a member's is an extension like any other.
	if res := write(t, "/p", "", New(Conflict, "x").With("account_status", "frozen")); res.rec.Code != 409 || res.body["account_status"] != "frozen" {
		t.Errorf("account_status: %d %s", res.rec.Code, res.raw)
	}
}

func TestWriteHidesAPlainErrorBehindA500(t *testing.T) {
	cause := errors.New("pq: password authentication failed for user billfn_rw")
	res := write(t, "/v1/invoices", "req-9", fmt.Errorf("load invoice: %w", cause))
	if res.rec.Code != 500 || res.body["code"] != "internal" || res.body["title"] != "Internal error" {
		t.Fatalf("plain error served as %d %s", res.rec.Code, res.raw)
	}
	for _, secret := range []string{"password", "billfn_rw", "pq:", "load invoice"} {
		if strings.Contains(res.raw, secret) {
			t.Fatalf("body %s leaks %q from the cause", res.raw, secret)
		}
	}
	// ...but the operator sees it, with the request id to correlate.
	for _, want := range []string{"password authentication failed", "req-9", `"code":"internal"`, "/v1/invoices"} {
		if !strings.Contains(res.log, want) {
			t.Fatalf("log %q does not contain %q", res.log, want)
		}
	}
}

func TestWriteNeverShowsTheCauseOfAClientError(t *testing.T) {
	err := &Error{Code: Conflict, Detail: "invoice is not a draft", Err: errors.New("row version 17 != 18")}
	res := write(t, "/p", "", err)
	if res.rec.Code != 409 || strings.Contains(res.raw, "row version") {
		t.Fatalf("served %d %s; want 409 without the cause", res.rec.Code, res.raw)
	}
}

func TestFromMapsContextErrors(t *testing.T) {
	tests := []struct {
		err    error
		code   Code
		status int
	}{
		{context.DeadlineExceeded, Timeout, 504},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), Timeout, 504},
		{context.Canceled, Unavailable, 503},
		{fmt.Errorf("query: %w", context.Canceled), Unavailable, 503},
	}
	for _, tt := range tests {
		pe := From(tt.err)
		if pe.Code != tt.code || Common.Status(pe) != tt.status {
			t.Fatalf("From(%v) = %s/%d, want %s/%d", tt.err, pe.Code, Common.Status(pe), tt.code, tt.status)
		}
		if !errors.Is(pe, tt.err) {
			t.Fatalf("From(%v) dropped the cause", tt.err)
		}
		res := write(t, "/p", "", tt.err)
		if res.rec.Code != tt.status || res.body["code"] != string(tt.code) {
			t.Fatalf("Write(%v) served %d %s", tt.err, res.rec.Code, res.raw)
		}
	}
}

func TestFromMapsAnOversizeBodyTo413(t *testing.T) {
	rec := httptest.NewRecorder()
	body := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), 10)
	_, readErr := io.ReadAll(body)
	var mbe *http.MaxBytesError
	if !errors.As(readErr, &mbe) {
		t.Fatalf("setup: ReadAll error = %v, want *http.MaxBytesError", readErr)
	}
	pe := From(fmt.Errorf("read body: %w", readErr))
	if pe.Code != PayloadTooLarge || Common.Status(pe) != 413 || !strings.Contains(pe.Detail, "10 bytes") {
		t.Fatalf("From(MaxBytesError) = %s/%d %q", pe.Code, Common.Status(pe), pe.Detail)
	}
	res := write(t, "/p", "", readErr)
	if res.rec.Code != 413 || res.body["code"] != "payload_too_large" {
		t.Fatalf("Write(MaxBytesError) served %d %s", res.rec.Code, res.raw)
	}
}

func TestFromReturnsAWrappedProblemAsIs(t *testing.T) {
	pe := New(NotFound, "no such invoice")
	if got := From(fmt.Errorf("handler: %w", pe)); got != pe {
		t.Fatalf("From(wrapped *Error) = %p, want the same %p", got, pe)
	}
	if got := From(pe); got != pe {
		t.Fatalf("From(*Error) = %p, want %p", got, pe)
	}
}

func TestErrorStringAndUnwrap(t *testing.T) {
	cause := errors.New("disk full")
	e := &Error{Code: Unavailable, Detail: "cannot store", Err: cause}
	if e.Error() != "unavailable: cannot store: disk full" {
		t.Fatalf("Error() = %q", e.Error())
	}
	if !errors.Is(e, cause) {
		t.Fatal("errors.Is does not find the cause")
	}
	if got := New(NotFound, "gone").Error(); got != "not_found: gone" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestNewFormatsOnlyWithArguments(t *testing.T) {
	if got := New(BadRequest, "100% sure").Detail; got != "100% sure" {
		t.Fatalf("Detail = %q, want the format left alone without arguments", got)
	}
	if got := New(BadRequest, "limit %d exceeded", 5).Detail; got != "limit 5 exceeded" {
		t.Fatalf("Detail = %q", got)
	}
}

func mustPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s did not panic", what)
		}
	}()
	fn()
}

func TestValidatorCollectsEveryFailedCheck(t *testing.T) {
	var v Validator
	if err := v.Err(); err != nil {
		t.Fatalf("empty Validator Err() = %v, want nil", err)
	}
	v.Check(true, "currency", "must be an ISO 4217 code")
	if err := v.Err(); err != nil {
		t.Fatalf("Err() after a passing check = %v, want nil", err)
	}
	v.Check(false, "amount", "must be positive")
	v.Check(false, "line_items/0/quantity", "must be at least 1")
	v.Add(Param("limit", "too big"))
	err := v.Err()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("Err() = %v, want a *Error", err)
	}
	want := []FieldError{
		Field("amount", "must be positive"),
		Field("line_items/0/quantity", "must be at least 1"),
		Param("limit", "too big"),
	}
	if pe.Code != ValidationFailed || len(pe.Errors) != len(want) {
		t.Fatalf("Err() = %s with %+v", pe.Code, pe.Errors)
	}
	for i := range want {
		if pe.Errors[i] != want[i] {
			t.Fatalf("Errors[%d] = %+v, want %+v", i, pe.Errors[i], want[i])
		}
	}
}

func TestDocWithoutARequestHasNoInstance(t *testing.T) {
	d, pe := Doc(nil, "rid", New(Forbidden, "no"))
	if d.Instance != "" || d.RequestID != "rid" || d.Status != 403 || pe.Code != Forbidden {
		t.Fatalf("Doc(nil) = %+v", d)
	}
	captureLog(t)
	rec := httptest.NewRecorder()
	Write(rec, nil, errors.New("boom")) // must not dereference the nil request
	if rec.Code != 500 {
		t.Fatalf("Write(nil request) status = %d, want 500", rec.Code)
	}
}
