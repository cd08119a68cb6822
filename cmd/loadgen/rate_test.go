package main

import (
	"context"
	"testing"
	"time"
)

// Open loop (-rate): an operation's latency counts from when it was due,
// not from when a worker got to it. One worker, operations due every
// 10 ms, each taking 30 ms: the fifth is due at 40 ms and ends no sooner
// than 150 ms, so it waited at least 110 ms; a closed loop would have
// said 30 ms for every one (coordinated omission).
func TestAnOpenLoopCountsLatencyFromWhenEachOperationWasDue(t *testing.T) {
	const step = 30 * time.Millisecond
	sc := Scenario{Name: "slow", Setup: func(context.Context, *Client, Options) (Step, error) {
		return func(context.Context, *Client, int, int) error { time.Sleep(step); return nil }, nil
	}}
	res, err := run(context.Background(), sc, "http://127.0.0.1:1", nil, Options{Concurrency: 1, N: 5, Rate: 100}, false)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Scheduled
	if s == nil || res.Offered != 100 || s.Requests != 5 {
		t.Fatalf("offered %v, scheduled %+v; want 5 operations offered at 100/s", res.Offered, s)
	}
	if s.MaxMs < 110 {
		t.Errorf("the last operation's latency from when it was due is %.1f ms; it waited for four before it (≥ 110 ms)", s.MaxMs)
	}
	if _, _, p99 := res.Latencies(); p99 != s.P99ms {
		t.Errorf("Latencies gives p99 %.1f ms, not the open loop's %.1f ms", p99, s.P99ms)
	}

	// A closed loop has no schedule: its latencies are its requests'.
	res, err = run(context.Background(), sc, "http://127.0.0.1:1", nil, Options{Concurrency: 1, N: 2}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != nil || res.Offered != 0 {
		t.Errorf("a closed loop reports a schedule: offered %v, %+v", res.Offered, res.Scheduled)
	}
}

// An open loop never runs ahead of its schedule, however fast the
// operations are: n operations at rate r take at least (n−1)/r.
func TestAnOpenLoopKeepsToItsRate(t *testing.T) {
	sc := Scenario{Name: "fast", Setup: func(context.Context, *Client, Options) (Step, error) {
		return func(context.Context, *Client, int, int) error { return nil }, nil
	}}
	res, err := run(context.Background(), sc, "http://127.0.0.1:1", nil, Options{Concurrency: 8, N: 21, Rate: 200}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Seconds < 0.1 {
		t.Errorf("21 operations offered at 200/s took %.3f s; the last was due at 0.1 s", res.Seconds)
	}
}
