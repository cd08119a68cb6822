// Package httpx holds the request and response helpers every handler uses:
// strict JSON decoding that turns every client mistake into a problem, JSON
// responses, opaque keyset cursors and limit parsing.
package httpx

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/billfn/billfn/shared/problem"
)

// DecodeJSON reads the request body into dst. It insists on a JSON content
// type (415), rejects unknown members and malformed or trailing JSON (400),
// reports a member of the wrong type as a validation error naming the field
// (422) and an oversize body as 413. The body size limit is set by the
// server runtime (http.MaxBytesReader).
func DecodeJSON(r *http.Request, dst any) error {
	if err := RequireJSON(r); err != nil {
		return err
	}
	return DecodeJSONBody(r.Body, dst)
}

// RequireJSON checks that the request declares a JSON body.
func RequireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return problem.New(problem.UnsupportedMedia, "Content-Type must be application/json")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return problem.New(problem.UnsupportedMedia, "Content-Type must be application/json, got %q", ct)
	}
	return nil
}

// DecodeJSONBody decodes one JSON value from body into dst with the same
// rules as DecodeJSON, without looking at headers.
func DecodeJSONBody(body io.Reader, dst any) error {
	dec := json.NewDecoder(&nulGuard{r: body})
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return problem.New(problem.BadRequest, "the body must hold a single JSON value")
	}
	// Drain so a trailing partial value or an oversize tail is reported.
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		if err == nil {
			return problem.New(problem.BadRequest, "the body must hold a single JSON value")
		}
		return decodeError(err)
	}
	return nil
}

// Unmarshal decodes data with the rules of DecodeJSONBody.
func Unmarshal(data []byte, dst any) error { return DecodeJSONBody(bytes.NewReader(data), dst) }

func decodeError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
		pe  *problem.Error
	)
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.As(err, &mbe):
		return problem.New(problem.PayloadTooLarge, "the body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return problem.New(problem.BadRequest, "the body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.New(problem.BadRequest, "the body ends in the middle of a JSON value")
	case errors.As(err, &syn):
		return problem.New(problem.BadRequest, "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		path := strings.ReplaceAll(typ.Field, ".", "/")
		if path == "" {
			return problem.New(problem.BadRequest, "the body must be a JSON %s", typ.Type.Kind())
		}
		return problem.Invalid(problem.Field(path, fmt.Sprintf("must be %s, not %s", jsonKind(typ), typ.Value)))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json quotes the name with strconv.Quote.
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if u, uerr := strconv.Unquote(name); uerr == nil {
			name = u
		}
		return &problem.Error{Code: problem.BadRequest, Detail: fmt.Sprintf("unknown field %q", name),
			Errors: []problem.FieldError{problem.Field(pointerEscaper.Replace(name), "unknown field")}}
	}
	// Errors from a type's UnmarshalJSON (money, dates): the value is wrong.
	return problem.New(problem.BadRequest, "invalid JSON: %s", err.Error())
}

// pointerEscaper escapes one JSON Pointer reference token (RFC 6901).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

func jsonKind(e *json.UnmarshalTypeError) string {
	switch e.Type.Kind().String() {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return "a " + e.Type.String()
}

// ReadBody reads a request's whole body. A body that declares its length
// (Content-Length, up to presizeMax) is read into one buffer of that size,
// where io.ReadAll would read it in growing chunks and copy them into a
// buffer of the final size: a batch of events or transfers of a few
// hundred kilobytes is allocated once instead of some ten times (issue
// 20). The declared length only sizes the buffer: the body's reader (the
// server's, behind http.MaxBytesReader) still decides what it holds and
// when it is too large, and a body longer than it declared is read whole.
// A client that declares a length and sends it slowly holds at most
// presizeMax of memory per request before sending it, which the bytes
// themselves would hold once sent.
func ReadBody(r *http.Request) ([]byte, error) {
	n := r.ContentLength
	if n <= 0 || n > presizeMax {
		return io.ReadAll(r.Body)
	}
	b := make([]byte, 0, n+1) // +1: room for the read that reports EOF
	for {
		m, err := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			rest, err := io.ReadAll(r.Body)
			return append(b, rest...), err
		}
	}
}

