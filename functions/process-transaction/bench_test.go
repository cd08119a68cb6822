package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/testenv"
)

// BenchmarkSyncTransfers: synchronous POST /transfers through the whole
// handler — JWT, decoding, idempotency, the group commit on real Postgres,
// the outbox publishing to kfake meanwhile — from 16 concurrent clients
// (b.SetParallelism(8) × GOMAXPROCS 2) over 200 funded accounts. The
// function alone: no HTTP client or gateway, no other function consuming
// its events. make bench measures the same through the local stack.
func BenchmarkSyncTransfers(b *testing.B) {
	e := newEnv(b)
	const n = 200
	accounts := make([]Account, n)
	tokens := make([]string, n)
	for i := range accounts {
		user := uuid.NewString()
		accounts[i] = e.account(user, "USD")
		e.fund(accounts[i], 1_000_000_000)
		tokens[i] = "Bearer " + e.kit.Token(b, user, auth.RoleCustomer)
	}
	var (
		next atomic.Int64
		lat  testenv.Latencies
	)
	b.SetParallelism(8)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		for pb.Next() {
			i := next.Add(1)
			from, to := int(i%n), int((i*7+3)%n)
			if from == to {
				to = (to + 1) % n
			}
			body, _ := json.Marshal(map[string]any{"from_account_id": accounts[from].ID, "to_account_id": accounts[to].ID,
				"amount": 1 + i%500, "currency": "USD", "description": fmt.Sprintf("bench %d", i)})
			r := httptest.NewRequest("POST", "/transfers", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Authorization", tokens[from])
			r.Header.Set("Idempotency-Key", uuid.NewString())
			rec := httptest.NewRecorder()
			t0 := time.Now()
			e.h.ServeHTTP(rec, r)
			mine = append(mine, time.Since(t0))
			if rec.Code != http.StatusCreated {
				b.Errorf("transfer: %d %s", rec.Code, rec.Body)
				return
			}
		}
		lat.Add(mine...)
	})
	elapsed := time.Since(start)
	b.StopTimer()
	lat.Report(b, elapsed, "transfers")
	checkLedger(b, e.d)
}
