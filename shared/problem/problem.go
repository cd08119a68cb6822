// Package problem turns errors into RFC 9457 problem documents
// (application/problem+json).
//
// Errors are *apperr.Error values (shared/apperr, which knows nothing of
// HTTP): a stable Code, a detail, the offending fields. This package maps a
// code to an HTTP status and a title: the codes every function shares
// (validation_failed, not_found, conflict, rate_limited, ...) by its own
// table, and a function's own codes (insufficient_funds, invoice_not_draft,
// ...) by the one Statuses table its api package declares and installs
// with Statuses.Middleware (or writes with Statuses.Write). The document's
// "type" is BaseURI + code, so clients can switch on either "type" or
// "code".
//
// Anything that is not an *apperr.Error is an internal error: it is logged
// with the request id and the client sees a 500 with no internals.
//
// Extension members (apperr.Error.With, Document.Extra) must not be named
// like the document's own members (type, title, status, detail, instance,
// and billfn's code, request_id, errors), in any case: RFC 9457 (section
// 3.2) forbids it, and a client would read two values for one member (a
// Go client matches names in any case). Such a name is a programming
// error: Document.MarshalJSON refuses the document, and Write logs why
// and serves a 500 internal problem instead, as for an extension that
// cannot be encoded. No document ever has two members of one name.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/apperr"
)

// BaseURI prefixes every problem type.
const BaseURI = "https://billfn.dev/problems/"

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Code is a stable, machine-readable error code (apperr.Code).
type Code = apperr.Code

// Error is an error a client may see (apperr.Error).
type Error = apperr.Error

// FieldError names one offending input (apperr.FieldError).
type FieldError = apperr.FieldError

// Validator collects field errors (apperr.Validator).
type Validator = apperr.Validator

// The codes every function shares, as declared in shared/apperr.
const (
	BadRequest           = apperr.BadRequest
	ValidationFailed     = apperr.ValidationFailed
	UnsupportedMedia     = apperr.UnsupportedMedia
	PayloadTooLarge      = apperr.PayloadTooLarge
	Unauthorized         = apperr.Unauthorized
	Forbidden            = apperr.Forbidden
	NotFound             = apperr.NotFound
	MethodNotAllowed     = apperr.MethodNotAllowed
	NotAcceptable        = apperr.NotAcceptable
	Conflict             = apperr.Conflict
	IdempotencyKeyReused = apperr.IdempotencyKeyReused
	IdempotencyInFlight  = apperr.IdempotencyInFlight
	IdempotencyRequired  = apperr.IdempotencyRequired
	RateLimited          = apperr.RateLimited
	Internal             = apperr.Internal
	Unavailable          = apperr.Unavailable
	Timeout              = apperr.Timeout
	BadGateway           = apperr.BadGateway
	CardNumberRejected   = apperr.CardNumberRejected
	AccountNotActive     = apperr.AccountNotActive
	AmountOverflow       = apperr.AmountOverflow
)

// Constructors, as in shared/apperr (kept here so a handler needs one import).
var (
	New     = apperr.New
	Invalid = apperr.Invalid
	Field   = apperr.Field
	Param   = apperr.Param
	Header  = apperr.Header
)

// Mapping is how one code is shown over HTTP: its status and the title of
// its problem type (http.StatusText(Status) when empty).
type Mapping struct {
	Status int
	Title  string
}

// Statuses is a table from codes to HTTP. Each function's api package
// declares one for its own codes, e.g.
//
//	var Statuses = problem.Statuses{
//		ledger.InsufficientFunds: {Status: http.StatusUnprocessableEntity, Title: "Insufficient funds"},
//		ledger.TransferNotHeld:   {Status: http.StatusConflict, Title: "Transfer is not an open hold"},
//	}
//
// and serves its routes behind Statuses.Middleware. The shared codes are
// always mapped by Common and cannot be mapped differently.
type Statuses map[Code]Mapping

// Common maps the codes every function shares. It is not to be modified.
var Common = Statuses{
	BadRequest:           {http.StatusBadRequest, "Bad request"},
	ValidationFailed:     {http.StatusUnprocessableEntity, "Validation failed"},
	UnsupportedMedia:     {http.StatusUnsupportedMediaType, "Unsupported media type"},
	PayloadTooLarge:      {http.StatusRequestEntityTooLarge, "Payload too large"},
	Unauthorized:         {http.StatusUnauthorized, "Unauthorized"},
	Forbidden:            {http.StatusForbidden, "Forbidden"},
	NotFound:             {http.StatusNotFound, "Not found"},
	MethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	NotAcceptable:        {http.StatusNotAcceptable, "Not acceptable"},
	Conflict:             {http.StatusConflict, "Conflict"},
	IdempotencyKeyReused: {http.StatusUnprocessableEntity, "Idempotency key reused with a different request"},
	IdempotencyInFlight:  {http.StatusConflict, "A request with this idempotency key is in progress"},
	IdempotencyRequired:  {http.StatusBadRequest, "Idempotency-Key header required"},
	RateLimited:          {http.StatusTooManyRequests, "Too many requests"},
	Internal:             {http.StatusInternalServerError, "Internal error"},
	Unavailable:          {http.StatusServiceUnavailable, "Service unavailable"},
	Timeout:              {http.StatusGatewayTimeout, "Timed out"},
	BadGateway:           {http.StatusBadGateway, "Bad gateway"},
	CardNumberRejected:   {http.StatusUnprocessableEntity, "Card numbers are not accepted"},
	AccountNotActive:     {http.StatusConflict, "Account not active"},
	AmountOverflow:       {http.StatusUnprocessableEntity, "Amount overflow"},
}

