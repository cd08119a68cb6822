package store_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/testenv"
)

// A posted transfer is its own double entry: postings is a view giving one
// debit and one credit per transfer that moved money (posted: its amount;
// a captured hold: the amount captured), with each side's balance after
// (00012). Final transfers can no longer change and none is deleted, so a
// posting stays as it was. The migration stores the postings again on the
// way down and checks them on the way up: it refuses to drop a stored
// posting the view would not give back.
func TestPostingsAreAViewOfTheTransfers(t *testing.T) {
	ctx := context.Background()
	m, conn := testenv.Migrator(t)
	if err := m.Up(ctx, io.Discard); err != nil {
		t.Fatalf("up: %v", err)
	}
	const a, b = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
	if _, err := conn.Exec(ctx, `INSERT INTO transfers (id, from_account_id, to_account_id, amount, currency, status, reject_reason,
			pending, captured_amount, from_balance, to_balance, idem_scope, idem_key, request_hash, posted_at)
		VALUES ('00000000-0000-7000-8000-000000000001', $1, $2, 100, 'USD', 'posted', NULL, false, 0, -100, 100, 's', '1', '\x00', now()),
		       ('00000000-0000-7000-8000-000000000002', $1, $2, 500, 'USD', 'captured', NULL, true, 300, -400, 400, 's', '2', '\x00', now()),
		       ('00000000-0000-7000-8000-000000000003', $1, $2, 700, 'USD', 'held', NULL, true, 0, -400, 400, 's', '3', '\x00', NULL),
		       ('00000000-0000-7000-8000-000000000004', $1, $2, 900, 'USD', 'rejected', 'insufficient_funds', false, 0, NULL, NULL, 's', '4', '\x00', NULL),
		       ('00000000-0000-7000-8000-000000000005', $1, $2, 800, 'USD', 'voided', NULL, true, 0, -400, 400, 's', '5', '\x00', NULL)`, a, b); err != nil {
		t.Fatal(err)
	}
	const want = "1 a -100 -100; 1 b 100 100; 2 a -300 -400; 2 b 300 400"
	postings := func(when string) {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT right(transfer_id::text, 1) || ' ' || right(account_id::text, 1) || ' ' || amount || ' ' || balance_after
			FROM postings WHERE created_at IS NOT NULL ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if g := strings.Join(got, "; "); g != want {
			t.Errorf("%s: postings\n%s, want\n%s", when, g, want)
		}
	}
	postings("the view")

	// Final transfers stay as they are; an open hold still resolves.
	for _, q := range []string{
		`UPDATE transfers SET amount = 1 WHERE id = '00000000-0000-7000-8000-000000000001'`,
		`UPDATE transfers SET captured_amount = 1 WHERE id = '00000000-0000-7000-8000-000000000002'`,
		`UPDATE transfers SET status = 'posted', reject_reason = NULL WHERE id = '00000000-0000-7000-8000-000000000004'`,
		`DELETE FROM transfers WHERE id = '00000000-0000-7000-8000-000000000005'`,
	} {
		if _, err := conn.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "correct a mistake with a new transfer") {
			t.Errorf("%s: %v, want it refused", q, err)
		}
	}
	if _, err := conn.Exec(ctx, `UPDATE transfers SET status = 'voided' WHERE id = '00000000-0000-7000-8000-000000000003'`); err != nil {
		t.Errorf("an open hold no longer resolves: %v", err)
	}

	for range 2 {
		if err := m.DownTo(ctx, 11, io.Discard); err != nil {
			t.Fatalf("down to 11: %v", err)
		}
		postings("stored again")
		if got := strings.Join(testenv.IndexDefs(t, conn, "postings"), "; "); got != "postings_pkey btree (account_id, id)" {
			t.Errorf("stored postings' indexes: %s", got)
		}
		// And 00011's way down, to the table's first two indexes.
		if err := m.DownTo(ctx, 10, io.Discard); err != nil {
			t.Fatalf("down to 10: %v", err)
		}
		postings("down to 10")
		if got := strings.Join(testenv.IndexDefs(t, conn, "postings"), "; "); got != "postings_account_idx btree (account_id, id); postings_pkey btree (id)" {
			t.Errorf("postings' indexes at 10: %s", got)
		}
		if err := m.Up(ctx, io.Discard); err != nil {
			t.Fatalf("up: %v", err)
		}
		postings("the view again")
	}

	// A stored posting the view would not give back stops the migration,
	// which changes nothing.
	if err := m.DownTo(ctx, 11, io.Discard); err != nil {
		t.Fatalf("down to 11: %v", err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO postings (transfer_id, account_id, amount, balance_after)
		VALUES ('00000000-0000-7000-8000-000000000009', $1, -5, -5)`, a); err != nil {
		t.Fatal(err)
	}
	if err := m.Up(ctx, io.Discard); err == nil || !strings.Contains(err.Error(), "1 postings differ from the transfers") {
		t.Errorf("up with a posting without its transfer: %v, want it refused", err)
	}
	var kind string
	if err := conn.QueryRow(ctx, `SELECT relkind::text FROM pg_class WHERE relname = 'postings'`).Scan(&kind); err != nil || kind != "r" {
		t.Errorf("postings after the refused migration: relkind %q (%v), want the table (r)", kind, err)
	}
}

// The ledger's rows are never deleted, and TRUNCATE deletes without firing
// a DELETE trigger: accounts and transfers refuse it too (00013), the
// CASCADE from accounts included, and keep their rows.
func TestTheLedgerIsNeverTruncated(t *testing.T) {
	ctx := context.Background()
	m, conn := testenv.Migrator(t)
	if err := m.Up(ctx, io.Discard); err != nil {
		t.Fatalf("up: %v", err)
	}
	const a, b = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
	if _, err := conn.Exec(ctx, `INSERT INTO accounts (id, user_id, account_number, currency, balance, allow_negative)
		VALUES ($1, $1, 'ACC-A', 'USD', -100, true), ($2, $2, 'ACC-B', 'USD', 100, false)`, a, b); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO transfers (id, from_account_id, to_account_id, amount, currency, status,
			pending, captured_amount, from_balance, to_balance, idem_scope, idem_key, request_hash, posted_at)
		VALUES ('00000000-0000-7000-8000-000000000001', $1, $2, 100, 'USD', 'posted', false, 0, -100, 100, 's', '1', '\x00', now())`, a, b); err != nil {
		t.Fatal(err)
	}
	for q, refusal := range map[string]string{
		`TRUNCATE transfers`:           "transfers are never deleted",
		`TRUNCATE accounts CASCADE`:    "accounts are never deleted",
		`TRUNCATE accounts, transfers`: "never deleted",
		`TRUNCATE transfers, accounts`: "never deleted",
		`DELETE FROM accounts`:         "accounts are never deleted",
		`DELETE FROM transfers`:        "transfers are never deleted",
	} {
		if _, err := conn.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), refusal) {
			t.Errorf("%s: %v, want it refused (%q)", q, err, refusal)
		}
	}
	var accounts, transfers int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM transfers)`).Scan(&accounts, &transfers); err != nil {
		t.Fatal(err)
	}
	if accounts != 2 || transfers != 1 {
		t.Errorf("after the refusals: %d accounts, %d transfers, want 2 and 1", accounts, transfers)
	}

	// Down to 12 TRUNCATE goes through again (and Up refuses it anew).
	if err := m.DownTo(ctx, 12, io.Discard); err != nil {
		t.Fatalf("down to 12: %v", err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM transfers`); err == nil || !strings.Contains(err.Error(), "transfers are never deleted") {
		t.Errorf("DELETE after down to 12: %v, want 00012's refusal", err)
	}
	if _, err := conn.Exec(ctx, `TRUNCATE transfers`); err != nil {
		t.Errorf("TRUNCATE after down to 12: %v", err)
	}
	if err := m.Up(ctx, io.Discard); err != nil {
		t.Fatalf("up: %v", err)
	}
	if _, err := conn.Exec(ctx, `TRUNCATE transfers`); err == nil {
		t.Error("TRUNCATE after up again: accepted")
	}
}
