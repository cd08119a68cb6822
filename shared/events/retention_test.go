package events_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

const retention = 100 * 24 * time.Hour

// newRetentionRig is newRig's receiver keeping its processed_events rows
// for retention, on a test clock that stands still until the test moves
// it, with ticks allowed every second.
func newRetentionRig(t *testing.T) (*rig, *testenv.Clock) {
	g := newRig(t, false)
	clock := testenv.NewClock(time.Now())
	g.rc.Now, g.rc.TickEvery, g.rc.ProcessedRetention = clock.Now, time.Second, retention
	return g, clock
}

// tick sends a schedule tick signed at the receiver's time and returns its
// status.
func (g *rig) tick(clock *testenv.Clock) int {
	g.t.Helper()
	h := http.Header{"X-Connector": {"cron-connector"}, "X-Topic": {"cron-function"},
		events.SignatureHeader: {events.SignDelivery(key, clock.Now(), g.consumer, nil)}}
	code, res := g.send(h, nil)
	if !res.Tick && code == 200 {
		g.t.Fatalf("tick answered %d %+v", code, res)
	}
	return code
}

// processedAt inserts n processed_events rows of consumer processed at at.
func processedAt(t *testing.T, pool *pgxpool.Pool, consumer string, n int, at time.Time) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `INSERT INTO processed_events (consumer, source, id, processed_at)
		SELECT $1, '/functions/test', gen_random_uuid()::text, $3 FROM generate_series(1, $2)`, consumer, n, at); err != nil {
		t.Fatal(err)
	}
}

// countProcessed counts consumer's processed_events rows processed before
// (or, with !before, at or after) at.
func countProcessed(t *testing.T, pool *pgxpool.Pool, consumer string, at time.Time, before bool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*)::int FROM processed_events
		WHERE consumer = $1 AND (processed_at < $2) = $3`, consumer, at, before).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A schedule tick deletes the consumer's processed_events rows older than
// ProcessedRetention, however many (more than one batch here), and only
// those: its recent rows and another consumer's old ones stay.
func TestTicksDeleteTheConsumersProcessedEventsOlderThanTheRetention(t *testing.T) {
	g, clock := newRetentionRig(t)
	pool := testenv.Pool(t)
	cutoff := clock.Now().Add(-retention)
	other := g.consumer + "-other"
	processedAt(t, pool, g.consumer, 5001, cutoff.Add(-time.Hour))
	processedAt(t, pool, g.consumer, 3, cutoff.Add(time.Hour))
	processedAt(t, pool, other, 2, cutoff.Add(-time.Hour))

	if code := g.tick(clock); code != 200 || g.ticks != 1 {
		t.Fatalf("tick: %d, ticks=%d; want 200 and the function's tick run", code, g.ticks)
	}
	if old, recent := countProcessed(t, pool, g.consumer, cutoff, true), countProcessed(t, pool, g.consumer, cutoff, false); old != 0 || recent != 3 {
		t.Fatalf("after the tick the consumer holds %d rows older than the retention and %d newer; want 0 and 3", old, recent)
	}
	if n := countProcessed(t, pool, other, cutoff, true); n != 2 {
		t.Fatalf("another consumer's old rows: %d left, want its 2", n)
	}
}

// Deleting runs at most once per PruneEvery in a process, not at every
// tick: a tick right after one that deleted deletes nothing, the first
// tick PruneEvery later does.
func TestProcessedEventsArePrunedAtMostOncePerInterval(t *testing.T) {
	g, clock := newRetentionRig(t)
	pool := testenv.Pool(t)
	if code := g.tick(clock); code != 200 {
		t.Fatalf("first tick: %d", code)
	}
	processedAt(t, pool, g.consumer, 1, clock.Now().Add(-retention-time.Hour))
	clock.Advance(2 * time.Second)
	if code := g.tick(clock); code != 200 || g.ticks != 2 {
		t.Fatalf("second tick: %d, ticks=%d; want 200 and the function's tick run", code, g.ticks)
	}
	if n := countProcessed(t, pool, g.consumer, clock.Now().Add(-retention), true); n != 1 {
		t.Fatalf("a tick %v after a deletion deleted again: %d old rows left, want 1", 2*time.Second, n)
	}
	clock.Advance(events.PruneEvery)
	if code := g.tick(clock); code != 200 || g.ticks != 3 {
		t.Fatalf("tick after PruneEvery: %d, ticks=%d", code, g.ticks)
	}
	if n := countProcessed(t, pool, g.consumer, clock.Now().Add(-retention), true); n != 0 {
		t.Fatalf("the first tick PruneEvery later left %d old rows, want 0", n)
	}
}

// The dedupe holds for the whole retention: an event redelivered just
// before its row's retention ends, after ticks have pruned, is still a
// duplicate.
func TestAnEventRedeliveredWithinTheRetentionIsADuplicate(t *testing.T) {
	g, clock := newRetentionRig(t)
	ev := newEvent(t, 5)
	if res, err := g.rc.Deliver(context.Background(), []events.Event{ev}); err != nil || res.Processed != 1 {
		t.Fatalf("first delivery: %+v %v", res, err)
	}
	clock.Advance(retention - time.Minute)
	if code := g.tick(clock); code != 200 {
		t.Fatalf("tick: %d", code)
	}
	if res, err := g.rc.Deliver(context.Background(), []events.Event{ev}); err != nil || res.Duplicates != 1 {
		t.Fatalf("redelivery within the retention: %+v %v, want a duplicate", res, err)
	}
	if n, total := g.sum(); n != 1 || total != 5 {
		t.Fatalf("applied %d times (total %d), want once", n, total)
	}
}

// A zero ProcessedRetention keeps the rows forever.
func TestZeroRetentionKeepsProcessedEvents(t *testing.T) {
	g, clock := newRetentionRig(t)
	g.rc.ProcessedRetention = 0
	pool := testenv.Pool(t)
	processedAt(t, pool, g.consumer, 1, clock.Now().Add(-10*retention))
	if code := g.tick(clock); code != 200 {
		t.Fatalf("tick: %d", code)
	}
	if n := countProcessed(t, pool, g.consumer, clock.Now(), true); n != 1 {
		t.Fatalf("with no retention a tick left %d rows, want 1", n)
	}
}

// A failed deletion does not keep the function's tick from running: the
// tick runs, and the delivery answers 503 like a failed tick, so it is
// retried.
func TestAFailedPruneDoesNotBlockTheTick(t *testing.T) {
	g, clock := newRetentionRig(t)
	closed, err := pgxpool.New(context.Background(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	g.rc.Pool = closed
	if code := g.tick(clock); code != 503 || g.ticks != 1 {
		t.Fatalf("tick with the database unreachable: %d, ticks=%d; want 503 and the function's tick run", code, g.ticks)
	}
}

// brinRig is a retention rig on a database of its own, whose
// processed_events holds 20,000 rows older than the retention (two 128-page
// ranges of processed_at's BRIN index and a part) and, after them, 2,000
// newer ones (so vacuum cannot truncate the table), summarized; vacuum runs
// only when the test says (and no autoanalyze holds back the horizon).
func brinRig(t *testing.T) (*rig, *testenv.Clock, *pgxpool.Pool) {
	g, clock := newRetentionRig(t)
	pool := testenv.FreshPool(t)
	g.rc.Pool = pool
	mustExec(t, pool, `ALTER TABLE processed_events SET (autovacuum_enabled = off)`)
	cutoff := clock.Now().Add(-retention)
	processedAt(t, pool, g.consumer, 20000, cutoff.Add(-time.Hour))
	processedAt(t, pool, g.consumer, 2000, cutoff.Add(time.Hour))
	mustExec(t, pool, `VACUUM processed_events`)
	return g, clock, pool
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
}

// vacuumedPlan vacuums processed_events, summarizes the last range too
// (which vacuum leaves to a later run while it fills), and returns the plan
// of a bitmap scan for the rows older than the retention.
func vacuumedPlan(t *testing.T, pool *pgxpool.Pool, clock *testenv.Clock) string {
	t.Helper()
	mustExec(t, pool, `VACUUM processed_events`)
	mustExec(t, pool, `SELECT brin_summarize_new_values('processed_events_processed_at_idx')`)
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(context.Background(), `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(context.Background(), `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
		SELECT ctid FROM processed_events WHERE processed_at < $1`, clock.Now().Add(-retention))
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Join(plan, "\n")
	if !strings.Contains(p, "Bitmap Index Scan on processed_events_processed_at_idx") {
		t.Fatalf("the scan does not use the BRIN index:\n%s", p)
	}
	return p
}

