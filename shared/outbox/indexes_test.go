package outbox_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

// Every outbox row is inserted and deleted once: each index of the table
// costs an entry per event. The primary key (source, id) serves the
// publisher's sweep (one source, in id order) and its delete and update by
// source and ids, so it is the only index.
func TestTheOutboxHasOneIndexThePrimaryKeyOnSourceAndID(t *testing.T) {
	if got := testenv.IndexDefs(t, testenv.Pool(t), "outbox"); len(got) != 1 || got[0] != "outbox_pkey btree (source, id)" {
		t.Fatalf("outbox indexes = %q, want one: the primary key on (source, id)", got)
	}
}

// The publisher's delete of what Kafka acknowledged and its update of what
// it refused find their rows by the primary key's two columns, source and
// ids, not by ids alone (which the (source, id) key cannot look up). The
// plans are those of a database of its own, whose outbox no other test
// has filled, emptied or vacuumed: in the package's shared one the planner
// chose differently the second time round (go test -count=3).
func TestThePublishersWritesFindTheirRowsByTheKey(t *testing.T) {
	pool := testenv.FreshPool(t)
	for name, sql := range map[string]string{"delete": outbox.DeleteSQL, "update": outbox.RefusedSQL} {
		err := postgres.Tx(context.Background(), pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(context.Background(), `SET LOCAL enable_seqscan = off`); err != nil {
				return err
			}
			// Its parameters by type: the ids, and a source (or error) for text.
			desc, err := tx.Conn().Prepare(context.Background(), "", sql)
			if err != nil {
				return err
			}
			var args []any
			for _, oid := range desc.ParamOIDs {
				switch oid {
				case pgtype.Int8ArrayOID:
					args = append(args, []int64{1, 2, 3})
				case pgtype.TextOID:
					args = append(args, "indexes-test")
				default:
					t.Fatalf("%s: a parameter of type %d", name, oid)
				}
			}
			var plan []byte
			if err := tx.QueryRow(context.Background(), `EXPLAIN (FORMAT JSON) `+sql, args...).Scan(&plan); err != nil {
				return err
			}
			var p []struct{ Plan map[string]any }
			if err := json.Unmarshal(plan, &p); err != nil {
				return err
			}
			if len(p) != 1 {
				t.Fatalf("%s: plan %s", name, plan)
			}
			// The index scans of the plan: index name and condition.
			var scans []string
			var walk func(n map[string]any)
			walk = func(n map[string]any) {
				if ix, ok := n["Index Name"].(string); ok {
					cond, _ := n["Index Cond"].(string)
					scans = append(scans, ix+" "+cond)
				}
				subs, _ := n["Plans"].([]any)
				for _, sub := range subs {
					if m, ok := sub.(map[string]any); ok {
						walk(m)
					}
				}
			}
			walk(p[0].Plan)
			if len(scans) != 1 || !strings.HasPrefix(scans[0], "outbox_pkey ") || !strings.Contains(scans[0], "source =") || !strings.Contains(scans[0], "id = ANY") {
				t.Errorf("%s (%s): index scans %q, want one, of outbox_pkey on source and id", name, sql, scans)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
