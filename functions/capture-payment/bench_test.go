package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/testenv"
)

// benchPayments drives payments through the real handler, database,
// sandbox (or stripe-mock) and outbox, 16 clients at a time on 2 cores.
func benchPayments(b *testing.B, g *rig, capture string, captureCall bool) {
	token := g.kit.Token(b, g.admin, auth.RoleAdmin)
	body, _ := json.Marshal(map[string]any{"account_id": g.account, "user_id": g.admin, "amount": 1999, "currency": "USD",
		"payment_method": "pm_card_visa", "capture_method": capture, "confirm": true})
	call := func(method, path string, body []byte) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("Idempotency-Key", uuid.NewString())
		rec := httptest.NewRecorder()
		g.h.ServeHTTP(rec, r)
		return rec
	}
	var lat, cl testenv.Latencies
	// The framework's probe (one payment) is not counted: the count waits.
	count := b.N > 1
	var commits0 int64
	if count {
		commits0 = g.commits()
	}
	b.SetParallelism(8) // 8 × GOMAXPROCS(2) = 16 concurrent clients
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		var createLat []time.Duration
		defer func() { cl.Add(createLat...) }()
		for pb.Next() {
			t0 := time.Now()
			rec := call("POST", "/payments", body)
			if rec.Code != http.StatusCreated {
				b.Errorf("create: %d %s", rec.Code, rec.Body)
				return
			}
			if captureCall {
				createLat = append(createLat, time.Since(t0))
				var p struct {
					ID     string `json:"id"`
					Status string `json:"status"`
				}
				_ = json.Unmarshal(rec.Body.Bytes(), &p)
				if rec := call("POST", "/payments/"+p.ID+"/capture", nil); rec.Code != http.StatusOK {
					b.Errorf("capture: %d %s", rec.Code, rec.Body)
					return
				}
			}
			mine = append(mine, time.Since(t0))
		}
		lat.Add(mine...)
	})
	elapsed := time.Since(start)
	b.StopTimer()
	lat.Report(b, elapsed, "payments")
	if count {
		b.ReportMetric(float64(g.commits()-commits0)/float64(b.N), "commits/payment")
	}
	if captureCall {
		b.Logf("create part: p50 %v p99 %v", cl.Quantile(0.50), cl.Quantile(0.99))
	}
}

// commits is the test database's commits so far (pg_stat_database, read-only
// ones included), once every backend has reported its own: a backend
// reports when idle, at most 10 s late (PGSTAT_IDLE_INTERVAL).
func (g *rig) commits() int64 {
	time.Sleep(11 * time.Second)
	var n int64
	if err := g.d.Pool.QueryRow(context.Background(),
		`SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&n); err != nil {
		g.t.Fatal(err)
	}
	return n
}

// BenchmarkSandboxCreateCapturedPayment: POST /payments with confirm and
// automatic capture, one request per payment created and captured.
func BenchmarkSandboxCreateCapturedPayment(b *testing.B) {
	benchPayments(b, newRig(b), payments.CaptureAutomatic, false)
}

// BenchmarkSandboxCreateThenCapture: an authorization, then POST
// /payments/{id}/capture: two requests per payment.
func BenchmarkSandboxCreateThenCapture(b *testing.B) {
	benchPayments(b, newRig(b), payments.CaptureManual, true)
}

// BenchmarkStripeMockCreatePayment: POST /payments with confirm through
// the Stripe adapter against stripe-mock (which answers its stateless
// fixture, so the payment ends back in requires_payment_method: the figure
// is the create+confirm round trip through stripe-go, not a capture).
func BenchmarkStripeMockCreatePayment(b *testing.B) {
	base := stripeMockURL(b)
	g := newRig(b, func(c *Config) { c.StripeKey, c.StripeBase, c.Routes = "sk_test_bench", base, "*=stripe" })
	benchPayments(b, g, payments.CaptureAutomatic, false)
}
