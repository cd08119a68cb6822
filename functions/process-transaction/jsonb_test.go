package main

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// rowCounts counts the rows of the tables a refused request must leave
// alone.
func (e *env) rowCounts() map[string]int64 {
	e.t.Helper()
	out := map[string]int64{}
	for _, table := range []string{"accounts", "transfers", "outbox", "idempotency_keys"} {
		var n int64
		if err := e.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out[table] = n
	}
	return out
}

// Metadata is stored as the caller wrote it, as jsonb, and jsonb refuses
// two things encoding/json takes: a \u escape of half a surrogate pair
// ("\ud800", which a Go string decodes to U+FFFD) and a number beyond
// numeric's range (1e200000). Such a transfer failed its whole group
// commit, 503 "retry with the same Idempotency-Key" — a retry that could
// never succeed, and an answer shared by every other transfer committed in
// the same group (a batch's valid items with it); an account with such
// metadata was a 500. Each is now a 422 naming the metadata, and nothing
// is written.
func TestMetadataJSONBCannotHoldIsRefusedAsTheCallersMistake(t *testing.T) {
	e := newEnv(t)
	user := uuid.NewString()
	a, b := e.account(user, "USD"), e.account(user, "USD")
	e.fund(a, 1_000)
	transfer := func(metadata string) string {
		return `{"from_account_id":"` + a.ID + `","to_account_id":"` + b.ID + `","amount":100,"currency":"USD","metadata":` + metadata + `}`
	}
	for _, md := range []string{`{"note":"\ud800"}`, `{"note":"x\udc00"}`, `{"\ud83d":1}`, `{"n":1e200000}`, `{"n":[0.1e-16383]}`} {
		before := e.rowCounts()
		for _, c := range []struct {
			path, body, pointer string
			hdr                 []string
		}{
			{"/transfers", transfer(md), "#/metadata", nil},
			{"/transfers", transfer(md), "#/metadata", []string{"Prefer", "respond-async"}},
			{"/transfers/batch", `{"transfers":[` + transfer(`{"note":"fine"}`) + `,` + transfer(md) + `]}`, "#/transfers/1/metadata", nil},
			{"/accounts", `{"currency":"USD","metadata":` + md + `}`, "#/metadata", nil},
		} {
			r := e.do("POST", c.path, user, auth.RoleCustomer, c.body, append([]string{"Idempotency-Key", key()}, c.hdr...)...)
			if r.Code != 422 || r.code() != "validation_failed" || !strings.Contains(r.Body.String(), `"pointer":"`+c.pointer+`"`) {
				t.Errorf("POST %s with metadata %s %v: %d %s, want 422 naming %s", c.path, md, c.hdr, r.Code, r.Body, c.pointer)
			}
		}
		if after := e.rowCounts(); after["accounts"] != before["accounts"] || after["transfers"] != before["transfers"] ||
			after["idempotency_keys"] != before["idempotency_keys"] || after["outbox"] > before["outbox"] {
			t.Errorf("metadata %s: refused requests wrote rows: %v, then %v", md, before, after)
		}
	}
	if got := e.get(a.ID); got.Balance != 1_000 {
		t.Errorf("balance %d, want 1000", got.Balance)
	}
	// What jsonb stores still passes: a pair, an escaped backslash, the
	// extremes of a double.
	for _, md := range []string{`{"smile":"\ud83d\ude00"}`, `{"path":"\\ud800"}`, `{"n":[1.7976931348623157e308,5e-324,0e200000,-0]}`} {
		if r := e.do("POST", "/transfers", user, auth.RoleCustomer, transfer(md), "Idempotency-Key", key()); r.Code != 201 {
			t.Errorf("metadata %s: %d %s", md, r.Code, r.Body)
		}
	}
}

// jsonb keeps a metadata number as numeric and writes it out in full on
// every read: 8 KiB of "9e131071" (889 of them) was taken (201), and came
// back as 116 MB of digits on each read of the transfer — its GET and the
// history of both its accounts, the payee's too, ran out of time (504),
// for good — and an account with it took 18 s to answer. The numbers of
// a metadata object, written out in full, now take at most 8192 digits
// together; beyond, a 422 naming the metadata, and nothing is written.
func TestMetadataNumbersAreBoundedWrittenOut(t *testing.T) {
	e := newEnv(t)
	user := uuid.NewString()
	a, b := e.account(user, "USD"), e.account(user, "USD")
	e.fund(a, 1_000)
	md := `{"n":[` + strings.Repeat("9e131071,", 20) + `1]}`
	before := e.rowCounts()
	for _, c := range []struct{ path, body string }{
		{"/transfers", `{"from_account_id":"` + a.ID + `","to_account_id":"` + b.ID + `","amount":1,"currency":"USD","metadata":` + md + `}`},
		{"/accounts", `{"currency":"USD","metadata":` + md + `}`},
	} {
		r := e.do("POST", c.path, user, auth.RoleCustomer, c.body, "Idempotency-Key", key())
		if r.Code != 422 || !strings.Contains(r.Body.String(), `"pointer":"#/metadata"`) {
			t.Errorf("POST %s with 20 numbers of 131072 digits: %d %.300s, want 422 naming the metadata", c.path, r.Code, r.Body)
		}
	}
	if after := e.rowCounts(); after["accounts"] != before["accounts"] || after["transfers"] != before["transfers"] ||
		after["idempotency_keys"] != before["idempotency_keys"] {
		t.Errorf("refused requests wrote rows: %v, then %v", before, after)
	}
}