// presizeMax is the largest declared length ReadBody allocates at once:
// the servers' default body limit (server.Config.MaxBodyBytes).
const presizeMax = 1 << 20

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		problem.Write(w, nil, fmt.Errorf("encode response: %w", err))
		return
	}
	WriteRaw(w, status, b)
}

// WriteRaw writes an already-encoded JSON body.
func WriteRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// List is the envelope of every list endpoint: the page and the cursor of
// the next page (empty on the last page).
type List[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
	HasMore    bool   `json:"has_more"`
}

// MarshalJSON writes an empty page as "data": [] rather than null.
func (l List[T]) MarshalJSON() ([]byte, error) {
	if l.Data == nil {
		l.Data = []T{}
	}
	return json.Marshal(struct {
		Data       []T    `json:"data"`
		NextCursor string `json:"next_cursor,omitempty"`
		HasMore    bool   `json:"has_more"`
	}{l.Data, l.NextCursor, l.HasMore})
}

// Page is the envelope of one page of a keyset list whose query fetched
// one row more than limit: the first limit rows and, when the extra row
// came, has_more and the cursor of the last row shown (cursor gives its
// keyset position).
func Page[T any](rows []T, limit int, cursor func(last T) any) List[T] {
	if len(rows) <= limit {
		return List[T]{Data: rows}
	}
	return List[T]{Data: rows[:limit], HasMore: true, NextCursor: EncodeCursor(cursor(rows[limit-1]))}
}

// EncodeCursor makes an opaque cursor from a keyset position.
func EncodeCursor(pos any) string {
	b, _ := json.Marshal(pos)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads the "cursor" query parameter into pos; an absent cursor
// leaves pos untouched and returns false.
func DecodeCursor(r *http.Request, pos any) (bool, error) {
	s := r.URL.Query().Get("cursor")
	if s == "" {
		return false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil && HasNULEscape(b) {
		err = errors.New("U+0000") // a position goes to SQL as it is: Postgres text refuses it
	}
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(pos)
	}
	if err != nil {
		return false, problem.Invalid(problem.Param("cursor", "is not a cursor this endpoint returned"))
	}
	return true, nil
}

// Limit parses the "limit" query parameter: def when absent, 1..max otherwise.
func Limit(r *http.Request, def, max int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, problem.Invalid(problem.Param("limit", fmt.Sprintf("must be an integer from 1 to %d", max)))
	}
	return n, nil
}

// HasNULEscape reports whether JSON text holds the escape \u0000 (U+0000
// inside a string). Postgres text and jsonb cannot store it, so a request
// carrying one is refused as bad input instead of failing at the database.
func HasNULEscape(b []byte) bool {
	var g nulGuard
	return g.scan(b)
}

// nulGuard passes a JSON body through and fails the read with a 400
// problem at the first \u0000 escape (tracked across reads).
type nulGuard struct {
	r       io.Reader
	slash   int // backslashes in a row before the current byte
	match   int // bytes of "u0000" matched after an odd run of backslashes
	tripped bool
}

func (g *nulGuard) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if g.scan(p[:n]) {
		return n, problem.New(problem.BadRequest, "strings may not hold U+0000 (\\u0000)")
	}
	return n, err
}

func (g *nulGuard) scan(b []byte) bool {
	for _, c := range b {
		switch {
		case c == '\\':
			g.slash++
			g.match = 0
			continue
		case g.match == 0 && c == 'u' && g.slash%2 == 1:
			g.match = 1
		case g.match > 0 && c == '0':
			g.match++
			if g.match == 5 {
				g.tripped = true
			}
		default:
			g.match = 0
		}
		g.slash = 0
	}
	return g.tripped
}
