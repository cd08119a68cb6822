package main

// The cost of tracing (issue 19): the transfers-through-the-gateway
// scenario on three stacks of its own, one after the other on the bench's
// ports, after the main stack stopped: tracing off, 10 % of new traces
// sampled, and every trace, both exported to a real Jaeger the bench
// starts (testenv.JaegerBinary; in-memory storage). The target: at 10 %,
// fewer than 5 % fewer transfers/s than off. On this shared machine the
// throughput is noisy; the cost table's CPU per transfer of each process
// is the steadier comparison. Jaeger shares the stack's cores: the runs
// that export to it count its CPU in their cost table (the off run does
// not, it sends Jaeger nothing).

import (
	"context"
	"fmt"
	"time"

	"github.com/billfn/billfn/shared/testenv"
)

// Jaeger's ports during the tracing runs (the stack's are 28080–28111).
const (
	benchJaegerUI   = "127.0.0.1:28120"
	benchJaegerGRPC = "127.0.0.1:28121"
	benchOTLPGRPC   = "127.0.0.1:28122"
	benchOTLPHTTP   = "127.0.0.1:28123"
)

// tracingRun is one tracing configuration of the transfers scenario.
type tracingRun struct {
	name, title string
	env         []string // added to the stack's environment
}

// Their titles do not start with "transfers": render would hold them to
// the transfers scenario's pgbench target.
var tracingConfigs = []tracingRun{
	{"tracing-off", "tracing off: transfers through the gateway", []string{"BILLFN_OTLP_ENDPOINT=none"}},
	{"tracing-10", "tracing 10 % sampled, to Jaeger: transfers through the gateway", []string{"BILLFN_OTLP_ENDPOINT=http://" + benchOTLPHTTP,
		"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.1"}},
	{"tracing-100", "tracing every trace, to Jaeger: transfers through the gateway", []string{"BILLFN_OTLP_ENDPOINT=http://" + benchOTLPHTTP,
		"OTEL_TRACES_SAMPLER=parentbased_always_on"}},
}

// tracingRuns measures the selected tracing configurations, each on a
// fresh stack; the main stack must be stopped (same ports).
func tracingRuns(ctx context.Context, root, tmp string, quick bool, idle *cost) ([]*run, error) {
	var todo []tracingRun
	needJaeger := false
	for _, c := range tracingConfigs {
		if selected == nil || selected.MatchString(c.name) {
			todo = append(todo, c)
			needJaeger = needJaeger || c.name != "tracing-off"
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	jaegerPid := 0
	if needJaeger {
		pid, stop, err := startBenchJaeger(ctx, tmp)
		if err != nil {
			return nil, err
		}
		defer stop()
		jaegerPid = pid
	}
	var runs []*run
	var off *run
	for _, c := range todo {
		r := &run{Name: c.name, Title: c.title,
			Args: []string{"transfers", "-c", "16", "-n", scale(30000, quick), "-url", "http://" + gatewayAddr + "/function/process-transaction"}}
		if c.name == "tracing-off" {
			off = r
		} else {
			r.Extra = map[int]string{jaegerPid: groupJaeger}
		}
		if c.name == "tracing-10" {
			r.Target = "< 5 % fewer transfers/s than tracing-off"
			r.Check = func(res *loadResult) bool {
				return off != nil && off.Result != nil && res.OpsPerSec >= 0.95*off.Result.OpsPerSec
			}
		}
		step("starting a stack for " + c.name)
		stack, err := startStack(ctx, root, tmp, c.env...)
		if err != nil {
			return nil, err
		}
		err = measure(ctx, root, tmp, stack, idle, r)
		stack.stop()
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	if off != nil && off.Result != nil && off.Result.OpsPerSec > 0 {
		for _, r := range runs {
			if r != off && r.Result != nil {
				r.Title += fmt.Sprintf(" (%.1f %% of tracing-off's transfers/s)", 100*r.Result.OpsPerSec/off.Result.OpsPerSec)
			}
		}
	}
	return runs, nil
}

// startBenchJaeger runs Jaeger on the bench's ports until stop; pid is its
// process.
func startBenchJaeger(ctx context.Context, tmp string) (pid int, stop func(), err error) {
	step("starting Jaeger (OTLP " + benchOTLPHTTP + ")")
	bin, err := testenv.JaegerBinary(ctx, func(f string, a ...any) { step(fmt.Sprintf(f, a...)) })
	if err != nil {
		return 0, nil, fmt.Errorf("jaeger: %w", err)
	}
	p, err := testenv.RunJaeger(ctx, bin, tmp, testenv.JaegerConfig(benchJaegerUI, benchJaegerGRPC, benchOTLPGRPC, benchOTLPHTTP, ""), "http://"+benchJaegerUI, time.Minute)
	if err != nil {
		return 0, nil, err
	}
	return p.Pid, p.Stop, nil
}
