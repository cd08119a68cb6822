package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/billfn/billfn/cmd/internal/gateway"
	"github.com/billfn/billfn/shared/server"
)

// The stack's process collects garbage at the functions' target, not the
// runtime's: fewer collections for the same calls through the gateway.
func TestTheStackCollectsAtTheFunctionsGCTarget(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, strings.Repeat(`{"id":"pi_1","status":"succeeded"}`, 20))
	}))
	defer up.Close()
	g := gateway.New(gateway.Config{Functions: []gateway.Function{{Status: gateway.FunctionStatus{Name: "f"}, Addr: up.Listener.Addr().String()}}})
	gw := httptest.NewServer(g)
	defer gw.Close()
	body := strings.Repeat("x", 1500)
	collections := func() uint32 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 3000 {
			res, err := http.Post(gw.URL+"/function/f/payments", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		runtime.ReadMemStats(&after)
		return after.NumGC - before.NumGC
	}
	atDefault := collections()
	tuneRuntime(func(string) string { return "" })
	if got := debug.SetGCPercent(server.GCPercent); got != server.GCPercent {
		t.Fatalf("the stack's GC target is %d, want the functions' %d", got, server.GCPercent)
	}
	tuned := collections()
	t.Logf("3000 calls through the gateway: %d collections at GOGC=100, %d at %d", atDefault, tuned, server.GCPercent)
	if tuned >= atDefault {
		t.Errorf("%d collections at the stack's GC target, %d at the runtime's: want fewer", tuned, atDefault)
	}
	debug.SetGCPercent(100)
	tuneRuntime(func(k string) string {
		if k == "GOGC" {
			return "50" // the runtime applied it; the stack leaves it
		}
		return ""
	})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set, the stack changed the GC target to %d", got)
	}
}
