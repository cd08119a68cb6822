package apperr

import (
	"errors"
	"fmt"
	"testing"
)

const testRejected Code = "test_rejected"

// rejection is how a domain carries more than a code: its own type
// wrapping an *Error, found by errors.As, never by a key in Extra.
type rejection struct {
	TransferID string
	err        *Error
}

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

func TestADomainTypeAndItsCodeAreBothFound(t *testing.T) {
	var err error = &rejection{TransferID: "t1", err: New(testRejected, "no funds")}
	err = fmt.Errorf("posting: %w", err)
	var rj *rejection
	if !errors.As(err, &rj) || rj.TransferID != "t1" {
		t.Fatalf("errors.As(rejection) failed on %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != testRejected {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	if CodeOf(err) != testRejected || !HasCode(err, NotFound, testRejected) || HasCode(err, NotFound) {
		t.Fatalf("CodeOf = %q", CodeOf(err))
	}
	if CodeOf(errors.New("plain")) != "" || HasCode(nil, Internal) {
		t.Fatal("a plain error has no code")
	}
}

func TestNewFormatsOnlyWithArgs(t *testing.T) {
	if e := New(NotFound, "100%% sure"); e.Detail != "100%% sure" {
		t.Fatalf("detail %q: a detail without args is kept verbatim", e.Detail)
	}
	if e := New(NotFound, "account %s", "a1"); e.Detail != "account a1" || e.Error() != "not_found: account a1" {
		t.Fatalf("got %q / %q", e.Detail, e.Error())
	}
	cause := errors.New("dial tcp: refused")
	e := Wrap(Unavailable, cause, "ledger down")
	if !errors.Is(e, cause) || e.Error() != "unavailable: ledger down: dial tcp: refused" {
		t.Fatalf("Wrap = %v", e)
	}
}

func TestWithCopies(t *testing.T) {
	base := New(Conflict, "x")
	one := base.With("a", 1)
	two := one.With("b", 2)
	if base.Extra != nil || len(one.Extra) != 1 || len(two.Extra) != 2 {
		t.Fatalf("With shares maps: %v %v %v", base.Extra, one.Extra, two.Extra)
	}
}

func TestInvalidDescribesOneFieldOrCountsMany(t *testing.T) {
	if e := Invalid(Field("amount", "must be positive")); e.Detail != "amount: must be positive" || e.Code != ValidationFailed {
		t.Fatalf("Invalid(1) = %+v", e)
	}
	if e := Invalid(Param("limit", "too big")); e.Detail != "limit: too big" {
		t.Fatalf("Invalid(param) = %q", e.Detail)
	}
	if e := Invalid(Header("Prefer", "bad"), Field("a", "b")); e.Detail != "the request has invalid fields" || len(e.Errors) != 2 {
		t.Fatalf("Invalid(2) = %+v", e)
	}
	var v Validator
	v.Check(true, "a", "fine")
	if v.Err() != nil {
		t.Fatal("no failed check, yet an error")
	}
	v.Check(false, "b", "bad")
	if !HasCode(v.Err(), ValidationFailed) {
		t.Fatalf("Validator.Err() = %v", v.Err())
	}
}
