package main

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/billfn/billfn/cmd/internal/loadresult"
)

// A rate-and-latency target is judged on two rows: the closed loop's rate,
// whatever its saturated latency, and the open loop's p99 from when each
// operation was due, never its requests' own.
func TestALatencyTargetIsJudgedOpenLoopAtItsRate(t *testing.T) {
	pg := &pgResult{TPS: 1000}
	runs := append(moreRuns("http://g/function/", "/s", false)[2:4:4], openLoopRuns("http://g/function/", "/s", false, pg, nil)...)
	req := func(p99 float64) []loadresult.Endpoint {
		return []loadresult.Endpoint{{Endpoint: "POST /x", Requests: 100, P50ms: 1, P95ms: 2, P99ms: p99}}
	}
	byName := map[string]*run{}
	for _, r := range runs {
		byName[r.Name] = r
	}
	// payments: the rate met at saturation with a p99 of 90 ms (16
	// clients over 1,100/s); at 1,000/s offered, 40 ms from when due.
	byName["payments"].Result = &loadResult{Concurrency: 16, Operations: 100, OpsPerSec: 1100, Units: 1, Endpoints: req(90)}
	byName["payments-open"].Result = &loadResult{Concurrency: 64, Operations: 100, OpsPerSec: 1000, Units: 1, Endpoints: req(5),
		Offered: 1000, Scheduled: &loadresult.Endpoint{Requests: 100, P50ms: 3, P95ms: 20, P99ms: 40}}
	// webhooks: its requests answer in 5 ms, but the open loop fell behind:
	// 400 ms from when due.
	byName["webhooks"].Result = &loadResult{Concurrency: 16, Operations: 100, OpsPerSec: 1500, Units: 1, Endpoints: req(30)}
	byName["webhooks-open"].Result = &loadResult{Concurrency: 64, Operations: 100, OpsPerSec: 1500, Units: 1, Endpoints: req(5),
		Offered: 2000, Scheduled: &loadresult.Endpoint{Requests: 100, P50ms: 200, P95ms: 380, P99ms: 400}}
	// transfers at 1.5 × 1,000 tps: an open-loop p99 of 20 ms.
	byName["transfers-gateway-open"].Result = &loadResult{Concurrency: 64, Operations: 100, OpsPerSec: 1500, Units: 1, Endpoints: req(90),
		Offered: 1500, Scheduled: &loadresult.Endpoint{Requests: 100, P99ms: 20}}
	var b strings.Builder
	renderScenarios(&b, runs, pg)
	row := func(prefix string) string {
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, "| "+prefix+" |") {
				return l
			}
		}
		t.Fatalf("no row %q in\n%s", prefix, b.String())
		return ""
	}
	for _, c := range []struct{ row, want string }{
		{"payments (create+confirm+capture, sandbox)", "| ≥ 1,000/s ✓ |"},
		{"payments (create+confirm+capture, sandbox), offered open loop at 1,000/s (latency from when each was due)", "| 3.00 | 20.00 | 40.00 | 0 |  | 1,000/s kept up, p99 < 50 ms ✓ |"},
		{"webhooks (signed sandbox deliveries)", "| ≥ 2,000/s ✗ |"},
		{"webhooks (signed sandbox deliveries), offered open loop at 2,000/s (latency from when each was due)", "| 400.00 | 0 |  | 2,000/s kept up, p99 < 10 ms ✗ |"},
		{"transfers (sync POST /transfers), through the gateway, offered open loop at 1,500/s (latency from when each was due)", "| 20.00 | 0 | 1.50× | 1,500/s kept up, p99 < 25 ms ✓ |"},
	} {
		if r := row(c.row); !strings.HasSuffix(r, c.want) {
			t.Errorf("row %q\n  is %s\nwant …%s", c.row, r, c.want)
		}
	}
	if !strings.Contains(b.String(), "coordinated omission") {
		t.Error("the table does not say how the open-loop rows are judged")
	}
}

// An open-loop run that fell behind its schedule misses its target
// whatever its p99 says.
func TestAnOpenLoopThatFellBehindMissesItsTarget(t *testing.T) {
	r := openLoopRuns("http://g/function/", "/s", false, &pgResult{TPS: 1000}, nil)[1]
	behind := &loadResult{OpsPerSec: 900, Offered: 1000, Scheduled: &loadresult.Endpoint{P99ms: 10}}
	kept := &loadResult{OpsPerSec: 998, Offered: 1000, Scheduled: &loadresult.Endpoint{P99ms: 10}}
	closed := &loadResult{OpsPerSec: 2000, Endpoints: []loadresult.Endpoint{{Requests: 1, P99ms: 1}}}
	if r.Check(behind) || !r.Check(kept) || r.Check(closed) {
		t.Errorf("%s: behind %v, kept up %v, a closed loop %v; want false, true, false", r.Name, r.Check(behind), r.Check(kept), r.Check(closed))
	}
}

