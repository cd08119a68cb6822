package main

import (
	"runtime/debug"
	"testing"
)

func TestTheTriggerCollectsAt300PercentUnlessGOGCIsSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	setGC(func(string) string { return "" })
	if p := debug.SetGCPercent(100); p != 300 {
		t.Errorf("without GOGC the GC percent is %d, want 300", p)
	}
	setGC(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	})
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("with GOGC set the trigger changed the GC percent to %d", p)
	}
}
