package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// newLogRig is newRig's receiver with a LogBatch instead of handlers: the
// table it applies to is also its log, unique by event id, and it applies
// only the events it appends (as aggregate-report's event log does).
func newLogRig(t *testing.T) *rig {
	t.Helper()
	pool := testenv.Pool(t)
	g := &rig{t: t, table: "fx_" + strings.ReplaceAll(uuid.NewString()[:8], "-", ""), consumer: "fn-" + uuid.NewString()[:8]}
	if _, err := pool.Exec(context.Background(), `CREATE TABLE `+g.table+` (event_id text PRIMARY KEY, amount bigint)`); err != nil {
		t.Fatal(err)
	}
	v, _ := auth.NewVerifier(auth.Config{Alg: "HS256", Secret: secret, Issuer: "billfn", Audience: "billfn", MaxLifetime: auth.DefaultMaxLifetimes()})
	g.rc = &events.Receiver{Consumer: g.consumer, Pool: pool, Keys: [][]byte{key}, Verifier: v,
		Tick: func(context.Context) error { g.ticks++; return nil }, TickEvery: time.Hour, SkipOriginCheck: true}
	g.rc.LogBatch = func(ctx context.Context, tx pgx.Tx, evs []events.Event) ([]bool, error) {
		dup := make([]bool, len(evs))
		for i, ev := range evs {
			var p payment
			if err := events.Decode(ev, &p); err != nil {
				return nil, err
			}
			if p.Amount == -1 {
				return nil, events.Permanent(errors.New("poison"))
			}
			tag, err := tx.Exec(ctx, `INSERT INTO `+g.table+` VALUES ($1, $2) ON CONFLICT DO NOTHING`, ev.ID(), p.Amount)
			if err != nil {
				return nil, err
			}
			dup[i] = tag.RowsAffected() == 0
		}
		return dup, nil
	}
	mux := http.NewServeMux()
	mux.Handle("POST /{$}", g.rc)
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

// A LogBatch deduplicates by itself: the receiver counts what it says was
// applied before as duplicates, alone and in batches, parks a poison event
// alone, and writes no processed_events row for any of them.
func TestALogBatchIsItsOwnDedupe(t *testing.T) {
	g := newLogRig(t)
	send := func(evs ...events.Event) events.Result {
		t.Helper()
		b, ct := []byte(nil), events.ContentTypeBatch
		if len(evs) == 1 {
			b, ct = structured(t, evs[0]), events.ContentTypeStructured
		} else {
			b, _ = json.Marshal(evs)
		}
		code, res := g.send(g.signed(b, http.Header{"Content-Type": {ct}}), b)
		if code != 200 {
			t.Fatalf("delivery answered %d", code)
		}
		return res
	}
	good := []events.Event{newEvent(t, 10), newEvent(t, 20), newEvent(t, 30)}
	if res := send(good[0]); res.Processed != 1 {
		t.Fatalf("alone: %+v", res)
	}
	if res := send(good[0]); res.Duplicates != 1 {
		t.Fatalf("alone again: %+v", res)
	}
	if res := send(append(good, good[1])...); res.Processed != 2 || res.Duplicates != 2 {
		t.Fatalf("batch: %+v, want 2 processed and 2 duplicates", res)
	}
	poison := newEvent(t, -1)
	for round := 0; round < 2; round++ {
		// No processed_events row marks the parked event: a redelivery runs
		// it again and parks it again (one dead letter).
		if res := send(newEvent(t, 1), poison, good[2]); res.Processed != 1 || res.Parked != 1 || res.Duplicates != 1 {
			t.Fatalf("round %d, mixed batch: %+v", round, res)
		}
	}
	if n, total := g.sum(); n != 5 || total != 62 {
		t.Fatalf("effects = %d (sum %d), want 5 summing to 62", n, total)
	}
	pool := testenv.Pool(t)
	var processed, parked int
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM processed_events WHERE consumer = $1),
		(SELECT count(*) FROM dead_letters WHERE consumer = $1)`, g.consumer).Scan(&processed, &parked); err != nil {
		t.Fatal(err)
	}
	if processed != 0 || parked != 1 {
		t.Fatalf("%d processed_events rows and %d dead letters, want none and 1", processed, parked)
	}
}

// A LogBatch that answers for fewer events than it was given fails the
// delivery (retried), rather than a guess at which events applied.
func TestALogBatchMustAnswerForEveryEvent(t *testing.T) {
	g := newLogRig(t)
	g.rc.LogBatch = func(context.Context, pgx.Tx, []events.Event) ([]bool, error) { return []bool{false}, nil }
	b, _ := json.Marshal([]events.Event{newEvent(t, 1), newEvent(t, 2)})
	if code, _ := g.send(g.signed(b, http.Header{"Content-Type": {events.ContentTypeBatch}}), b); code < 500 {
		t.Fatalf("a short answer got %d, want a failed (retried) delivery", code)
	}
}