// Check reports a row of s that maps a shared code differently from
// Common, or a status that is not an error status: programming errors.
func (s Statuses) Check() error {
	for c, m := range s {
		if m.Status < 400 || m.Status > 599 {
			return fmt.Errorf("problem: code %q maps to %d, not an error status", c, m.Status)
		}
		if cm, ok := Common[c]; ok && cm.Status != m.Status {
			return fmt.Errorf("problem: code %q is shared (%d) and cannot map to %d", c, cm.Status, m.Status)
		}
	}
	return nil
}

// lookup finds a code: in Common, then in s; an unknown code is an
// internal error.
func (s Statuses) lookup(c Code) Mapping {
	if m, ok := Common[c]; ok {
		return m
	}
	if m, ok := s[c]; ok {
		if m.Title == "" {
			m.Title = http.StatusText(m.Status)
		}
		return m
	}
	return Mapping{http.StatusInternalServerError, string(c)}
}

// Status is the HTTP status err is shown with (see From and lookup).
func (s Statuses) Status(err error) int { return s.lookup(From(err).Code).Status }

// Write answers the request with the problem document for err, mapped by s.
func (s Statuses) Write(w http.ResponseWriter, r *http.Request, err error) {
	serve(s, w, r, err)
}

type statusesKey struct{}

// WithStatuses returns a context whose problem writes use s.
func WithStatuses(ctx context.Context, s Statuses) context.Context {
	return context.WithValue(ctx, statusesKey{}, s)
}

// StatusesFrom returns the table installed in ctx (nil: the shared codes only).
func StatusesFrom(ctx context.Context) Statuses {
	s, _ := ctx.Value(statusesKey{}).(Statuses)
	return s
}

// Middleware serves next with s installed in every request's context, so
// problem.Write, StatusOf and the event receiver map the function's codes
// by s. It panics when s.Check fails: a programming error, found at start.
func (s Statuses) Middleware(next http.Handler) http.Handler {
	if err := s.Check(); err != nil {
		panic(err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(WithStatuses(r.Context(), s)))
	})
}

// StatusOf is the HTTP status of err by the table installed in ctx.
func StatusOf(ctx context.Context, err error) int { return StatusesFrom(ctx).Status(err) }

// TypeOf is the problem type URI of a code.
func TypeOf(c Code) string { return BaseURI + string(c) }

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

// members are the names of Document's own members, from its JSON tags.
var members = func() []string {
	var names []string
	t := reflect.TypeFor[Document]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}()

// member is the document's own member that an extension member named
// name would duplicate ("" for none).
func member(name string) string {
	for _, m := range members {
		if strings.EqualFold(name, m) {
			return m
		}
	}
	return ""
}

// MarshalJSON inlines the extension members. It refuses one named like a
// member of the document (see the package comment).
func (d Document) MarshalJSON() ([]byte, error) {
	for k := range d.Extra {
		if m := member(k); m != "" {
			return nil, fmt.Errorf("problem: extension member %q would duplicate the document's member %q (RFC 9457, section 3.2)", k, m)
		}
	}
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

// Doc builds the document for err as served for request r, mapped by the
// table installed in r's context (the shared codes only when r is nil).
func Doc(r *http.Request, requestID string, err error) (Document, *Error) {
	var s Statuses
	if r != nil {
		s = StatusesFrom(r.Context())
	}
	return s.Doc(r, requestID, err)
}

// Doc builds the document for err as served for request r, mapped by s.
func (s Statuses) Doc(r *http.Request, requestID string, err error) (Document, *Error) {
	pe := From(err)
	m := s.lookup(pe.Code)
	d := Document{
		Type:      TypeOf(pe.Code),
		Title:     m.Title,
		Status:    m.Status,
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

// Write answers the request with the problem document for err, mapped by
// the table installed in r's context (Statuses.Middleware). Server-side
// errors (5xx) are logged with their cause; the client never sees the cause.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	var s Statuses
	if r != nil {
		s = StatusesFrom(r.Context())
	}
	serve(s, w, r, err)
}

func serve(s Statuses, w http.ResponseWriter, r *http.Request, err error) {
	reqID := w.Header().Get("X-Request-Id")
	d, pe := s.Doc(r, reqID, err)
	ctx := context.Background()
	attrs := []any{"code", pe.Code, "request_id", reqID}
	if r != nil {
		ctx = r.Context()
		attrs = append(attrs, "method", r.Method, "path", r.URL.Path)
	}
	if d.Status >= 500 {
		failed := attrs
		if pe.Err != nil {
			failed = append(slices.Clip(attrs), "err", pe.Err.Error())
		}
		slog.Default().ErrorContext(ctx, "request failed: "+pe.Detail, failed...)
	}
	body, merr := json.Marshal(d)
	if merr != nil {
		// A programming error (an extension named like a member, or one
		// that cannot be encoded): the log says which.
		slog.Default().ErrorContext(ctx, "problem document not encodable: "+merr.Error(), attrs...)
		body = []byte(`{"type":"` + TypeOf(Internal) + `","title":"Internal error","status":500,"code":"internal"}`)
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
