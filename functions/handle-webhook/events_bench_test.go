package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
)

// BenchmarkPaymentEvents: what a sandbox payment (create+confirm+capture)
// sends handle-webhook, with no merchant endpoint, as the kafka-trigger
// batches it: payment.created, payment.authorized and payment.captured
// naming the same gateway object, and the capture's transaction.posted;
// 25 payments (100 events) per delivery. One op is one payment; rows/op
// are its processed_events rows, cpu-µs/op the test process's CPU (the
// function's side: the handler, the origin checks, pgx) and pg-cpu-µs/op
// its database's backends'.
func BenchmarkPaymentEvents(b *testing.B) {
	g := newRig(b)
	ctx := context.Background()
	if _, err := g.d.Pool.Exec(ctx, `DELETE FROM webhook_endpoints`); err != nil {
		b.Fatal(err)
	}
	var rowsBefore int
	if err := g.d.Pool.QueryRow(ctx, `SELECT count(*) FROM processed_events WHERE consumer = $1`, webhooks.Name).Scan(&rowsBefore); err != nil {
		b.Fatal(err)
	}
	const perDelivery = 25
	batches := make([][]events.Event, 0, b.N/perDelivery+1)
	for i := 0; i < b.N; i += perDelivery {
		var batch []events.Event
		for k := i; k < min(i+perDelivery, b.N); k++ {
			pid := uuid.NewString()
			for _, typ := range []string{events.TypePaymentCreated, events.TypePaymentAuthorized, events.TypePaymentCaptured} {
				batch = append(batch, events.Must(events.New(ctx, "capture-payment", typ, pid, map[string]any{"payment_id": pid,
					"status": "succeeded", "amount": 1000, "currency": "USD", "gateway": "sandbox", "gateway_payment_id": "pi_sbx_" + pid})))
			}
			posted := uuid.NewString()
			batch = append(batch, events.Must(events.New(ctx, "process-transaction", events.TypeTransactionPosted, posted,
				map[string]any{"id": posted, "amount": 1000, "currency": "USD"})))
		}
		batches = append(batches, batch)
	}
	// Built (signed, origin proofs too) before the timer: the op is the
	// function's work.
	reqs := make([]*http.Request, len(batches))
	for i, batch := range batches {
		reqs[i] = g.kit.Delivery(b, batch...)
	}
	var ru0, ru1 syscall.Rusage
	pg0 := backendsCPU(b, g)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for _, r := range reqs {
		rec := httptest.NewRecorder()
		g.h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("delivery: %d %s", rec.Code, rec.Body)
		}
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64((backendsCPU(b, g)-pg0).Microseconds())/float64(b.N), "pg-cpu-µs/op")
	var rows int
	if err := g.d.Pool.QueryRow(ctx, `SELECT count(*) FROM processed_events WHERE consumer = $1`, webhooks.Name).Scan(&rows); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rows-rowsBefore)/float64(b.N), "rows/op")
}

// backendsCPU is the CPU the Postgres backends of the test's database
// have used (from /proc: the server runs on this machine in the tests).
func backendsCPU(b *testing.B, g *rig) time.Duration {
	b.Helper()
	rows, err := g.d.Pool.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var ticks int64
	for _, pid := range pids {
		raw, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		if err != nil {
			continue // a backend that ended
		}
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ = 100
}
