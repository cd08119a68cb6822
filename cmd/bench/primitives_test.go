package main

import (
	"strings"
	"testing"
)

// Every primitive is measured on this machine: a figure that could not be
// taken is 0, and the report would say "(not measured)".
func TestThePrimitivesAreMeasured(t *testing.T) {
	p := measurePrimitives()
	for name, v := range map[string]float64{"syscall": p.SyscallUs, "round trip": p.RoundTripUs, "exec": p.ExecMs, "sign": p.SignUs, "verify": p.VerifyUs, "PostgreSQL connect": p.PGConnectMs,
		"page fault": p.PageFaultUs, "a new backend's page faults": p.PGBackendFaults} {
		if v <= 0 {
			t.Errorf("%s: %v, want a positive figure", name, v)
		}
	}
	var b strings.Builder
	renderPrimitives(&b, p)
	if strings.Contains(b.String(), "not measured") {
		t.Errorf("the report says a primitive was not measured:\n%s", b.String())
	}
	t.Logf("%+v", p)
}

func TestAPrimitiveNotMeasuredIsSaid(t *testing.T) {
	var b strings.Builder
	renderPrimitives(&b, primitives{SyscallUs: 1.2, RoundTripUs: 20})
	if got := strings.Count(b.String(), "(not measured)"); got != 7 {
		t.Errorf("%d figures said not measured, want 7:\n%s", got, b.String())
	}
}

// A start-to-ready target below an exec plus a new PostgreSQL connection
// cannot be met on the machine: the report marks it ‼ and says why, as it
// does for a PostgreSQL share above a budget; on a machine where the two
// fit within 15 ms a miss is only ✗.
func TestTheStartFloorIsSaid(t *testing.T) {
	procs := []procFigures{{Name: "f", ReadyMs: []float64{30, 31, 29, 30, 30}, AtReady: make([]procStat, 5), Idle: idleMemory{RSSKB: 19 << 10}}}
	var slow strings.Builder
	renderProcesses(&slow, procs, primitives{ExecMs: 3.9, PGConnectMs: 20.7})
	if !strings.Contains(slow.String(), "< 15 ms ✗ ‼") || !strings.Contains(slow.String(), "**24.6 ms**") {
		t.Errorf("a slow machine's floor is not said:\n%s", slow.String())
	}
	var fast strings.Builder
	renderProcesses(&fast, procs, primitives{ExecMs: 2.1, PGConnectMs: 6.3})
	if strings.Contains(fast.String(), "‼") || !strings.Contains(fast.String(), "< 15 ms ✗,") {
		t.Errorf("a fast machine's miss is marked as out of reach:\n%s", fast.String())
	}
}