// An open loop keeps in flight twice what its target allows (rate × p99
// bound), at least 32: never fewer than a system meeting the target needs,
// never so many that it drives a function past its max_inflight.
func TestAnOpenLoopKeepsTwiceWhatItsTargetAllowsInFlight(t *testing.T) {
	for _, c := range []struct {
		rate, p99 float64
		want      int
	}{{2000, 10, 40}, {1000, 50, 100}, {4426, 25, 222}, {100, 10, 32}} {
		if got := openLoopClients(c.rate, c.p99); got != c.want {
			t.Errorf("%v/s, p99 < %v ms: %d in flight, want %d", c.rate, c.p99, got, c.want)
		}
	}
	for _, r := range openLoopRuns("http://g/function/", "/s", false, &pgResult{TPS: 1000}, nil) {
		if i := slices.Index(r.Args, "-c"); i < 0 || r.Args[i+1] == "" || r.Args[i+1] == "16" {
			t.Errorf("%s: %v does not set its own -c", r.Name, r.Args)
		}
	}
}

// No open-loop run keeps more in flight than the function it calls takes
// (its max_inflight in stack.yml, past which it answers 429): its refusals
// would be measured instead of its work, however fast the machine's
// pgbench, whose tps sets the transfers' rate.
func TestNoOpenLoopOutrunsItsFunctionsMaxInflight(t *testing.T) {
	inflight, err := maxInflight(filepath.Join("..", "..", "stack.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// 2,500 tps is this machine's pgbench; 12,000 a faster one's, whose
	// transfers offered at 18,000/s would keep 900 in flight unclamped.
	for _, tps := range []float64{2500, 12000} {
		for _, r := range openLoopRuns("http://g/function/", "/s", false, &pgResult{TPS: tps}, inflight) {
			fn := calledFunction(r)
			most, ok := inflight[fn]
			if !ok {
				t.Fatalf("%s calls %s, which sets no max_inflight in stack.yml", r.Name, fn)
			}
			if c, _ := strconv.Atoi(r.Args[slices.Index(r.Args, "-c")+1]); c > most {
				t.Errorf("%s offered at %s keeps %d in flight, past %s's max_inflight of %d", r.Name, r.Target, c, fn, most)
			}
		}
	}
}

func TestThousandsGroupsDigitsByThree(t *testing.T) {
	for v, want := range map[float64]string{7: "7", 999: "999", 1000: "1,000", 1784.4: "1,784", 15000: "15,000", 1234567: "1,234,567"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

// A closed-loop row with a rate target and no Check of its own is judged
// on rateTargets' rate, the one the budget table uses: transfers at 1.5 ×
// pgbench's tps in the same run, whatever its saturated p99.
func TestAClosedLoopRowIsJudgedOnTheBudgetsRate(t *testing.T) {
	pg := &pgResult{TPS: 1000}
	res := func(ops float64) *loadResult {
		return &loadResult{Concurrency: 16, Operations: 100, OpsPerSec: ops, Units: 1,
			Endpoints: []loadresult.Endpoint{{Endpoint: "POST /transfers", Requests: 100, P99ms: 90}}}
	}
	runs := []*run{
		{Name: "transfers-gateway", Title: "met", Target: "≥ 1.5 × pgbench tps", Result: res(1600)},
		{Name: "transfers-replicas-2", Title: "missed", Target: "≥ 1.5 × pgbench tps", Result: res(1400)},
		{Name: "mixed", Title: "no target", Result: res(1)},
	}
	var b strings.Builder
	renderScenarios(&b, runs, pg)
	for title, want := range map[string]string{"met": "≥ 1.5 × pgbench tps ✓ |", "missed": "≥ 1.5 × pgbench tps ✗ |", "no target": "|  |  |"} {
		found := false
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, "| "+title+" |") {
				found = true
				if !strings.HasSuffix(l, want) {
					t.Errorf("row %q: %s, want …%s", title, l, want)
				}
			}
		}
		if !found {
			t.Errorf("no row %q in\n%s", title, b.String())
		}
	}
}
