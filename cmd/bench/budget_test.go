package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBudgetSplitsAUnitsCostByWhereItGoes(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{
		groupBackends("billfn_bench"): 300 * time.Millisecond,
		groupPGServer:                 10 * time.Millisecond,
		"process-transaction":         200 * time.Millisecond,
		groupStack:                    100 * time.Millisecond,
		"kafka-trigger":               50 * time.Millisecond,
		"aggregate-report":            40 * time.Millisecond,
		groupRedis:                    20 * time.Millisecond,
		groupClient:                   80 * time.Millisecond,
	}}
	// 1000 units on 2 cores at a target of 4000/s: 500 µs each.
	r := budgetOf("t", "process-transaction", 4000, c, 1000, 2, 0, false)
	want := budgetRow{title: "t", called: "process-transaction", rate: 4000, budget: 500, spent: 800,
		pg: 310, fn: 200, stack: 100, others: 90, rest: 20, client: 80, ceiling: 2500}
	if r != want {
		t.Fatalf("budgetOf =\n%+v, want\n%+v", r, want)
	}
	// PostgreSQL alone within the budget, the whole over it.
	if r.met || r.pgOverBudget {
		t.Fatalf("met %v, pgOverBudget %v", r.met, r.pgOverBudget)
	}
}

func TestBudgetMarksATargetPostgreSQLAloneCannotMeet(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{groupBackends("x"): 600 * time.Millisecond}}
	if r := budgetOf("t", "", 4000, c, 1000, 2, 0, false); !r.pgOverBudget || r.met {
		t.Fatalf("%+v", r)
	}
}

// A process that stands in for a service a deployment runs elsewhere
// (Mailpit, stripe-mock, Jaeger) and alone costs more than the budget
// keeps the target out of billfn's reach, as PostgreSQL's share does: the
// rest column says so with ‼ and a sentence names it. Redis is billfn's
// own dependency, not a stand-in, and never marked so.
func TestBudgetMarksATargetAStandInAloneCannotMeet(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{
		"mailpit":     1200 * time.Millisecond,
		"stripe-mock": 100 * time.Millisecond,
		groupRedis:    10 * time.Millisecond,
		groupClient:   50 * time.Millisecond,
	}}
	r := budgetOf("t", "", 4000, c, 1000, 2, 0, false) // 500 µs a unit
	if r.standIn != "mailpit" || r.standInCost != 1200 || !r.standInOverBudget() || r.rest != 1310 || r.pgOverBudget {
		t.Fatalf("%+v", r)
	}
	c.CPU["mailpit"] = 400 * time.Millisecond
	if r := budgetOf("t", "", 4000, c, 1000, 2, 0, false); r.standInOverBudget() {
		t.Fatalf("a stand-in within the budget marked: %+v", r)
	}
	redis := &cost{CPU: map[string]time.Duration{groupRedis: 900 * time.Millisecond}}
	if r := budgetOf("t", "", 4000, redis, 1000, 2, 0, false); r.standIn != "" || r.standInOverBudget() {
		t.Fatalf("Redis taken for a stand-in: %+v", r)
	}

	heavy := &cost{CPU: map[string]time.Duration{"mailpit": 100 * time.Second, groupBackends("x"): time.Second, "generate-invoice": 2 * time.Second}}
	light := &cost{CPU: map[string]time.Duration{"mailpit": time.Millisecond, groupBackends("x"): time.Second}}
	runs := []*run{
		{Name: "invoices-batch", Title: "invoice batches", Args: []string{"-url", "http://g/function/generate-invoice"}, Result: &loadResult{Operations: 1000}, Cost: heavy},
		{Name: "webhooks", Title: "webhooks", Args: []string{"-url", "http://g/function/handle-webhook"}, Result: &loadResult{Operations: 1000}, Cost: light},
	}
	var b strings.Builder
	renderBudget(&b, runs, &pgResult{TPS: 1000, Txns: 1000, Cost: light})
	out := b.String()
	wantAll(t, "renderBudget", out,
		"| 100000 ‼ |",
		"Where a stand-in alone exceeds the budget (‼ in its column):",
		"- **invoice batches**: Mailpit, the SMTP relay's stand-in, spends 100000 µs per unit,",
		"The unit's other processes spend 3000 µs")
	if strings.Contains(out, "**webhooks**") || strings.Count(out, " ‼ |") != 1 {
		t.Errorf("a target within the stand-ins' reach marked:\n%s", out)
	}
}

