package migrations_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/testenv"
)

// The platform's index migrations (00006: the outbox keyed by (source,
// id); 00007: processed_events' processed_at a BRIN index) go up and down
// on tables holding rows, and keep them.
func TestPlatformIndexMigrationsKeepTheRows(t *testing.T) {
	ctx := context.Background()
	m, conn := testenv.Migrator(t)
	if err := m.Up(ctx, io.Discard); err != nil {
		t.Fatalf("up: %v", err)
	}
	if err := m.DownTo(ctx, 5, io.Discard); err != nil {
		t.Fatalf("down to 5: %v", err)
	}
	if _, err := conn.Exec(ctx, `
		INSERT INTO outbox (source, event_id, topic, key, payload)
			SELECT 'fn-' || (g % 3), 'ev-' || g, 'billfn.t', 'k', '{}' FROM generate_series(1, 1000) g;
		INSERT INTO processed_events (consumer, source, id, processed_at)
			SELECT 'fn-' || (g % 3), 'src', 'ev-' || g, now() - g * interval '1 second' FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	rows := func(when string) {
		t.Helper()
		var outbox, processed int
		if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM processed_events)`).Scan(&outbox, &processed); err != nil {
			t.Fatal(err)
		}
		if outbox != 1000 || processed != 1000 {
			t.Fatalf("%s: %d outbox and %d processed_events rows, want 1000 of each", when, outbox, processed)
		}
	}
	want := func(when, table string, defs ...string) {
		t.Helper()
		if got := testenv.IndexDefs(t, conn, table); strings.Join(got, "; ") != strings.Join(defs, "; ") {
			t.Errorf("%s: %s's indexes %q, want %q", when, table, got, defs)
		}
	}
	for i := 0; i < 2; i++ {
		if err := m.Up(ctx, io.Discard); err != nil {
			t.Fatalf("up: %v", err)
		}
		rows("after up")
		want("after up", "outbox", "outbox_pkey btree (source, id)")
		want("after up", "processed_events", "processed_events_pkey btree (consumer, source, id)", "processed_events_processed_at_idx brin (processed_at)")
		if err := m.DownTo(ctx, 5, io.Discard); err != nil {
			t.Fatalf("down to 5: %v", err)
		}
		rows("after down")
		want("after down", "outbox", "outbox_pkey btree (id)", "outbox_source_idx btree (source, id)")
		want("after down", "processed_events", "processed_events_pkey btree (consumer, source, id)", "processed_events_processed_at_idx btree (processed_at)")
	}
}
