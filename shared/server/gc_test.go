package server

import (
	"runtime/debug"
	"testing"
)

// The functions (Main) and the kafka-trigger collect at GCPercent unless
// GOGC is set.
func TestProcessesCollectAt300PercentUnlessGOGCIsSet(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	SetGC(func(string) string { return "" })
	if p := debug.SetGCPercent(100); p != 300 {
		t.Errorf("without GOGC the GC percent is %d, want 300", p)
	}
	SetGC(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	})
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("with GOGC set the GC percent was changed to %d", p)
	}
}
