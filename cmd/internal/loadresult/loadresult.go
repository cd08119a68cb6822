// Package loadresult is the JSON loadgen writes with -json and make bench
// reads: one type on both sides, so that a figure loadgen adds or renames
// cannot silently read as zero in the bench's report.
package loadresult

// Endpoint is one endpoint's figures.
type Endpoint struct {
	Endpoint   string      `json:"endpoint"`
	Requests   int         `json:"requests"`
	PerSecond  float64     `json:"per_second"`
	P50ms      float64     `json:"p50_ms"`
	P95ms      float64     `json:"p95_ms"`
	P99ms      float64     `json:"p99_ms"`
	MaxMs      float64     `json:"max_ms"`
	Statuses   map[int]int `json:"statuses"`
	Errors     int         `json:"errors"` // transport errors and 5xx
	Unexpected int         `json:"unexpected"`
}

// Result is a whole run.
type Result struct {
	Scenario    string     `json:"scenario"`
	Concurrency int        `json:"concurrency"`
	Operations  int        `json:"operations"`
	Seconds     float64    `json:"seconds"`
	OpsPerSec   float64    `json:"ops_per_second"`
	Units       int        `json:"units_per_operation"` // e.g. transfers per batch
	Endpoints   []Endpoint `json:"endpoints"`
	Failed      int64      `json:"failed_operations"`
	// Offered is the rate the operations were offered at, open loop
	// (loadgen -rate), and Scheduled their latencies from when each was
	// due: what a caller arriving on that schedule waits, queueing
	// included. Both are absent from a closed-loop run.
	Offered   float64   `json:"offered_per_second,omitempty"`
	Scheduled *Endpoint `json:"scheduled,omitempty"`
}

// Latencies is what a run's latency is judged on: from when each
// operation was due in an open-loop run, else the main endpoint's.
func (r *Result) Latencies() (p50, p95, p99 float64) {
	if s := r.Scheduled; s != nil {
		return s.P50ms, s.P95ms, s.P99ms
	}
	return r.Main()
}

// Main is the latencies of the main endpoint: the one with the most
// requests (zero without any).
func (r *Result) Main() (p50, p95, p99 float64) {
	best := -1
	for i, e := range r.Endpoints {
		if best < 0 || e.Requests > r.Endpoints[best].Requests {
			best = i
		}
	}
	if best < 0 {
		return 0, 0, 0
	}
	e := r.Endpoints[best]
	return e.P50ms, e.P95ms, e.P99ms
}
