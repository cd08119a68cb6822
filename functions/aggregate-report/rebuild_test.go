package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/api"
	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/events"
)

func (g *rig) check(from, to string) api.CheckResponse {
	g.t.Helper()
	var c api.CheckResponse
	g.getJSON("/admin/check?from="+from+"&to="+to, asAdmin, &c)
	return c
}

// Streamed rollups equal the ones recomputed from the event log, whatever
// the delivery order, batching and duplicates; a tampered row is found and
// a rebuild puts it right.
func TestRebuildEqualsStreamed(t *testing.T) {
	g := newRig(t)
	w := newWorld(t, 7, 40)
	start := day("2026-02-01")
	evs := w.events(3000, start, 28)
	evs = append(evs, w.unapplied(evs)...)
	g.deliverInBatches(w.shuffled(evs), 250)
	// a few single deliveries too
	for _, ev := range evs[:20] {
		g.deliver(ev)
	}

	c := g.check("2026-02-01", "2026-03-05")
	if !c.Equal || c.Differences != 0 || c.Events < int64(len(evs)) || c.Rows < 1000 {
		t.Fatalf("streamed vs recomputed: %+v", c)
	}
	// A narrower range replays the stateful events of all time but compares
	// only its own days.
	c = g.check("2026-02-10", "2026-02-11")
	if !c.Equal || c.Events >= int64(len(evs)) {
		t.Fatalf("ranged check: %+v", c)
	}

	// Tamper with a rollup, an account rollup, a reconciliation row, an
	// unapplied payment and a state row; the check names them.
	ctx := context.Background()
	for _, q := range []string{
		`UPDATE report_rollups SET amount = amount + 1 WHERE (grain, bucket, currency, metric, dim) IN
			(SELECT grain, bucket, currency, metric, dim FROM report_rollups WHERE grain = 'd' AND metric = 'transfer.posted' LIMIT 1)`,
		`DELETE FROM report_account_rollups WHERE (account_id, day, currency, metric, dim) IN
			(SELECT account_id, day, currency, metric, dim FROM report_account_rollups LIMIT 1)`,
		`DELETE FROM report_recon WHERE (source, event_id) IN (SELECT source, event_id FROM report_recon LIMIT 1)`,
		`UPDATE report_unapplied SET reason = 'tampered' WHERE (source, event_id) IN (SELECT source, event_id FROM report_unapplied LIMIT 1)`,
		`UPDATE report_subscriptions SET mrr = mrr + 5 WHERE subscription_id IN (SELECT subscription_id FROM report_subscriptions LIMIT 1)`,
	} {
		if _, err := g.d.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	c = g.check("2026-02-01", "2026-03-05")
	tables := map[string]bool{}
	for _, d := range c.Samples {
		tables[d.Table] = true
	}
	if c.Equal || c.Differences != 5 || !tables["report_rollups"] || !tables["report_account_rollups"] ||
		!tables["report_recon"] || !tables["report_unapplied"] || !tables["report_subscriptions"] {
		t.Fatalf("tampering not found: %+v", c)
	}

	// Rebuild (admin endpoint), then streamed equals recomputed again and the
	// reports show the true figures.
	var before store.Summary
	g.getJSON("/reports/summary?from=2026-02-01&to=2026-03-05", asAdmin, &before)
	rec := g.request(http.MethodPost, "/admin/rebuild", asAdmin, []byte(`{"from":"2026-02-01","to":"2026-03-05"}`),
		"Content-Type", "application/json")
	var rep rollup.Report
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &rep) != nil || !rep.Rebuilt || rep.Differences != 5 {
		t.Fatalf("rebuild: %d %s", rec.Code, rec.Body)
	}
	if c = g.check("2026-02-01", "2026-03-05"); !c.Equal {
		t.Fatalf("after rebuild: %+v", c)
	}
	var after store.Summary
	g.getJSON("/reports/summary?from=2026-02-01&to=2026-03-05", asAdmin, &after)
	if before.Currencies[0].Transfers.Posted.Amount != after.Currencies[0].Transfers.Posted.Amount+1 {
		t.Fatalf("the cached tampered figure survived the rebuild: %d then %d",
			before.Currencies[0].Transfers.Posted.Amount, after.Currencies[0].Transfers.Posted.Amount)
	}
	// Rebuilding again changes nothing.
	rec = g.request(http.MethodPost, "/admin/rebuild", asAdmin, nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"differences":0`) {
		t.Fatalf("second rebuild: %d %s", rec.Code, rec.Body)
	}
}

// A rebuild that runs while events stream in loses none of them: the write
// phase replays what landed after its snapshot, under the writers' lock.
func TestRebuildWhileEventsStream(t *testing.T) {
	g := newRig(t)
	w := newWorld(t, 11, 20)
	start := day("2026-02-01")
	evs := w.events(4000, start, 10)
	g.deliverInBatches(evs[:2000], 200)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for i := 2000; i < len(evs); i += 100 {
			g.deliver(evs[i:min(i+100, len(evs))]...)
			time.Sleep(time.Millisecond)
		}
	}()
	// Transfer-only batches take the writers' lock shared and run side by side.
	for w := 0; w < 2; w++ {
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				batch := make([]events.Event, 50)
				for j := range batch {
					batch[j] = transfer(t, start.Add(time.Duration(i*50+j)*time.Minute), acctA, acctB, int64(1+j), "USD", "posted")
				}
				g.deliver(batch...)
			}
		}()
	}
	r := rollup.Range{From: start, To: start.AddDate(0, 0, 11)}
	for i := 0; i < 3; i++ {
		if _, err := store.Rebuild(context.Background(), g.d.Pool, r, 300, nil); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if c := g.check("2026-02-01", "2026-02-12"); !c.Equal || c.Events != int64(g.count(`SELECT count(*) FROM report_events`)) {
		t.Fatalf("after rebuilds during streaming: %+v", c)
	}
	var s store.Summary
	g.getJSON("/reports/summary?from=2026-02-01&to=2026-02-12", asAdmin, &s)
	var posted int64
	for _, c := range s.Currencies {
		posted += c.Transfers.Posted.Count
	}
	if want := g.count(`SELECT count(*) FROM report_events WHERE type = 'billfn.transaction.posted'`); posted != want {
		t.Fatalf("summary counts %d posted transfers, the log %d", posted, want)
	}
}
