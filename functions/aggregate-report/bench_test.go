package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/migrations"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

// Benchmarks (the machine is shared with other engineers' builds and tests,
// so figures vary run to run; docs/aggregate-report.md records them):
//
//	go test -run '^$' -bench BenchmarkBatchDelivery -benchtime 40x ./functions/aggregate-report/
//	go test -run '^$' -bench BenchmarkReports -benchtime 200x -timeout 30m ./functions/aggregate-report/

// transferBodies pre-builds batch deliveries of posted transfers between
// nAccounts accounts, as the kafka-trigger sends them. spread is the time
// the events cover: a live stream (events in time order, a few per second
// of business time) or a backfill (random times over days).
func transferBodies(b *testing.B, batches, size, nAccounts int, start time.Time, spread time.Duration) ([][]byte, []string) {
	rng := rand.New(rand.NewPCG(1, 2))
	accts := make([]string, nAccounts)
	for i := range accts {
		accts[i] = uuid.NewString()
	}
	bodies := make([][]byte, batches)
	for i := range bodies {
		evs := make([]events.Event, size)
		for j := range evs {
			at := start.Add(time.Duration(i*size+j) * 50 * time.Millisecond) // live: in order, 50 ms apart
			if spread > 0 {
				at = start.Add(time.Duration(rng.Int64N(int64(spread))))
			}
			evs[j] = transfer(b, at, accts[rng.IntN(nAccounts)], accts[rng.IntN(nAccounts)], 100+rng.Int64N(100_000), "USD", "posted")
			testenv.SignOrigin(&evs[j]) // its producer's origin proof, or the receiver parks it
		}
		body, err := json.Marshal(evs)
		if err != nil {
			b.Fatal(err)
		}
		bodies[i] = body
	}
	return bodies, accts
}