// The gateway and kfake run in one process; the budget shows kfake
// (Kafka's stand-in) apart, by its share of that process's CPU profile,
// and marks a target kfake alone keeps out of reach as it marks Mailpit.
// Without a profile, kfake's column says — and the gateway's holds both.
func TestBudgetShowsKfakeApartFromTheGateway(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{
		groupBackends("x"): 200 * time.Millisecond,
		"capture-payment":  100 * time.Millisecond,
		groupStack:         800 * time.Millisecond,
		groupRedis:         10 * time.Millisecond,
		"kafka-trigger":    40 * time.Millisecond,
		groupClient:        50 * time.Millisecond,
	}}
	r := budgetOf("t", "capture-payment", 4000, c, 1000, 2, 0.75, true) // 500 µs a unit
	if r.kfake != 600 || r.stack != 200 || r.spent != 1200 || !r.kfakeKnown || r.standIn != standInKfake || !r.standInOverBudget() {
		t.Fatalf("%+v", r)
	}
	if r := budgetOf("t", "capture-payment", 4000, c, 1000, 2, 0, false); r.kfake != 0 || r.stack != 800 || r.spent != 1200 || r.standIn != "" {
		t.Fatalf("without a profile: %+v", r)
	}
	runs := []*run{
		{Name: "payments", Title: "payments", Args: []string{"-url", "http://g/function/capture-payment"}, Result: &loadResult{Operations: 1000}, Cost: c,
			KfakeShare: 0.75, KfakeMeasured: true},
		{Name: "webhooks", Title: "webhooks", Args: []string{"-url", "http://g/function/handle-webhook"}, Result: &loadResult{Operations: 1000}, Cost: c},
	}
	var b strings.Builder
	renderBudget(&b, runs, &pgResult{TPS: 1000, Txns: 1000, Cost: c})
	wantAll(t, "renderBudget", b.String(),
		"| gateway | kfake |",
		// 1000/s on 2 cores: 2000 µs; kfake 600 within it.
		"| payments | 1000/s | 2000 | 1200 | 0.60 ✓ | 200 | 100 (capture-payment) | 200 | 600 | 40 | 10 | 50 | 1667 |",
		// capture-payment is one of the other functions here.
		"| webhooks | 2000/s | 1000 | 1200 | 1.20 ✗ | 200 | 0 (handle-webhook) | 800 | — | 140 | 10 | 50 | 1667 |")
}

// parseShare reads what `go tool pprof -top -focus` says, and
// profileShare runs it on a real profile: the samples in a function
// burning CPU are most of this test's, those of a name no frame has none.
func TestProfileShareIsTheFocusedSamplesOfAll(t *testing.T) {
	for out, want := range map[string]float64{
		"Type: cpu\nActive filters:\n   focus=kfake\nShowing nodes accounting for 1.20s, 27.15% of 4.42s total\n": 0.2715,
		"Showing nodes accounting for 0, 0% of 80ms total\n":                                                      0,
		"Focus expression matched no samples\nType: cpu\n":                                                        0,
	} {
		if got, ok := parseShare(out); !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("parseShare(%q) = %v %v, want %v", out, got, ok, want)
		}
	}
	if _, ok := parseShare("go tool pprof: no such file"); ok {
		t.Error("parseShare read a share from an error")
	}

	file := filepath.Join(t.TempDir(), "cpu.pprof")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	burnCPU(300 * time.Millisecond)
	pprof.StopCPUProfile()
	f.Close()
	ctx := context.Background()
	if got, ok := profileShare(ctx, file, `burnCPU`); !ok || got < 0.5 || got > 1 {
		t.Errorf("burnCPU's share = %v %v, want most of the samples", got, ok)
	}
	if got, ok := profileShare(ctx, file, kfakeFocus); !ok || got != 0 {
		t.Errorf("kfake's share of a profile without kfake = %v %v, want 0", got, ok)
	}
	if _, ok := profileShare(ctx, filepath.Join(t.TempDir(), "missing.pprof"), `burnCPU`); ok {
		t.Error("a share read from a missing profile")
	}
}

// burnCPU spins until the process has used d more CPU time (not wall
// time: the profile then holds about d × 100 samples however loaded the
// machine is).
func burnCPU(d time.Duration) {
	start := cpuTime()
	x := 1.0
	for cpuTime()-start < d {
		for range 100_000 {
			x = x*1.0000001 + 1e-9
		}
	}
	sink = x
}

var sink float64

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestCalledFunctionIsReadFromTheScenarioURL(t *testing.T) {
	for _, tc := range []struct {
		r    run
		want string
	}{
		{run{Name: "payments", Args: []string{"payments", "-url", "http://127.0.0.1:28080/function/capture-payment", "-gateway", "x"}}, "capture-payment"},
		{run{Name: "emails"}, "generate-invoice"},
		{run{Name: "health-direct", Args: []string{"health", "-url", "http://127.0.0.1:28090"}}, ""},
	} {
		if got := calledFunction(&tc.r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.r.Name, got, tc.want)
		}
	}
}

