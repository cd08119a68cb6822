package events_test

import (
	"context"
	"net/http"
	"testing"
	"time"

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
		events.SignatureHeader: {events.Sign(key, clock.Now(), nil)}}
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
