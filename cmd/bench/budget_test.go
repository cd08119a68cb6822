package main

import (
	"strings"
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
	r := budgetOf("t", "process-transaction", 4000, c, 1000, 2)
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
	if r := budgetOf("t", "", 4000, c, 1000, 2); !r.pgOverBudget || r.met {
		t.Fatalf("%+v", r)
	}
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
