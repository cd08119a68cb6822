package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The rollup engine's SQL, moved here from package rollup: Ingest appends
// to the log once per event and aggregates, Check replays the log and finds
// it equal to what streaming wrote, Rebuild finds and repairs a rollup
// changed behind its back.
func TestIngestThenCheckAndRebuildAgree(t *testing.T) {
	pool := testenv.Pool(t)
	ctx := context.Background()
	day := time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC)
	var evs []rollup.Event
	for i := range 20 {
		data := fmt.Sprintf(`{"id":"t%d","from_account_id":"0a000000-0000-4000-8000-00000000000a",
			"to_account_id":"0b000000-0000-4000-8000-00000000000b","amount":%d,"currency":"USD","status":"posted","captured_amount":0}`, i, 100+i)
		evs = append(evs, rollup.Event{Source: "/functions/process-transaction", ID: fmt.Sprint("store-test-", i),
			Type: rollup.TransferPosted, Time: day.Add(time.Duration(i) * time.Minute), Data: []byte(data)})
	}
	evs = append(evs, rollup.Event{Source: "/functions/x", ID: "ignored", Type: "billfn.nothing.aggregated", Time: day, Data: []byte(`{}`)})
	ingest := func(evs []rollup.Event) store.Result {
		t.Helper()
		var res store.Result
		err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			var err error
			res, err = store.Ingest(ctx, tx, evs)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := ingest(evs); res.Applied != 20 || res.Ignored != 1 || res.Duplicates != 0 || len(res.Days) != 1 || !res.Days[0].Equal(day) {
		t.Fatalf("first ingest: %+v", res)
	}
	if res := ingest(evs[:5]); res.Applied != 0 || res.Duplicates != 5 {
		t.Fatalf("again: %+v, want 5 duplicates and nothing applied", res)
	}

	r, err := store.FullRange(ctx, pool, day)
	if err != nil || !r.From.Equal(day) || !r.To.Equal(day.AddDate(0, 0, 1)) {
		t.Fatalf("full range %v %v", r, err)
	}
	rep, err := store.Check(ctx, pool, r, 7, nil)
	if err != nil || !rep.Equal() || rep.Events != 20 || rep.Rows == 0 {
		t.Fatalf("check: %+v %v", rep, err)
	}

	// A rollup changed behind streaming's back: Check sees it, Rebuild
	// repairs it and reports what differed.
	if _, err := pool.Exec(ctx, `UPDATE report_rollups SET amount = amount + 1 WHERE grain = 'd' AND bucket = $1`, day); err != nil {
		t.Fatal(err)
	}
	if rep, err := store.Check(ctx, pool, r, 0, nil); err != nil || rep.Equal() {
		t.Fatalf("check after tampering: %+v %v, want a difference", rep, err)
	}
	var progressed int64
	rep, err = store.Rebuild(ctx, pool, r, 0, func(done, _ int64) { progressed = done })
	if err != nil || rep.Equal() || !rep.Rebuilt || progressed != 20 {
		t.Fatalf("rebuild: %+v %v (progress %d)", rep, err, progressed)
	}
	if rep, err := store.Check(ctx, pool, r, 0, nil); err != nil || !rep.Equal() {
		t.Fatalf("check after the rebuild: %+v %v", rep, err)
	}
}
