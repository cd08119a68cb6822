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
	// extremes of numeric.
	for _, md := range []string{`{"smile":"\ud83d\ude00"}`, `{"path":"\\ud800"}`, `{"n":[9e131071,1e-16383,0e200000,-0]}`} {
		if r := e.do("POST", "/transfers", user, auth.RoleCustomer, transfer(md), "Idempotency-Key", key()); r.Code != 201 {
			t.Errorf("metadata %s: %d %s", md, r.Code, r.Body)
		}
	}
}
