package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/testenv"
)

// BenchmarkVerifiedWebhooks: distinct Stripe webhooks signed with
// stripe-go's helper, 16 concurrent senders, through the whole handler:
// rate limit (Redis), signature (stripe-go), parse, store + outbox
// (Postgres), answer. The outbox publishes to kfake meanwhile.
func BenchmarkVerifiedWebhooks(b *testing.B) {
	g := newRig(b)
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
