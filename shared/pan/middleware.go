package pan

import (
	"bytes"
	"io"
	"net/http"

	"github.com/billfn/billfn/shared/httpx"
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
		body, err := httpx.ReadBody(r)
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
// card_number_rejected problem naming the members that hold a number
// (none, for a body that holds one outside its JSON value).
func CheckBody(body []byte) error {
	fields, elsewhere := scanJSON("", body)
	if len(fields) > 0 || elsewhere {
		return Reject(fields...)
	}
	return nil
}
