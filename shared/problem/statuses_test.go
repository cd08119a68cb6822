package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/billfn/billfn/shared/apperr"
)

// A function's own codes, as a domain package declares them.
const (
	testOverdrawn apperr.Code = "test_overdrawn"
	testLocked    apperr.Code = "test_locked"
)

var testStatuses = Statuses{
	testOverdrawn: {http.StatusUnprocessableEntity, "Overdrawn"},
	testLocked:    {Status: http.StatusConflict}, // title from the status
}

func serveWith(t *testing.T, h http.Handler) (*httptest.ResponseRecorder, Document) {
	t.Helper()
	captureLog(t)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/transfers", nil))
	var d Document
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return rec, d
}

func TestMiddlewareMapsAFunctionsCodesByItsTable(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
		title  string
	}{
		{apperr.New(testOverdrawn, "balance 0"), 422, "Overdrawn"},
		// Wrapped by the domain: still found.
		{fmt.Errorf("transfer t1: %w", apperr.New(testLocked, "busy")), 409, "Conflict"},
		{apperr.New(apperr.NotFound, "no"), 404, "Not found"},
		{errors.New("boom"), 500, "Internal error"},
	} {
		h := testStatuses.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Write(w, r, tt.err) }))
		rec, d := serveWith(t, h)
		if rec.Code != tt.status || d.Status != tt.status || d.Title != tt.title {
			t.Fatalf("%v: served %d %q (doc status %d), want %d %q", tt.err, rec.Code, d.Title, d.Status, tt.status, tt.title)
		}
		if st := testStatuses.Status(tt.err); st != tt.status {
			t.Fatalf("Statuses.Status(%v) = %d, want %d", tt.err, st, tt.status)
		}
	}
}

func TestACodeOutsideTheTableIsInternal(t *testing.T) {
	// Without the table (another function's handler, or none installed),
	// a function's code is unknown: a 500, never a guess.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { Write(w, r, apperr.New(testOverdrawn, "x")) })
	rec, d := serveWith(t, h)
	if rec.Code != 500 || d.Code != testOverdrawn {
		t.Fatalf("served %d %s, want 500 with the code kept", rec.Code, d.Code)
	}
	if st := StatusOf(context.Background(), apperr.New(testOverdrawn, "x")); st != 500 {
		t.Fatalf("StatusOf without a table = %d, want 500", st)
	}
	if st := StatusOf(WithStatuses(context.Background(), testStatuses), apperr.New(testOverdrawn, "x")); st != 422 {
		t.Fatalf("StatusOf with the table = %d, want 422", st)
	}
}

func TestStatusesWriteNeedsNoMiddleware(t *testing.T) {
	rec, d := serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		testStatuses.Write(w, r, apperr.New(testOverdrawn, "x"))
	}))
	if rec.Code != 422 || d.Type != BaseURI+"test_overdrawn" {
		t.Fatalf("served %d %+v", rec.Code, d)
	}
}

func TestATableCannotRemapASharedCode(t *testing.T) {
	for name, bad := range map[string]Statuses{
		"not_found as 400": {apperr.NotFound: {http.StatusBadRequest, "Not found"}},
		"a 2xx":            {testLocked: {http.StatusOK, "fine"}},
	} {
		if bad.Check() == nil {
			t.Fatalf("%s: Check() = nil", name)
		}
		mustPanic(t, "Middleware with "+name, func() { bad.Middleware(http.NotFoundHandler()) })
	}
	// Restating a shared code with its own status is allowed.
	if err := (Statuses{apperr.NotFound: {Status: 404}}).Check(); err != nil {
		t.Fatalf("Check() = %v", err)
	}
	if err := testStatuses.Check(); err != nil {
		t.Fatalf("Check() = %v", err)
	}
}

func TestTheSharedTableCoversEverySharedCode(t *testing.T) {
	for _, c := range []apperr.Code{apperr.BadRequest, apperr.ValidationFailed, apperr.UnsupportedMedia,
		apperr.PayloadTooLarge, apperr.Unauthorized, apperr.Forbidden, apperr.NotFound, apperr.MethodNotAllowed,
		apperr.NotAcceptable, apperr.Conflict, apperr.IdempotencyKeyReused, apperr.IdempotencyInFlight,
		apperr.IdempotencyRequired, apperr.RateLimited, apperr.Internal, apperr.Unavailable, apperr.Timeout,
		apperr.BadGateway, apperr.CardNumberRejected, apperr.AccountNotActive, apperr.AmountOverflow} {
		if m, ok := Common[c]; !ok || m.Status < 400 || m.Title == "" {
			t.Fatalf("Common[%s] = %+v, %v", c, m, ok)
		}
	}
}