// BenchmarkBatchDelivery measures events aggregated per second through the
// whole path: HTTP, signature, CloudEvents batch parsing, bulk dedupe, the
// event log, in-memory aggregation and bulk upserts, four deliveries in
// flight as the trigger's partitions would have them (BENCH_INFLIGHT
// changes that).
func BenchmarkBatchDelivery(b *testing.B) {
	for _, c := range []struct {
		name   string
		size   int
		spread time.Duration
	}{{"live/batch=100", 100, 0}, {"live/batch=500", 500, 0}, {"live/batch=1000", 1000, 0},
		{"backfill-30d/batch=1000", 1000, 30 * 24 * time.Hour}} {
		size := c.size
		b.Run(c.name, func(b *testing.B) {
			g := newRig(b)
			srv := httptest.NewServer(g.h)
			defer srv.Close()
			bodies, _ := transferBodies(b, b.N, size, 5000, day("2026-02-01"), c.spread)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
			var next atomic.Int64
			var failed atomic.Int64
			b.ResetTimer()
			start := time.Now()
			inflight := 4
			if v, err := strconv.Atoi(os.Getenv("BENCH_INFLIGHT")); err == nil && v > 0 {
				inflight = v
			}
			var wg sync.WaitGroup
			for w := 0; w < inflight; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= len(bodies) {
							return
						}
						req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", bytes.NewReader(bodies[i]))
						req.Header.Set("Content-Type", events.ContentTypeBatch)
						req.Header.Set(events.SignatureHeader, g.kit.SignEvent(bodies[i]))
						resp, err := client.Do(req)
						if err != nil || resp.StatusCode != 200 {
							failed.Add(1)
						}
						if resp != nil {
							resp.Body.Close()
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d deliveries failed", failed.Load())
			}
			n := g.count(`SELECT sum(count) FROM report_rollups WHERE grain = 'd' AND metric = 'transfer.posted'`)
			if n != int64(b.N*size) {
				b.Fatalf("aggregated %d events, delivered %d", n, b.N*size)
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
		})
	}
}

// seedMillion writes 1,000,000 posted transfers (10,000 accounts, 90 days,
// a tenth in EUR) plus payments, refunds, invoices and subscriptions
// through the function's bulk path, rollup.Ingest, in batches of 5,000.
func seedMillion(b *testing.B, g *rig) (accounts, users []string) {
	const transfers, nAccounts, days = 1_000_000, 10_000, 90
	start := day("2026-01-01")
	rng := rand.New(rand.NewPCG(3, 4))
	accounts = make([]string, nAccounts)
	users = make([]string, nAccounts/4)
	for i := range users {
		users[i] = uuid.NewString()
	}
	for i := range accounts {
		accounts[i] = uuid.NewString()
	}
	ctx := context.Background()
	seq := 0
	mk := func(typ string, at time.Time, data string) rollup.Event {
		seq++
		return rollup.Event{Source: "/functions/bench", ID: strconv.Itoa(seq), Type: typ, Time: rollup.Micro(at), Data: []byte(data)}
	}
	flush := func(evs []rollup.Event) {
		err := pgx.BeginTxFunc(ctx, g.d.Pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
			_, err := store.Ingest(ctx, tx, evs)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	began := time.Now()
	var batch []rollup.Event
	for i, a := range accounts {
		batch = append(batch, mk(rollup.AccountCreated, start, fmt.Sprintf(`{"id":%q,"user_id":%q,"number":"ACC-%05d","currency":"USD"}`, a, users[i%len(users)], i)))
	}
	flush(batch)
	batch = batch[:0]
	posted := 0
	for posted < transfers {
		at := start.Add(time.Duration(rng.Int64N(int64(days * 24 * time.Hour))))
		from, to := accounts[rng.IntN(nAccounts)], accounts[rng.IntN(nAccounts)]
		cur := "USD"
		if rng.IntN(10) == 0 {
			cur = "EUR"
		}
		switch k := rng.IntN(100); {
		case k < 2: // a payment captured and posted (one in 200 never posted)
			p := uuid.NewString()
			gw := []string{"stripe", "sandbox"}[rng.IntN(2)]
			amount := 500 + rng.Int64N(50_000)
			batch = append(batch, mk(rollup.PaymentCaptured, at, fmt.Sprintf(`{"payment_id":%q,"account_id":%q,"amount":%d,"amount_captured":%d,"currency":"USD","gateway":%q}`, p, from, amount, amount, gw)))
			if rng.IntN(200) != 0 {
				batch = append(batch, mk(rollup.TransferPosted, at.Add(time.Second), fmt.Sprintf(`{"id":%q,"from_account_id":%q,"to_account_id":%q,"amount":%d,"currency":"USD","status":"posted","metadata":{"kind":"payment_capture","payment_id":%q,"gateway":%q}}`, uuid.NewString(), to, from, amount, p, gw)))
				posted++
			}
		case k < 3:
			batch = append(batch, mk(rollup.PaymentFailed, at, fmt.Sprintf(`{"payment_id":%q,"account_id":%q,"amount":900,"currency":"USD","gateway":"stripe","decline_code":"card_declined"}`, uuid.NewString(), from)))
		case k < 4:
			inv := uuid.NewString()
			batch = append(batch, mk(rollup.InvoiceFinalized, at, fmt.Sprintf(`{"invoice_id":%q,"account_id":%q,"currency":"USD","total":12000,"amount_due":12000,"status":"open","due_date":%q}`, inv, from, at.AddDate(0, 0, 30).Format(time.DateOnly))))
			if rng.IntN(2) == 0 {
				batch = append(batch, mk(rollup.InvoicePaid, at.Add(72*time.Hour), fmt.Sprintf(`{"invoice_id":%q,"account_id":%q,"currency":"USD","total":12000,"amount_due":0,"amount_paid":12000,"status":"paid"}`, inv, from)))
			}
		case k < 5:
			batch = append(batch, mk(rollup.SubscriptionCreated, at, fmt.Sprintf(`{"subscription_id":%q,"account_id":%q,"status":"active","mrr":%d,"currency":"USD"}`, uuid.NewString(), from, 900+rng.Int64N(9000))))
		default:
			batch = append(batch, mk(rollup.TransferPosted, at, fmt.Sprintf(`{"id":%q,"from_account_id":%q,"to_account_id":%q,"amount":%d,"currency":%q,"status":"posted"}`, uuid.NewString(), from, to, 100+rng.Int64N(100_000), cur)))
			posted++
		}
		if len(batch) >= 5000 {
			flush(batch)
			batch = batch[:0]
		}
	}
	flush(batch)
	if _, err := g.d.Pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d posted transfers (%d events) through rollup.Ingest in %s (%.0f events/s)",
		posted, seq, time.Since(began).Round(time.Second), float64(seq)/time.Since(began).Seconds())
	return accounts, users
}

// BenchmarkReports measures report latency over 1,000,000 posted transfers,
// through the whole HTTP stack (JWT, handler, cache, Postgres): "cached" is
// a repeated request served from Redis, "uncached" empties the report cache
// before each request, so the report is computed from the rollups.
//
// AR_BENCH_DATABASE=<name> keeps the seeded database (created and migrated
// when missing, seeded when empty) for the next run and for a look with
// psql; by default a fresh one is seeded and dropped.
func BenchmarkReports(b *testing.B) {
	var g *rig
	if name := os.Getenv("AR_BENCH_DATABASE"); name != "" {
		url, err := postgres.ReplaceDatabase(testenv.PostgresURL(), name)
		if err != nil {
			b.Fatal(err)
		}
		if err := postgres.EnsureDatabase(context.Background(), url); err != nil {
			b.Fatal(err)
		}
		m, err := migrations.NewMigrator(url)
		if err != nil {
			b.Fatal(err)
		}
		err = m.Up(context.Background(), io.Discard)
		m.Close()
		if err != nil {
			b.Fatal(err)
		}
		g = rigOn(b, url)
	} else {
		g = newRig(b)
	}
	g.setNow(at("2026-04-01T09:00:00Z"))
	var owner string
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT user_id::text FROM report_accounts LIMIT 1`).Scan(&owner); err != nil {
		_, users := seedMillion(b, g)
		owner = users[0]
	}
	// The tick folds closed weeks every minute; do what it would have done
	// (but write no snapshots: "uncached" below means computed from rollups).
	for {
		n, err := g.svc.Store.CompactWeeks(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	reports := []struct {
		name string
		path string
		who  caller
	}{
		{"summary-30d", "/reports/summary?from=2026-03-01&to=2026-03-31", asAdmin},
		{"summary-90d-hours", "/reports/summary?from=2026-01-01T00:00:00Z&to=2026-03-31T06:00:00Z", asAdmin},
		{"summary-customer-90d", "/reports/summary?from=2026-01-01&to=2026-04-01", asCustomer(owner)},
		{"timeseries-day-90d", "/reports/timeseries?metric=transfer.posted&granularity=day&from=2026-01-01&to=2026-04-01", asAdmin},
		{"timeseries-hour-7d", "/reports/timeseries?metric=transfer.posted&granularity=hour&from=2026-03-24&to=2026-03-31&currency=USD", asAdmin},
		{"aging", "/reports/aging?as_of=2026-03-31", asAdmin},
		{"mrr", "/reports/mrr?month=2026-03", asAdmin},
		{"reconciliation-day", "/reports/reconciliation?date=2026-03-15", asAdmin},
		{"top-accounts-30d", "/reports/top-accounts?currency=USD&from=2026-03-01&to=2026-03-31&limit=10", asAdmin},
		{"top-accounts-90d", "/reports/top-accounts?currency=USD&from=2026-01-01&to=2026-04-01&limit=10", asAdmin},
		{"summary-csv-30d", "/reports/summary.csv?from=2026-03-01&to=2026-03-31", asAdmin},
		{"dashboard-panels-30d", "/dashboard/panels?from=2026-03-01&to=2026-03-30&currency=USD", asAdmin},
	}
	tokens := map[caller]string{}
	for _, r := range reports {
		if _, ok := tokens[r.who]; !ok {
			tokens[r.who] = g.kit.Token(b, r.who.sub, r.who.role)
		}
	}
	request := func(path string, who caller) time.Duration {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer "+tokens[who])
		rec := httptest.NewRecorder()
		began := time.Now()
		g.h.ServeHTTP(rec, req)
		d := time.Since(began)
		if rec.Code != 200 {
			b.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
		}
		return d
	}
	flushCache := func() {
		ctx := context.Background()
		keys, err := g.d.Redis.Keys(ctx, g.d.Config.Redis.Prefix+"aggregate-report:reports:*").Result()
		if err != nil {
			b.Fatal(err)
		}
		if len(keys) > 0 {
			g.d.Redis.Del(ctx, keys...)
		}
	}
	report := func(b *testing.B, ds []time.Duration) {
		slices.Sort(ds)
		q := func(p float64) float64 {
			return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Microseconds()) / 1000
		}
		b.ReportMetric(q(0.50), "p50-ms")
		b.ReportMetric(q(0.99), "p99-ms")
		b.ReportMetric(float64(ds[len(ds)-1].Microseconds())/1000, "max-ms")
	}
	for _, r := range reports {
		b.Run(r.name+"/uncached", func(b *testing.B) {
			ds := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				flushCache()
				b.StartTimer()
				ds = append(ds, request(r.path, r.who))
			}
			report(b, ds)
		})
		b.Run(r.name+"/cached", func(b *testing.B) {
			request(r.path, r.who)
			ds := make([]time.Duration, 0, b.N)
			for i := 0; i < b.N; i++ {
				ds = append(ds, request(r.path, r.who))
			}
			report(b, ds)
		})
	}
}