func TestRenderBudgetWritesARowPerRateTarget(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{groupBackends("x"): time.Second, groupClient: time.Second}}
	runs := []*run{
		{Name: "webhooks", Title: "webhooks", Args: []string{"-url", "http://g/function/handle-webhook"}, Result: &loadResult{Operations: 1000}, Cost: c},
		{Name: "invoices", Title: "invoices sync", Result: &loadResult{Operations: 1000}, Cost: c}, // a p99 target only
	}
	var b strings.Builder
	renderBudget(&b, runs, &pgResult{TPS: 1000, Txns: 1000, Cost: c})
	out := b.String()
	if !strings.Contains(out, "| webhooks | 2000/s |") || strings.Contains(out, "invoices sync") || !strings.Contains(out, "pgbench TPC-B") {
		t.Fatalf("renderBudget:\n%s", out)
	}
}

func TestCommitsOfSplitsPostgreSQLsCPUOverTheCommitsAndFloorsItAtTheCheapest(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{
		groupBackends("billfn_bench"): 2200 * time.Millisecond,
		groupPGServer:                 200 * time.Millisecond,
		"capture-payment":             time.Second, // not PostgreSQL's
	}, Commits: 3200, XIDs: 3000}
	// 1000 units, a budget of 2000 µs, the cheapest commit 500 µs.
	r := commitsOf("payments", 2000, c, 1000, 500)
	want := commitRow{title: "payments", budget: 2000, pg: 2400, commits: 3.2, wrote: 3, rows: -1, entries: -1, perCommit: 750, floor: 1500, pgOverBudget: true}
	if r != want {
		t.Fatalf("commitsOf =\n%+v, want\n%+v", r, want)
	}
	// Transaction ids are the whole server's: never more writing
	// transactions than commits.
	c.XIDs = 9000
	if r := commitsOf("payments", 1000, c, 1000, 500); r.wrote != 3.2 || r.floor != 1600 || !r.floorOverBudget {
		t.Fatalf("with another database's ids: %+v", r)
	}
	// No cheapest commit measured: no floor.
	if r := commitsOf("payments", 1000, c, 1000, 0); r.floor != 0 || r.floorOverBudget {
		t.Fatalf("without a cheapest commit: %+v", r)
	}
}

func TestRenderCommitsExplainsEveryScenarioPostgreSQLAloneKeepsFromItsTarget(t *testing.T) {
	pgCPU := func(ms int) map[string]time.Duration {
		return map[string]time.Duration{groupBackends("x"): time.Duration(ms) * time.Millisecond}
	}
	pg := &pgResult{TPS: 1000, Txns: 1000, Cost: &cost{CPU: pgCPU(1000), Commits: 1000, XIDs: 1000},
		MinCommit: &pgbenchRun{TPS: 2000, Txns: 1000, Cost: &cost{CPU: map[string]time.Duration{
			groupBackends("x"): 400 * time.Millisecond, groupPGServer: 100 * time.Millisecond}, Commits: 1000, XIDs: 1000}}}
	runs := []*run{
		// 2 cores at 2000/s: 1000 µs a unit; PostgreSQL 2,400 in 3 commits
		// that all wrote: floor 3 × the cheapest commit's backend, 1,200.
		{Name: "webhooks", Title: "webhooks", Result: &loadResult{Operations: 1000}, Cost: &cost{CPU: pgCPU(2400), Commits: 3000, XIDs: 3000,
			// 5 rows a unit: 3 inserted into a table of 3 indexes (9 entries), 2 updated in
			// one of 2 (one HOT: 2 entries).
			Rows: map[string]tableRows{"a": {Ins: 3000, Indexes: 3}, "b": {Upd: 2000, HOT: 1000, Indexes: 2}}}},
		// 2 cores at 1000/s: 2000 µs; PostgreSQL 2,400 in 3 commits, one
		// wrote: floor 400.
		{Name: "payments", Title: "payments", Result: &loadResult{Operations: 1000}, Cost: &cost{CPU: pgCPU(2400), Commits: 3000, XIDs: 1000}},
		{Name: "health-gateway", Title: "health", Result: &loadResult{Operations: 1000}, Cost: &cost{CPU: pgCPU(0)}}, // no commits: no row
	}
	var b strings.Builder
	renderCommits(&b, runs, pg, 2)
	out := b.String()
	wantAll(t, "renderCommits", out,
		"| pgbench TPC-B (for scale) | — | 1000 | 1.00 | 1.00 | — | — | 1000 | — | — |",
		"| pgbench, the cheapest commit: one row updated by primary key | — | 500 | 1.00 | 1.00 | — | — | 500 | — | — |",
		"| webhooks | 1000 | 2400 | 3.00 | 3.00 | 5.00 | 11.00 | 800 | 1200 | 1.20 ‼ |",
		"| payments | 2000 | 2400 | 3.00 | 1.00 | — | — | 800 | 400 | 0.20 |",
		"- **webhooks**: 3.00 commits per unit at 800 µs of PostgreSQL CPU each, against 1000 per pgbench TPC-B transaction and 500 for the cheapest commit (400 in its backend); 3.00 of them wrote, so PostgreSQL spends at least 1200 µs per unit, 1.20 × its budget of 1000: what keeps it from its target is the number of writing transactions, not their cost.",
		"- **payments**: 3.00 commits per unit at 800 µs",
		"cheaper commits could bring PostgreSQL's share within the budget.")
	if strings.Contains(out, "| health |") {
		t.Errorf("a scenario without commits has a row:\n%s", out)
	}
}

