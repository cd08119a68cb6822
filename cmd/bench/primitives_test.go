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
