// Package problem turns errors into RFC 9457 problem documents
// (application/problem+json).
//
// Every error a client can see has a stable Code. One table maps each code to
// an HTTP status and a title; the document's "type" is BaseURI + code, so
// clients can switch on either "type" or "code". Functions register their own
// codes (insufficient_funds, invoice_not_draft, ...) with Register at init.
//
// Anything that is not a *Error is an internal error: it is logged with the
// request id and the client sees a 500 with no internals.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BaseURI prefixes every problem type.
const BaseURI = "https://billfn.dev/problems/"

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Code is a stable, machine-readable error code.
type Code string

// Codes shared by every function.
const (
	BadRequest           Code = "bad_request"            // malformed JSON, bad query syntax
	ValidationFailed     Code = "validation_failed"      // well-formed but invalid fields
	UnsupportedMedia     Code = "unsupported_media_type" // wrong Content-Type
	PayloadTooLarge      Code = "payload_too_large"      // body over the limit
	Unauthorized         Code = "unauthorized"           // no or bad credentials
	Forbidden            Code = "forbidden"              // authenticated, not allowed
	NotFound             Code = "not_found"              // no such resource (or not yours)
	MethodNotAllowed     Code = "method_not_allowed"     // route exists, method does not
	Conflict             Code = "conflict"               // state does not allow the operation
	IdempotencyKeyReused Code = "idempotency_key_reused" // same key, different request
	IdempotencyInFlight  Code = "idempotency_key_in_use" // same key, request still running
	IdempotencyRequired  Code = "idempotency_key_required"
	RateLimited          Code = "rate_limited"
	Internal             Code = "internal"
	Unavailable          Code = "unavailable" // a dependency is down; retry later
	Timeout              Code = "timeout"
	CardNumberRejected   Code = "card_number_rejected" // a card number in a request (see shared/pan)
)

type spec struct {
	status int
	title  string
}

var (
	mu       sync.RWMutex
	registry = map[Code]spec{
		BadRequest:           {http.StatusBadRequest, "Bad request"},
		ValidationFailed:     {http.StatusUnprocessableEntity, "Validation failed"},
		UnsupportedMedia:     {http.StatusUnsupportedMediaType, "Unsupported media type"},
		PayloadTooLarge:      {http.StatusRequestEntityTooLarge, "Payload too large"},
		Unauthorized:         {http.StatusUnauthorized, "Unauthorized"},
		Forbidden:            {http.StatusForbidden, "Forbidden"},
		NotFound:             {http.StatusNotFound, "Not found"},
		MethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
		Conflict:             {http.StatusConflict, "Conflict"},
		IdempotencyKeyReused: {http.StatusUnprocessableEntity, "Idempotency key reused with a different request"},
		IdempotencyInFlight:  {http.StatusConflict, "A request with this idempotency key is in progress"},
		IdempotencyRequired:  {http.StatusBadRequest, "Idempotency-Key header required"},
		RateLimited:          {http.StatusTooManyRequests, "Too many requests"},
		Internal:             {http.StatusInternalServerError, "Internal error"},
		Unavailable:          {http.StatusServiceUnavailable, "Service unavailable"},
		Timeout:              {http.StatusGatewayTimeout, "Timed out"},
		CardNumberRejected:   {http.StatusUnprocessableEntity, "Card numbers are not accepted"},
	}
)

// Register adds a code to the table. It panics on a duplicate with a
// different status, which is a programming error caught at start.
func Register(code Code, status int, title string) {
	mu.Lock()
	defer mu.Unlock()
	if s, ok := registry[code]; ok && (s.status != status || s.title != title) {
		panic(fmt.Sprintf("problem: code %q registered twice", code))
	}
	registry[code] = spec{status, title}
}

// Status returns the HTTP status of a code (500 for an unknown code).
func (c Code) Status() int { return lookup(c).status }

// Type returns the problem type URI of a code.
func (c Code) Type() string { return BaseURI + string(c) }

func lookup(c Code) spec {
	mu.RLock()
	s, ok := registry[c]
	mu.RUnlock()
	if !ok {
		return spec{http.StatusInternalServerError, string(c)}
	}
	return s
}

// Codes lists every registered code with its status, sorted, for docs and tests.
func Codes() map[Code]int {
	mu.RLock()
	defer mu.RUnlock()
	out := make(map[Code]int, len(registry))
	for c, s := range registry {
		out[c] = s.status
	}
	return out
}

// FieldError names one offending input. Exactly one of Pointer (a JSON
// pointer into the body, "#/amount"), Parameter (a query or path parameter)
// or Header is set.
type FieldError struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Header    string `json:"header,omitempty"`
	Detail    string `json:"detail"`
}

// Field is a FieldError for a body member; path segments are joined with "/",
// e.g. Field("line_items/0/quantity", "must be positive").
func Field(path, detail string) FieldError { return FieldError{Pointer: "#/" + path, Detail: detail} }

// Param is a FieldError for a query or path parameter.
func Param(name, detail string) FieldError { return FieldError{Parameter: name, Detail: detail} }

// Header is a FieldError for a request header.
func Header(name, detail string) FieldError { return FieldError{Header: name, Detail: detail} }

