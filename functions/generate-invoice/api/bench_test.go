package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// Benchmarks over the real database (docs/generate-invoice.md records the
// figures and the commands). Each invoice has 10 lines with a tax rate and
// is finalized: numbered, with its created/finalized/notification events
// in the outbox (published to kfake by the publisher meanwhile).

func tenLines(rate string) []any {
	lines := make([]any, 10)
	for i := range lines {
		lines[i] = map[string]any{"description": "Line item", "quantity": "1.5", "unit_amount": 1999 + i, "tax_rate_ids": []string{rate}}
	}
	return lines
}

func benchBody(rate string) invoicing.CreateInvoiceIn {
	b := invoiceBody(uuid.NewString(), uuid.NewString())
	b["line_items"] = tenLines(rate)
	b["auto_finalize"] = true
	raw, _ := json.Marshal(b)
	var in invoicing.CreateInvoiceIn
	if err := json.Unmarshal(raw, &in); err != nil {
		panic(err)
	}
	return in
}

// BenchmarkFinalizeBatch: the batch path's core, one transaction per 500
// invoices (validate, resolve, compute, number, insert, outbox). One op is
// one finalized invoice.
func BenchmarkFinalizeBatch(b *testing.B) {
	g := newRig(b)
	rate := g.taxRate("VAT", "20", false, false)
	const batch = 500
	ins := make([]invoicing.CreateInvoiceIn, batch)
	for i := range ins {
		ins[i] = benchBody(rate)
	}
	p := auth.Principal{Role: auth.RoleService}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		now := g.clock.Now()
		err := g.s.st.InTx(ctx, func(tx *store.Tx) error {
			res := g.s.b.NewResolver(tx, now)
			invs, final := make([]*invoicing.Invoice, n), make([]bool, n)
			for i := 0; i < n; i++ {
				d, err := g.s.b.ParseCreate(ctx, tx, p, nil, &ins[i], "", now)
				if err != nil {
					return err
				}
				if err := res.Draft(ctx, d); err != nil {
					return err
				}
				invs[i], final[i] = d.Inv, true
			}
			msgs, err := g.s.b.PersistNew(ctx, tx, invs, final, now)
			if err != nil {
				return err
			}
			return tx.Emit(ctx, msgs)
		})
		if err != nil {
			b.Fatal(err)
		}
		g.d.Publisher.Kick()
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "invoices/s")
}

// BenchmarkBatchEndpoint: POST /invoices/batch through the whole HTTP
// stack (JWT, idempotency, JSON), 100 invoices per request. One op is one
// finalized invoice.
func BenchmarkBatchEndpoint(b *testing.B) {
	g := newRig(b)
	rate := g.taxRate("VAT", "20", false, false)
	const per = 100
	items := make([]invoicing.CreateInvoiceIn, per)
	for i := range items {
		items[i] = benchBody(rate)
	}
	body, _ := json.Marshal(map[string]any{"invoices": items})
	tok := g.kit.Token(b, g.admin, auth.RoleService)
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += per {
		req := httptest.NewRequest("POST", "/invoices/batch", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Idempotency-Key", uuid.NewString())
		rec := httptest.NewRecorder()
		g.h.ServeHTTP(rec, req)
		if rec.Code != 201 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "invoices/s")
}

// BenchmarkAsyncRequestedBatch: the asynchronous path as the trigger
// drives it, CloudEvents batches of 100 billfn.invoice.requested. One op
// is one finalized invoice.
func BenchmarkAsyncRequestedBatch(b *testing.B) {
	g := newRig(b)
	rate := g.taxRate("VAT", "20", false, false)
	const per = 100
	b.StopTimer()
	var bodies [][]byte
	for done := 0; done < b.N; done += per {
		evs := make([]events.Event, min(per, b.N-done))
		for i := range evs {
			in := benchBody(rate)
			evs[i] = event(b, "loadgen", events.TypeInvoiceRequested, "", in)
			// The load generator's origin proof, its key trusted as an
			// integrator's, or the receiver parks the request.
			g.kit.Origins.Add(evs[i].Source(), testenv.OriginSigner(evs[i].Source()).Public())
			testenv.SignOrigin(&evs[i])
		}
		raw, _ := json.Marshal(evs)
		bodies = append(bodies, raw)
	}
	b.StartTimer()
	start := time.Now()
	for _, body := range bodies {
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", events.ContentTypeBatch)
		req.Header.Set(events.SignatureHeader, g.kit.SignEvent(body))
		rec := httptest.NewRecorder()
		g.h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "invoices/s")
}

// BenchmarkCreateFinalizeSync: one synchronous POST /invoices with 10
// lines and auto_finalize, from 1 client and from 4 concurrent clients;
// reports the latency percentiles a client sees (in-process, no network
// hop).
func BenchmarkCreateFinalizeSync(b *testing.B) {
	for _, clients := range []int{1, 4} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
			g := newRig(b)
			rate := g.taxRate("VAT", "20", false, false)
			body, _ := json.Marshal(benchBody(rate))
			tok := g.kit.Token(b, g.admin, auth.RoleService)
			var lat testenv.Latencies
			var next atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						req := httptest.NewRequest("POST", "/invoices", bytes.NewReader(body))
						req.Header.Set("Content-Type", "application/json")
						req.Header.Set("Authorization", "Bearer "+tok)
						req.Header.Set("Idempotency-Key", uuid.NewString())
						rec := httptest.NewRecorder()
						t0 := time.Now()
						g.h.ServeHTTP(rec, req)
						mine = append(mine, time.Since(t0))
						if rec.Code != 201 {
							b.Errorf("%d %s", rec.Code, rec.Body)
							return
						}
					}
					lat.Add(mine...)
				}()
			}
			wg.Wait()
			lat.Report(b, time.Since(start), "invoices")
		})
	}
}

// BenchmarkGetInvoiceCached: GET /invoices/{id} served from Redis.
func BenchmarkGetInvoiceCached(b *testing.B) {
	g := newRig(b)
	inv := g.createInvoice(uuid.NewString(), nil)
	tok := g.kit.Token(b, g.admin, auth.RoleAdmin)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("GET", "/invoices/"+inv.ID, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		g.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
