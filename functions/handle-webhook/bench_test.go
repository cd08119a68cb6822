package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/handle-webhook/api"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// BenchmarkVerifiedWebhooks: distinct Stripe webhooks signed with
// stripe-go's helper, 16 concurrent senders, through the whole handler:
// rate limit (Redis), signature (stripe-go), parse, store + outbox
// (Postgres), answer. The outbox publishes to kfake meanwhile.
//
// The limiter still runs (its Redis round trip is part of every
// delivery's cost) but at a limit no run reaches: the rig's 5000 a second
// from one address is what the tests of the limit need, and alone on a
// fast host this benchmark sends more (the run of record of 2026-12-05
// 19:19 UTC failed on a 429).
func BenchmarkVerifiedWebhooks(b *testing.B) {
	g := newRig(b, func(c *api.Config) { c.RateLimit = 1 << 30 })
	g.clock.FollowWallClock()
	pid := uuid.NewString()
	var (
		seq atomic.Int64
		lat testenv.Latencies
	)
	b.SetParallelism(8) // 8 × GOMAXPROCS(2) = 16 senders
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 4096)
		for pb.Next() {
			n := seq.Add(1)
			body := stripeEvent("payment_intent.succeeded", paymentIntent("pi_bench_"+strconv.FormatInt(n, 10), pid, "succeeded", 1000+n))
			r := httptest.NewRequest("POST", "/stripe", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json; charset=utf-8")
			r.Header.Set(webhooks.StripeSignatureHeader, signStripe(body, stripeSecret, g.clock.Now()))
			r.RemoteAddr = "192.0.2.10:443"
			rec := httptest.NewRecorder()
			t0 := time.Now()
			g.h.ServeHTTP(rec, r)
			mine = append(mine, time.Since(t0))
			if rec.Code != http.StatusOK {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
		}
		lat.Add(mine...)
	})
	elapsed := time.Since(start)
	b.StopTimer()
	lat.Report(b, elapsed, "webhooks")
}

// BenchmarkOutgoingDeliveries: b.N events already queued for each of the
// endpoints (one receiver on loopback that answers 204), then the sender
// delivers them all, signed, in order per endpoint; deliveries/s counts
// every endpoint's.
func BenchmarkOutgoingDeliveries(b *testing.B) {
	for _, endpoints := range []int{1, 8} {
		b.Run("endpoints="+strconv.Itoa(endpoints), func(b *testing.B) {
			g := newRig(b)
			g.clock.FollowWallClock()
			if _, err := g.d.Pool.Exec(context.Background(), `DELETE FROM webhook_endpoints`); err != nil {
				b.Fatal(err)
			}
			var got atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			for range endpoints {
				rec := g.admin_("POST", "/endpoints", map[string]any{"url": srv.URL, "events": []string{"billfn.invoice.*"}}, auth.RoleAdmin, "")
				if rec.Code != http.StatusCreated {
					b.Fatalf("endpoint: %d %s", rec.Code, rec.Body)
				}
			}
			b.StopTimer()
			for i := 0; i < b.N; i += 100 {
				evs := make([]events.Event, 0, 100)
				for j := i; j < min(i+100, b.N); j++ {
					id := uuid.NewString()
					evs = append(evs, events.Must(events.New(context.Background(), "generate-invoice", events.TypeInvoicePaid, id, map[string]any{"invoice_id": id})))
				}
				if rec := g.deliver(evs...); rec.Code != http.StatusOK {
					b.Fatalf("deliver: %d %s", rec.Code, rec.Body)
				}
			}
			b.StartTimer()
			start := time.Now()
			if _, err := g.s.SendDue(context.Background()); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			if n := got.Load(); n != int64(b.N*endpoints) {
				b.Fatalf("%d requests, want %d", n, b.N*endpoints)
			}
			b.ReportMetric(float64(b.N*endpoints)/elapsed.Seconds(), "deliveries/s")
			if _, err := g.d.Pool.Exec(context.Background(), `DELETE FROM webhook_endpoints`); err != nil {
				b.Fatal(err)
			}
		})
	}
}