// Error is an error a client may see.
type Error struct {
	Code       Code
	Detail     string
	Errors     []FieldError
	Extra      map[string]any // extension members, e.g. {"balance": 100}
	RetryAfter time.Duration  // sets Retry-After (whole seconds, rounded up) when > 0
	Err        error          // cause, logged but never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Detail + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Err }

// Status is the HTTP status the error maps to.
func (e *Error) Status() int { return e.Code.Status() }

// New makes an Error with a formatted detail.
func New(code Code, format string, args ...any) *Error {
	if len(args) > 0 {
		format = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Detail: format}
}

// Invalid is a validation_failed error listing the offending fields.
func Invalid(fields ...FieldError) *Error {
	detail := "the request has invalid fields"
	if len(fields) == 1 {
		detail = describe(fields[0])
	}
	return &Error{Code: ValidationFailed, Detail: detail, Errors: fields}
}

func describe(f FieldError) string {
	name := f.Parameter
	if f.Pointer != "" {
		name = strings.TrimPrefix(f.Pointer, "#/")
	} else if f.Header != "" {
		name = f.Header
	}
	return name + ": " + f.Detail
}

// With returns a copy of e with an extension member set.
func (e *Error) With(key string, value any) *Error {
	c := *e
	c.Extra = make(map[string]any, len(e.Extra)+1)
	for k, v := range e.Extra {
		c.Extra[k] = v
	}
	c.Extra[key] = value
	return &c
}

// Validator collects field errors; Err returns nil when there are none.
type Validator struct{ fields []FieldError }

// Check records a field error when ok is false.
func (v *Validator) Check(ok bool, path, detail string) {
	if !ok {
		v.fields = append(v.fields, Field(path, detail))
	}
}

// Add records field errors.
func (v *Validator) Add(f ...FieldError) { v.fields = append(v.fields, f...) }

// Err is a validation_failed *Error, or nil.
func (v *Validator) Err() error {
	if len(v.fields) == 0 {
		return nil
	}
	return Invalid(v.fields...)
}

// Document is the JSON body of a problem response.
type Document struct {
	Type      string         `json:"type"`
	Title     string         `json:"title"`
	Status    int            `json:"status"`
	Detail    string         `json:"detail,omitempty"`
	Instance  string         `json:"instance,omitempty"`
	Code      Code           `json:"code"`
	RequestID string         `json:"request_id,omitempty"`
	Errors    []FieldError   `json:"errors,omitempty"`
	Extra     map[string]any `json:"-"`
}

// MarshalJSON inlines the extension members.
func (d Document) MarshalJSON() ([]byte, error) {
	type plain Document
	b, err := json.Marshal(plain(d))
	if err != nil || len(d.Extra) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(d.Extra))
	for k := range d.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = b[:len(b)-1]
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(d.Extra[k])
		if err != nil {
			return nil, err
		}
		b = append(b, ',')
		b = append(b, kb...)
		b = append(b, ':')
		b = append(b, vb...)
	}
	return append(b, '}'), nil
}

// From converts any error into a *Error: a *Error anywhere in the chain is
// returned as is; context deadline/cancel become timeout/unavailable;
// anything else is internal.
func From(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Code: PayloadTooLarge, Detail: fmt.Sprintf("the body is larger than %d bytes", mbe.Limit)}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: Timeout, Detail: "the operation timed out; retry with the same Idempotency-Key", Err: err}
	case errors.Is(err, context.Canceled):
		return &Error{Code: Unavailable, Detail: "the request was canceled", Err: err}
	}
	return &Error{Code: Internal, Detail: "an internal error occurred; it has been logged", Err: err}
}

// Doc builds the document for err as served for request r.
func Doc(r *http.Request, requestID string, err error) (Document, *Error) {
	pe := From(err)
	s := lookup(pe.Code)
	d := Document{
		Type:      pe.Code.Type(),
		Title:     s.title,
		Status:    s.status,
		Detail:    pe.Detail,
		Code:      pe.Code,
		RequestID: requestID,
		Errors:    pe.Errors,
		Extra:     pe.Extra,
	}
	if r != nil {
		d.Instance = r.URL.Path
	}
	return d, pe
}

// Write answers the request with the problem document for err. Server-side
// errors (5xx) are logged with their cause; the client never sees the cause.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	reqID := w.Header().Get("X-Request-Id")
	d, pe := Doc(r, reqID, err)
	if d.Status >= 500 {
		attrs := []any{"code", pe.Code, "request_id", reqID}
		if r != nil {
			attrs = append(attrs, "method", r.Method, "path", r.URL.Path)
		}
		if pe.Err != nil {
			attrs = append(attrs, "err", pe.Err.Error())
		}
		ctx := context.Background()
		if r != nil {
			ctx = r.Context()
		}
		slog.Default().ErrorContext(ctx, "request failed: "+pe.Detail, attrs...)
	}
	body, merr := json.Marshal(d)
	if merr != nil {
		body = []byte(`{"type":"` + Internal.Type() + `","title":"Internal error","status":500,"code":"internal"}`)
		d.Status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	if pe.RetryAfter > 0 {
		// Whole seconds, rounded up: a client told to come back sooner
		// than RetryAfter would only be turned away again.
		secs := pe.RetryAfter / time.Second
		if pe.RetryAfter%time.Second != 0 {
			secs++
		}
		h.Set("Retry-After", strconv.FormatInt(int64(secs), 10))
	}
	if d.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer realm="billfn"`)
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write(body)
}
