package testenv

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// Owner stands in, in one function's unit tests, for the read API of the
// function that owns a resource (process-transaction's GET /accounts/{id},
// generate-invoice's GET /invoices/{id}): what a read model's read-through
// asks. It answers GET /{collection}/{id} with a bearer token: what lookup
// returns, as JSON; 404 when lookup knows nothing; 401 without the token;
// 503 while Down. The system tests in cmd/stack run the real functions.
type Owner struct {
	URL   string
	calls atomic.Int64
	down  atomic.Bool
}

// NewOwner serves lookup until the test ends.
func NewOwner(tb testing.TB, token string, lookup func(collection, id string) (any, bool)) *Owner {
	o := &Owner{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.calls.Add(1)
		switch {
		case r.Header.Get("Authorization") != "Bearer "+token:
			http.Error(w, "no", http.StatusUnauthorized)
			return
		case o.down.Load():
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		collection, id, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		v, found := lookup(collection, id)
		if r.Method != http.MethodGet || !ok || !found {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}))
	tb.Cleanup(srv.Close)
	o.URL = srv.URL
	return o
}

// Calls counts the requests the owner answered.
func (o *Owner) Calls() int64 { return o.calls.Load() }

// SetDown makes the owner answer 503 (true) or serve again (false).
func (o *Owner) SetDown(down bool) { o.down.Store(down) }
