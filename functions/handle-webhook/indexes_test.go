package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/testenv"
)

// Each stored webhook adds an entry to every full index of webhook_events:
// the primary key, the dedupe key and the admin's list by type, no more
// (migration 00044: the lists by gateway and by status were two entries
// more per webhook, issue 20). The list by a rare status (parked, ignored)
// reads its partial index, which a processed row never enters.
func TestAStoredWebhookEntersThreeFullIndexes(t *testing.T) {
	var full []string
	for _, def := range testenv.IndexDefs(t, newRig(t).d.Pool, "webhook_events") {
		if !strings.Contains(def, " WHERE ") {
			full = append(full, strings.Fields(def)[0])
		}
	}
	if got := strings.Join(full, ", "); got != "webhook_events_gateway_gateway_event_id_key, webhook_events_pkey, webhook_events_type_idx" {
		t.Fatalf("webhook_events' full indexes: %s", got)
	}
	// The list's own statement, as the route runs it, explained.
	g, trips := newReplica(t)
	n0, _ := trips.Count()
	if rec := g.admin_("GET", "/events?status=parked&limit=20", nil, auth.RoleAdmin, ""); rec.Code != 200 {
		t.Fatalf("GET /events?status=parked: %d %s", rec.Code, rec.Body)
	}
	_, sqls := trips.Count()
	var list string
	for _, sql := range sqls[n0:] {
		if strings.Contains(sql, "FROM webhook_events") {
			list = sql
		}
	}
	// Its generic plan too (pgx prepares it; PostgreSQL plans it once for
	// every status after a few runs).
	conn, err := g.d.Pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(context.Background(), "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), "RESET plan_cache_mode") }()
	if _, err := conn.Exec(context.Background(), "PREPARE parked_list AS "+list); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), "DEALLOCATE parked_list") }()
	rows, err := conn.Query(context.Background(), "EXPLAIN EXECUTE parked_list('parked', 21)")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(plan, "\n"); !strings.Contains(p, "webhook_events_unprocessed_idx") {
		t.Fatalf("the list of parked deliveries does not read the partial index:\n%s\n%s", list, p)
	}
}
