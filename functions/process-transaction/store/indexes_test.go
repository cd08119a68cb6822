package store_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/testenv"
)

// postings are written twice per posted transfer and read by no query of
// the function: its one index is its primary key led by the account,
// (account_id, id), which is as unique as id alone (an identity) and finds
// an account's lines in order — what the former postings_account_idx was
// for. Two index entries per posting became one: 4 -> 2 per transfer
// (00011). Rows survive the migration both ways.
func TestPostingsHaveOneIndex(t *testing.T) {
	ctx := context.Background()
	m, conn := testenv.Migrator(t)
	if err := m.Up(ctx, io.Discard); err != nil {
		t.Fatalf("up: %v", err)
	}
	if err := m.DownTo(ctx, 10, io.Discard); err != nil {
		t.Fatalf("down to 10: %v", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO postings (transfer_id, account_id, amount, balance_after)
		SELECT gen_random_uuid(), ('00000000-0000-4000-8000-' || lpad((g % 7)::text, 12, '0'))::uuid, g, g
		FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	want := func(when, defs string) {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM postings`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1000 {
			t.Errorf("%s: %d postings, want 1000", when, n)
		}
		if got := strings.Join(testenv.IndexDefs(t, conn, "postings"), "; "); got != defs {
			t.Errorf("%s: postings' indexes\n%s, want\n%s", when, got, defs)
		}
	}
	for range 2 {
		if err := m.Up(ctx, io.Discard); err != nil {
			t.Fatalf("up: %v", err)
		}
		want("after up", "postings_pkey btree (account_id, id)")
		if err := m.DownTo(ctx, 10, io.Discard); err != nil {
			t.Fatalf("down to 10: %v", err)
		}
		want("after down", "postings_account_idx btree (account_id, id); postings_pkey btree (id)")
	}
}
