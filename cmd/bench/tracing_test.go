package main

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTracingOrderAlternatesSoThatTenPercentRunsNextToOff(t *testing.T) {
	names := func(cs []tracingRun) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.name)
		}
		return out
	}
	want := [][]string{
		{"tracing-off", "tracing-10", "tracing-100"},
		{"tracing-100", "tracing-10", "tracing-off"},
		{"tracing-off", "tracing-10", "tracing-100"},
	}
	for i, w := range want {
		got := names(tracingOrder(tracingConfigs, i))
		if !slices.Equal(got, w) {
			t.Errorf("round %d: %v, want %v", i+1, got, w)
		}
		off, ten := slices.Index(got, "tracing-off"), slices.Index(got, "tracing-10")
		if d := off - ten; d != 1 && d != -1 {
			t.Errorf("round %d: tracing-10 does not run next to tracing-off: %v", i+1, got)
		}
	}
	// The configurations' own order is left as it is.
	if tracingConfigs[0].name != "tracing-off" || tracingConfigs[2].name != "tracing-100" {
		t.Fatalf("tracingOrder changed tracingConfigs: %v", names(tracingConfigs))
	}
}

func TestMedianOfAnEvenCountIsTheMeanOfTheMiddleTwo(t *testing.T) {
	for _, tc := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{0.93, 1.01, 0.98}, 0.98},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.xs); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.xs, got, tc.want)
		}
	}
	xs := []float64{3, 1, 2}
	median(xs)
	if !slices.Equal(xs, []float64{3, 1, 2}) {
		t.Errorf("median sorted its argument: %v", xs)
	}
}

// benchRun is a run of ops transfers at rate/s whose system (every process
// but the client) spent cpuPerOp µs on each.
func benchRun(ops int, rate, cpuPerOp float64) *run {
	total := time.Duration(cpuPerOp*float64(ops)) * time.Microsecond
	return &run{
		Result: &loadResult{Operations: ops, OpsPerSec: rate, Seconds: float64(ops) / rate,
			Endpoints: []endpointResult{{Requests: ops, P50ms: 1000 / rate, P95ms: 2000 / rate, P99ms: 4000 / rate}}},
		Cost: &cost{CPU: map[string]time.Duration{
			"process-transaction": total / 2, groupBackends(database): total / 2,
			groupClient: time.Duration(ops) * 100 * time.Microsecond, // never counted
		}, Commits: int64(ops), WALBytes: int64(ops) * 1000, Window: time.Duration(float64(time.Second) * float64(ops) / rate)},
	}
}

