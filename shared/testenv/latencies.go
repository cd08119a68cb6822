package testenv

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Latencies collects the per-operation latencies of a benchmark's
// concurrent clients and reports the rate and the percentiles a client saw.
// Clients keep their own slice and Add it once at the end.
type Latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

// Add records latencies; safe for concurrent use.
func (l *Latencies) Add(ds ...time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, ds...)
	l.mu.Unlock()
}

// Report reports operations per second as unit+"/s" over elapsed, and
// p50_ms, p90_ms and p99_ms. ns/op is zeroed: under parallel clients it
// would mislead, the rate and the percentiles say it.
func (l *Latencies) Report(b *testing.B, elapsed time.Duration, unit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.all) == 0 {
		return
	}
	p := func(q float64) float64 { return float64(l.quantile(q).Microseconds()) / 1000 }
	b.ReportMetric(float64(len(l.all))/elapsed.Seconds(), unit+"/s")
	b.ReportMetric(p(0.50), "p50_ms")
	b.ReportMetric(p(0.90), "p90_ms")
	b.ReportMetric(p(0.99), "p99_ms")
	b.ReportMetric(0, "ns/op")
}

// Quantile is the latency below which a fraction q of the operations
// finished (0 when none was recorded).
func (l *Latencies) Quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.quantile(q)
}

func (l *Latencies) quantile(q float64) time.Duration {
	if len(l.all) == 0 {
		return 0
	}
	if !slices.IsSorted(l.all) {
		slices.Sort(l.all)
	}
	return l.all[int(q*float64(len(l.all)-1))]
}
