package events_test

import (
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/testenv"
)

// Every event a consumer handles inserts a processed_events row; each
// index that holds an entry per row (a b-tree) costs one more entry per
// event. The primary key (consumer, source, id) is the dedupe and the only
// such index; processed_at, for a retention delete, is a BRIN index, which
// holds a summary per range of 128 pages, not an entry per row.
func TestProcessedEventsHaveOneEntryPerRowThePrimaryKey(t *testing.T) {
	got := strings.Join(testenv.IndexDefs(t, testenv.Pool(t), "processed_events"), "; ")
	if want := "processed_events_pkey btree (consumer, source, id); processed_events_processed_at_idx brin (processed_at)"; got != want {
		t.Fatalf("processed_events indexes = %s, want %s: the primary key, the only one with an entry per row, and a BRIN index on processed_at", got, want)
	}
}