// POST /transfers checks its Idempotency-Key itself (it is not behind the
// idempotency middleware: the key is the transfer's, stored with it), and
// checked only its length. A key the README does not allow (1-255
// printable ASCII characters) was taken: one with a space or an "é" was a
// key here and a 422 on every other write, and one with a byte that is not
// UTF-8 ("caf\xe9", which HTTP allows in a header) failed the group commit
// at Postgres — 503 "retry with the same Idempotency-Key", for that caller
// and every other of the group. Each is now the middleware's 422 naming
// the header, and nothing is written.
func TestATransfersIdempotencyKeyIsPrintableASCII(t *testing.T) {
	e := newEnv(t)
	user := uuid.NewString()
	a, b := e.account(user, "USD"), e.account(user, "USD")
	e.fund(a, 1_000)
	before := e.rowCounts()
	for _, k := range []string{"caf\xe9", "café", "a b", "tab\there", strings.Repeat("k", 256)} {
		for _, prefer := range []string{"", "respond-async"} {
			r := e.do("POST", "/transfers", user, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
				"amount": 100, "currency": "USD"}, "Idempotency-Key", k, "Prefer", prefer)
			if r.Code != 422 || r.code() != "validation_failed" || !strings.Contains(r.Body.String(), `"header":"Idempotency-Key"`) {
				t.Errorf("key %q (Prefer %q): %d %s, want 422 naming the header", k, prefer, r.Code, r.Body)
			}
		}
	}
	if after := e.rowCounts(); after["transfers"] != before["transfers"] || after["idempotency_keys"] != before["idempotency_keys"] ||
		after["outbox"] > before["outbox"] {
		t.Errorf("refused requests wrote rows: %v, then %v", before, after)
	}
	if r := e.transfer(user, a, b, 100, "Idempotency-Key", "~!ok-key_255:"+strings.Repeat("x", 242)); r.Code != 201 {
		t.Errorf("a printable ASCII key of 255 characters: %d %s", r.Code, r.Body)
	}
}

// A path whose text is not UTF-8 once decoded (%FF, an encoded surrogate
// %ED%A0%80) reached Postgres's text columns — the idempotency middleware
// records each write's path with its key — and answered 500 on every
// idempotent write naming an id (PATCH /accounts/{id},
// /transfers/{id}/capture and /void; the same in every function). It is a
// 400 at the door, like a URL holding %00, and nothing is written.
func TestAURLWhoseTextIsNotUTF8IsABadRequest(t *testing.T) {
	e := newEnv(t)
	before := e.rowCounts()
	for _, c := range []struct{ method, path, body string }{
		{"PATCH", "/accounts/%FF", `{"status":"frozen"}`},
		{"POST", "/transfers/x%ED%A0%80/capture", `{}`},
		{"POST", "/transfers/%C3%28/void", ""},
	} {
		var body any
		if c.body != "" {
			body = c.body
		}
		r := e.do(c.method, c.path, e.admin, auth.RoleAdmin, body, "Idempotency-Key", key())
		if r.Code != 400 || r.code() != "bad_request" {
			t.Errorf("%s %s: %d %s, want 400", c.method, c.path, r.Code, r.Body)
		}
	}
	if after := e.rowCounts(); after["idempotency_keys"] != before["idempotency_keys"] || after["accounts"] != before["accounts"] {
		t.Errorf("refused requests wrote rows: %v, then %v", before, after)
	}
}

// POST /transfers/{id}/void read no body: {"amount":500}, as a caller who
// meant to release part of a hold might send, voided all of it (200), and
// a body of any kind, JSON or not, was ignored. A body is now decoded as
// capture's is — strictly, into nothing — so a member is a 400 naming it
// and the hold stays held; an empty body or {} voids, as before.
func TestAVoidRefusesABodyItWouldIgnore(t *testing.T) {
	e := newEnv(t)
	user := uuid.NewString()
	a, b := e.account(user, "USD"), e.account(user, "USD")
	e.fund(a, 1_000)
	h := e.hold(user, a, b, 800)
	for _, body := range []string{`{"amount":500}`, `not json`, `{} {}`} {
		r := e.do("POST", "/transfers/"+h.ID+"/void", user, auth.RoleCustomer, body, "Idempotency-Key", key())
		if r.Code != 400 || r.code() != "bad_request" {
			t.Errorf("void with %s: %d %s, want 400", body, r.Code, r.Body)
		}
	}
	if got := e.get(a.ID); got.Held != 800 {
		t.Fatalf("held %d after refused voids, want 800", got.Held)
	}
	if r := e.do("POST", "/transfers/"+h.ID+"/void", user, auth.RoleCustomer, `{}`, "Idempotency-Key", key()); r.Code != 200 {
		t.Errorf("void with {}: %d %s", r.Code, r.Body)
	}
	h = e.hold(user, a, b, 100)
	if r := e.do("POST", "/transfers/"+h.ID+"/void", user, auth.RoleCustomer, nil, "Idempotency-Key", key()); r.Code != 200 {
		t.Errorf("void without a body: %d %s", r.Code, r.Body)
	}
}