// The ranges of processed_at's BRIN index a prune emptied are summarized
// again, from the rows left, by the next vacuum, so the pages it frees
// for new rows do not keep matching every later cutoff: a range's summary
// only widens, and without this every range would match once its first rows
// had expired, each run rereading the whole table. Here, after a tick
// deleted every old row and a vacuum ran, the old rows' cutoff reads no heap
// block.
func TestPrunedRangesOfTheBRINIndexAreSummarizedAgainByVacuum(t *testing.T) {
	g, clock, pool := brinRig(t)
	if code := g.tick(clock); code != 200 {
		t.Fatalf("tick: %d", code)
	}
	if p := vacuumedPlan(t, pool, clock); strings.Contains(p, "Heap Blocks") {
		t.Fatalf("after the prune and a vacuum the old rows' cutoff still reads heap blocks:\n%s", p)
	}
}

// Desummarizing takes the lock a vacuum holds: while one runs, the prune
// does not wait for it (a waiter would cancel autovacuum), and the next run
// desummarizes the ranges.
func TestRangesLockedByAVacuumAreDesummarizedAtTheNextRun(t *testing.T) {
	g, clock, pool := brinRig(t)
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), `LOCK TABLE processed_events IN SHARE UPDATE EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if code := g.tick(clock); code != 200 {
		t.Fatalf("tick while the table is locked: %d", code)
	}
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := vacuumedPlan(t, pool, clock); !strings.Contains(p, "Heap Blocks") {
		t.Fatalf("the locked ranges were desummarized anyway:\n%s", p)
	}
	clock.Advance(events.PruneEvery)
	if code := g.tick(clock); code != 200 {
		t.Fatalf("next tick: %d", code)
	}
	if p := vacuumedPlan(t, pool, clock); strings.Contains(p, "Heap Blocks") {
		t.Fatalf("the next run did not desummarize the ranges the lock kept:\n%s", p)
	}
}
