package main

import (
	"fmt"
	"math"
	"strconv"

	"github.com/billfn/billfn/cmd/internal/stackfile"
)

// A target that names a latency and a rate ("≥ 1,000/s, p99 < 50 ms") is
// two claims, judged on two runs. The rate is the closed-loop run's: its
// clients start the next operation as soon as the last one ends, so it
// finds the most the system does. Its latencies are not the target's:
// at saturation a closed loop's mean latency is its clients over its rate
// (Little's law), whatever the system. The latency is judged here, with
// the operations offered open loop at the target's rate — one due every
// 1/rate seconds, whoever is free to send it — and timed from when each
// was due (loadgen -rate), so that a slow one delays the count of those
// queued behind it as it delays them (no coordinated omission). A system
// that cannot keep up falls further behind its schedule with every
// operation: its p99 grows without bound, and the target is missed. A
// run that keeps up at the target's rate with its p99 under the bound
// meets the whole target on its own.

// openLoopClients is the most operations an open-loop run keeps in flight:
// twice what its target allows (Little's law: the rate times the p99
// bound; 2,000/s at 10 ms is 20), at least 32. It never holds back a
// system that meets the target, whose operations the schedule alone paces,
// and it spares one that does not from being driven past a function's
// max_inflight into cheap 429s (256 in flight did that to payments offered
// at 1,000/s: 3,861 of 10,000 refused), so that what such a run measures
// stays the cost and the wait of real work: an operation a free client is
// not there to send waits for one, and that wait counts from when it was
// due, as the server's queue would have.
func openLoopClients(rate, p99ms float64) int {
	return max(32, int(math.Ceil(2*rate*p99ms/1000)))
}

// openLoopSeconds is how long each open-loop run offers operations.
const openLoopSeconds = 10

// openLoopRuns are the latency targets, each offered at its rate; they run
// after pgbench, whose rate sets the transfers' (1.5 × its tps). Each keeps
// at most its function's max_inflight (inflight, from stack.yml) in
// flight: on a machine whose pgbench is fast enough, twice what the
// transfers' target allows would be more than process-transaction takes.
func openLoopRuns(gw, secretsDir string, quick bool, pg *pgResult, inflight map[string]int) []*run {
	gwAddr := "http://" + gatewayAddr
	mk := func(name, title, scenario, fn string, rate, p99 float64, extra ...string) *run {
		n := scale(int(rate*openLoopSeconds), quick)
		c := openLoopClients(rate, p99)
		if most, ok := inflight[fn]; ok {
			c = min(c, most)
		}
		args := append([]string{scenario, "-c", strconv.Itoa(c), "-n", n, "-rate", strconv.FormatFloat(rate, 'f', 0, 64), "-url", gw + fn}, extra...)
		return &run{Name: name, Title: fmt.Sprintf("%s, offered open loop at %s/s (latency from when each was due)", title, thousands(rate)), Args: args,
			Target: fmt.Sprintf("%s/s kept up, p99 < %.0f ms", thousands(rate), p99),
			Check:  func(r *loadResult) bool { return keptUp(r) && r.Scheduled.P99ms < p99 }}
	}
	return []*run{
		mk("transfers-gateway-open", "transfers (sync POST /transfers), through the gateway", "transfers", "process-transaction", 1.5*pg.TPS, 25),
		mk("payments-open", "payments (create+confirm+capture, sandbox)", "payments", "capture-payment", 1000, 50, "-gateway", gwAddr),
		mk("webhooks-open", "webhooks (signed sandbox deliveries)", "webhooks", "handle-webhook", 2000, 10, "-gateway", gwAddr, "-secrets", secretsDir),
	}
}

// keptUp reports whether an open-loop run answered at the rate it was
// offered: its last operation due at (n−1)/rate, it ended within a second
// more (1 % of its ten seconds). The whole target is then met on this one
// row when its p99 is too.
func keptUp(r *loadResult) bool {
	return r.Scheduled != nil && r.Offered > 0 && r.OpsPerSec >= 0.99*r.Offered
}

// thousands writes a rate rounded to a whole number with a comma between
// thousands: 1,784.
func thousands(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// maxInflight is each function's max_inflight in the stack file at path
// (absent or 0: unlimited, not listed).
func maxInflight(path string) (map[string]int, error) {
	st, err := stackfile.Load(path, func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, err
	}
	m := map[string]int{}
	for name, f := range st.Functions {
		v, ok := f.Environment["max_inflight"]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: max_inflight %q: %v", path, name, v, err)
		}
		if n > 0 {
			m[name] = n
		}
	}
	return m, nil
}
