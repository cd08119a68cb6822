package events_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/testenv"
)

// Every event a consumer handles inserts a processed_events row; each
// index that holds an entry per row (a b-tree) costs one more entry per
// event. The primary key (consumer, source, id) is the dedupe and the only
// such index; processed_at, for a retention delete, is a BRIN index, which
// holds a summary per range of 128 pages, not an entry per row.
func TestProcessedEventsHaveOneEntryPerRowThePrimaryKey(t *testing.T) {
	rows, err := testenv.Pool(t).Query(context.Background(), `
		SELECT a.amname, i.indisprimary, pg_get_indexdef(i.indexrelid)
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
		WHERE i.indrelid = 'processed_events'::regclass ORDER BY c.relname`)
	if err != nil {
		t.Fatal(err)
	}
	type index struct {
		method  string
		primary bool
		def     string
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (index, error) {
		var ix index
		return ix, r.Scan(&ix.method, &ix.primary, &ix.def)
	})
	if err != nil {
		t.Fatal(err)
	}
	perRow, dedupe, processedAt := 0, false, false
	for _, ix := range got {
		if ix.method != "brin" {
			perRow++
		}
		dedupe = dedupe || ix.primary && ix.method == "btree" && ix.def == "CREATE UNIQUE INDEX processed_events_pkey ON public.processed_events USING btree (consumer, source, id)"
		processedAt = processedAt || ix.method == "brin" && ix.def == "CREATE INDEX processed_events_processed_at_idx ON public.processed_events USING brin (processed_at)"
	}
	if perRow != 1 || !dedupe || !processedAt {
		t.Fatalf("processed_events indexes = %+v, want the primary key (consumer, source, id), the only one with an entry per row, and a BRIN index on processed_at", got)
	}
}