// wantAll fails t for each of wants that out, what a render function
// wrote, does not contain.
func wantAll(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, out)
		}
	}
}

// The cost table of a scenario says, under the stack process, what of it
// kfake spent.
func TestTheCostTableSaysKfakesPartOfTheStackProcess(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{groupStack: 800 * time.Millisecond, "capture-payment": 200 * time.Millisecond}, Window: time.Second}
	runs := []*run{{Name: "payments", Title: "payments", Result: &loadResult{Operations: 1000}, Cost: c, KfakeShare: 0.75, KfakeMeasured: true}}
	var b strings.Builder
	renderCost(context.Background(), &b, runs, nil, nil)
	wantAll(t, "renderCost", b.String(), "| "+groupStack+" | 800 | 800 | 80% |\n| ↳ of which kfake (75% of the process's profile) | 600 | 600 | 60% |")
	runs[0].KfakeMeasured = false
	b.Reset()
	renderCost(context.Background(), &b, runs, nil, nil)
	if strings.Contains(b.String(), "of which kfake") {
		t.Errorf("kfake's part said without a profile:\n%s", b.String())
	}
}

// A unit is an operation that succeeded: a run where some were refused
// (an open loop past a function's max_inflight gets 429s, cheap answers)
// spreads its CPU over those that succeeded, and says so, rather than
// passing the refusals off as cheap units.
func TestTheBudgetCountsOnlyTheOperationsThatSucceeded(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{groupBackends("x"): 1500 * time.Millisecond, groupClient: 500 * time.Millisecond}, Commits: 1000}
	runs := []*run{{Name: "payments-open", Title: "payments open", Args: []string{"-url", "http://g/function/capture-payment"},
		Result: &loadResult{Operations: 1000, Failed: 200}, Cost: c}}
	var b strings.Builder
	renderBudget(&b, runs, &pgResult{TPS: 1000, Txns: 1000, Cost: c})
	// 2 s of CPU over the 800 that succeeded: 2500 µs each, not 2000.
	if out := b.String(); !strings.Contains(out, "| payments open (200 of 1000 failed: the CPU of all over the 800 that succeeded) | 1000/s | 2000 | 2500 | 1.25 ✗ |") {
		t.Errorf("renderBudget:\n%s", out)
	}
	b.Reset()
	renderCommits(&b, runs, &pgResult{TPS: 1000, Txns: 1000, Cost: c}, 2)
	if out := b.String(); !strings.Contains(out, "| payments open (200 of 1000 failed: the CPU of all over the 800 that succeeded) | 2000 | 1875 | 1.25 |") {
		t.Errorf("renderCommits:\n%s", out)
	}
}

// The table of CPU per operation divides by every operation sent, those
// that failed too (each cost what it cost): it says how many failed, so
// that its figures are not read as the cost of operations that succeeded.
func TestTheCostPerOperationSaysHowManyFailed(t *testing.T) {
	c := &cost{CPU: map[string]time.Duration{groupBackends("x"): 1500 * time.Millisecond, groupClient: 500 * time.Millisecond}, Commits: 1000}
	runs := []*run{{Name: "payments-open", Title: "payments open", Result: &loadResult{Operations: 1000, Failed: 200}, Cost: c},
		{Name: "payments", Title: "payments closed", Result: &loadResult{Operations: 1000}, Cost: c}}
	var b strings.Builder
	renderCost(context.Background(), &b, runs, nil, nil)
	out := b.String()
	for _, want := range []string{"| payments open | 1000 (200 failed) | 1500 |", "| payments closed | 1000 | 1500 |",
		"### payments open\n\n1000 operations, of which 200 failed;", "### payments closed\n\n1000 operations;"} {
		if !strings.Contains(out, want) {
			t.Errorf("renderCost lacks %q:\n%s", want, out)
		}
	}
}