func round(off, ten *run) tracingRound {
	return tracingRound{order: []string{"tracing-off", "tracing-10"}, runs: map[string]*run{"tracing-off": off, "tracing-10": ten}}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestJudgeTakesTheMedianOfTheRoundsRatios(t *testing.T) {
	// The second round was disturbed: 10 % ran at 80 % of off's rate and
	// spent 20 % more per transfer. Pooled, the three rounds would miss
	// the target; their medians meet it.
	rounds := []tracingRound{
		round(benchRun(1000, 800, 1400), benchRun(1000, 784, 1414)),  // 98 %, 101 %
		round(benchRun(1000, 1000, 1300), benchRun(1000, 800, 1560)), // 80 %, 120 %
		round(benchRun(1000, 700, 1500), benchRun(1000, 707, 1530)),  // 101 %, 102 %
	}
	v := judge(rounds)
	if v.rounds != 3 || !near(v.rate, 0.98) || !near(v.cpu, 1.02) || !v.ok {
		t.Fatalf("judge = %+v, want 3 rounds, rate 0.98, cpu 1.02, ok", v)
	}
	// Two disturbed rounds of three decide it.
	rounds[0] = round(benchRun(1000, 800, 1400), benchRun(1000, 720, 1400)) // 90 %, 100 %
	if v := judge(rounds); v.ok || !near(v.rate, 0.9) {
		t.Fatalf("judge = %+v, want rate 0.90, not ok", v)
	}
	// The rate met, the CPU not: the target is not met.
	rounds = []tracingRound{round(benchRun(1000, 800, 1400), benchRun(1000, 800, 1484))} // 100 %, 106 %
	if v := judge(rounds); v.ok || !near(v.rate, 1) || !near(v.cpu, 1.06) {
		t.Fatalf("judge = %+v, want rate 1, cpu 1.06, not ok", v)
	}
}

func TestJudgeLeavesOutARoundThatDidNotRunBoth(t *testing.T) {
	failed := &run{Skipped: "loadgen: exit status 1"}
	rounds := []tracingRound{
		round(benchRun(1000, 800, 1400), failed),
		round(benchRun(1000, 800, 1400), benchRun(1000, 780, 1420)),
	}
	if v := judge(rounds); v.rounds != 1 || !near(v.rate, 0.975) || !v.ok {
		t.Fatalf("judge = %+v, want the second round alone", v)
	}
	// Without tracing-off (-only tracing-10) there is nothing to judge.
	only := []tracingRound{{order: []string{"tracing-10"}, runs: map[string]*run{"tracing-10": benchRun(1000, 800, 1400)}}}
	if v := judge(only); v.rounds != 0 || v.ok {
		t.Fatalf("judge = %+v, want no rounds, not ok", v)
	}
}

func TestRoundCPUCountsJaegerButNotTheClient(t *testing.T) {
	r := benchRun(1000, 800, 1000)
	r.Cost.CPU[groupJaeger] = 50 * time.Millisecond // 50 µs a transfer
	x, ok := tracingRound{runs: map[string]*run{"tracing-10": r}}.cpu("tracing-10")
	if !ok || !near(x, 1050) {
		t.Fatalf("cpu = %v, %v; want 1050 µs a transfer", x, ok)
	}
}

func TestPoolSumsTheCostsAndTakesTheMediansOfTheRates(t *testing.T) {
	each := []*run{benchRun(1000, 800, 1400), {Skipped: "the stack died"}, benchRun(2000, 1000, 1300), benchRun(1000, 600, 1500)}
	p := pool(tracingConfigs[1], each)
	if p.Name != "tracing-10" || p.Result == nil || p.Skipped != "" {
		t.Fatalf("pool = %+v", p)
	}
	if p.Result.Operations != 4000 || p.Result.OpsPerSec != 800 || p.Result.Units != 1 {
		t.Fatalf("pooled result %+v, want 4000 operations at the median 800/s", p.Result)
	}
	if p50, _, p99 := p.Result.Main(); !near(p50, 1000.0/800) || !near(p99, 4000.0/800) {
		t.Fatalf("pooled p50 %v, p99 %v, want the medians", p50, p99)
	}
	// Each process's CPU summed: (1400 + 2×1300 + 1500) ms in all, half of it
	// process-transaction's; the client's apart.
	if got := p.Cost.CPU["process-transaction"]; got != 2750*time.Millisecond {
		t.Fatalf("process-transaction %v, want 2.75 s", got)
	}
	if _, total := ranked(p.Cost); us(total, int64(p.Result.Operations)) != 1375 {
		t.Fatalf("pooled system µs/transfer %v, want 1375", us(total, int64(p.Result.Operations)))
	}
	if p.Cost.Commits != 4000 || p.Cost.WALBytes != 4000000 || p.Cost.CPU[groupClient] != 400*time.Millisecond {
		t.Fatalf("pooled cost %+v", p.Cost)
	}
	if !strings.Contains(p.Title, "3 rounds") {
		t.Fatalf("title %q does not say how many rounds it pools", p.Title)
	}
	// No round ran: the run says why.
	if p := pool(tracingConfigs[0], []*run{{Skipped: "a"}, {Skipped: "b"}}); p.Result != nil || p.Skipped != "a; b" {
		t.Fatalf("pool of failed rounds = %+v", p)
	}
}

func TestRenderTracingWritesEveryRoundAndTheVerdict(t *testing.T) {
	rounds := []tracingRound{
		round(benchRun(1000, 800, 1400), benchRun(1000, 784, 1414)),
		round(benchRun(1000, 1000, 1300), benchRun(1000, 800, 1560)),
		round(benchRun(1000, 700, 1500), benchRun(1000, 707, 1530)),
	}
	rounds[1].order = []string{"tracing-10", "tracing-off"}
	var b strings.Builder
	renderTracing(&b, &tracingResult{rounds: rounds})
	out := b.String()
	wantAll(t, "renderTracing", out,
		"| 1 | tracing-off, tracing-10 | 800 | 784 | 98.0 % | 1400 | 1414 | 101.0 % |",
		"| 2 | tracing-10, tracing-off | 1000 | 800 | 80.0 % | 1300 | 1560 | 120.0 % |",
		"| **median** | | | | **98.0 %** | | | **102.0 %** |",
		"median over 3 rounds: **98.0 % of tracing-off's transfers/s** (target ≥ 95 % ✓) and **102.0 % of its CPU per transfer** (target ≤ 105 % ✓): the target is met ✓",
		"judged on the median of the rounds' ratios")
	// Every table row has as many cells as the header.
	var cells []int
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "|") {
			cells = append(cells, strings.Count(l, "|"))
		}
	}
	if len(cells) != 6 || slices.Min(cells) != slices.Max(cells) {
		t.Errorf("table rows' cells %v:\n%s", cells, out)
	}
}
