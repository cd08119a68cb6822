package pan

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/billfn/billfn/shared/problem"
)

// Middleware refuses, before anything else reads or stores it, a request
// whose body holds what looks like a card number anywhere: a string, a
// number or a key of its JSON, however deep, or anywhere in a body that is
// not JSON. It goes in front of the idempotency store (whose fingerprint
// would be a hash of the number) and of the decoder (whose errors quote an
// unknown member's name and a mistyped number). The answer is a 422
// card_number_rejected naming the members, never their values; nothing of
// the body is logged.
//
// Requests without a body (GET, DELETE) pass untouched.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			problem.Write(w, r, err) // a MaxBytesError is a 413
			return
		}
		if err := CheckBody(body); err != nil {
			problem.Write(w, r, err)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// CheckBody is Middleware's test of a raw body: nil, or the
// card_number_rejected problem. The raw text is scanned first (cheap, and
// it covers bodies that are not JSON); JSON with escapes, whose digits or
// separators may be written as \u escapes, is decoded and walked, and so
// is a body found guilty, to name the members.
func CheckBody(body []byte) error {
	raw := Contains(string(body))
	if !raw && !bytes.ContainsRune(body, '\\') {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		if raw {
			return Reject()
		}
		return nil
	}
	if fields := Find(v); len(fields) > 0 {
		return Reject(fields...)
	}
	if raw && len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		// More after the value, JSON or not ("0} 4242…"): the decoder will
		// refuse the body, but it is not the idempotency store's to keep.
		return Reject()
	}
	return nil
}
