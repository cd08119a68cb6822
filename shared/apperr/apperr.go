// Package apperr is the error type of billfn's domain code: an error with a
// stable, machine-readable Code, a human detail, the offending fields and
// the cause. It knows nothing of HTTP (it does not import net/http), so a
// domain package can return its errors without deciding how a transport
// shows them.
//
// A function declares its own codes as typed constants beside its rules:
//
//	const InsufficientFunds apperr.Code = "insufficient_funds"
//	...
//	return apperr.New(InsufficientFunds, "account %s holds %d", id, balance)
//
// and its api package maps each of them to an HTTP status once, in a
// problem.Statuses table; shared/problem turns any error into an RFC 9457
// document from that table. The codes every function shares (validation,
// not found, conflict, ...) are declared here and mapped by shared/problem.
//
// Recognise an error by its code (HasCode, CodeOf) or, when the caller needs
// more than the code (a rejection's transfer id, say), by a type of the
// domain's own that wraps an *Error: errors.As finds both.
package apperr

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code is a stable, machine-readable error code. Clients switch on it; it
// never changes once published.
type Code string

// The codes every function shares. shared/problem maps each to its HTTP
// status; a function's own codes are mapped by its api package.
const (
	BadRequest           Code = "bad_request"            // malformed JSON, bad query syntax
	ValidationFailed     Code = "validation_failed"      // well-formed but invalid fields
	UnsupportedMedia     Code = "unsupported_media_type" // wrong Content-Type
	PayloadTooLarge      Code = "payload_too_large"      // body over the limit
	Unauthorized         Code = "unauthorized"           // no or bad credentials
	Forbidden            Code = "forbidden"              // authenticated, not allowed
	NotFound             Code = "not_found"              // no such resource (or not yours)
	MethodNotAllowed     Code = "method_not_allowed"     // route exists, method does not
	NotAcceptable        Code = "not_acceptable"         // no representation the client accepts
	Conflict             Code = "conflict"               // state does not allow the operation
	IdempotencyKeyReused Code = "idempotency_key_reused" // same key, different request
	IdempotencyInFlight  Code = "idempotency_key_in_use" // same key, request still running
	IdempotencyRequired  Code = "idempotency_key_required"
	RateLimited          Code = "rate_limited"
	Internal             Code = "internal"
	Unavailable          Code = "unavailable" // a dependency is down; retry later
	Timeout              Code = "timeout"
	BadGateway           Code = "bad_gateway"          // an upstream answered badly (the local gateway)
	CardNumberRejected   Code = "card_number_rejected" // a card number in a request (see shared/pan)
	AccountNotActive     Code = "account_not_active"   // the account read model says frozen or closed (shared/accounts)
	AmountOverflow       Code = "amount_overflow"      // an amount or a total beyond int64 minor units (shared/money's checked arithmetic)
)

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
	Extra      map[string]any // extension members of the problem document, e.g. {"balance": 100}
	RetryAfter time.Duration  // how long to wait before retrying, when > 0
	Err        error          // cause, logged but never shown
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Detail + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Err }

// New makes an Error with a detail, formatted when args are given.
func New(code Code, format string, args ...any) *Error {
	if len(args) > 0 {
		format = fmt.Sprintf(format, args...)
	}
	return &Error{Code: code, Detail: format}
}

// Wrap makes an Error with a cause that is logged but never shown.
func Wrap(code Code, err error, format string, args ...any) *Error {
	e := New(code, format, args...)
	e.Err = err
	return e
}

// KeyReused is the error of an Idempotency-Key used before for a different
// request; what names that request ("transfer", "payment", "request (POST
// /invoices)").
func KeyReused(what string) *Error {
	return New(IdempotencyKeyReused, "this Idempotency-Key was used for a different %s; use a new key for a new request", what)
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

// CodeOf is the code of the first *Error in err's chain, or "" when there
// is none (an unexpected error: internal).
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// HasCode reports whether err's chain holds an *Error with one of codes.
func HasCode(err error, codes ...Code) bool {
	c := CodeOf(err)
	if c == "" {
		return false
	}
	for _, want := range codes {
		if c == want {
			return true
		}
	}
	return false
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
