package server

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// PprofDirEnv turns on profiling for make bench (cmd/bench): when it names a
// directory, the process serves CPU profiles on a loopback port of its own
// and writes that port's address to <dir>/<name>.addr. Unset (the default,
// and always in a deployment) nothing listens. The listener answers
//
//	POST /debug/cpu/start   starts a CPU profile (409 when one runs)
//	POST /debug/cpu/stop    stops it and answers the profile (pprof format)
//	GET  /debug/pprof/{name} a runtime/pprof profile: heap, goroutine, allocs…
//
// net/http/pprof is not imported: it registers itself on
// http.DefaultServeMux, and its CPU profile runs for a fixed number of
// seconds where the bench needs one that lasts exactly a scenario.
const PprofDirEnv = "BILLFN_PPROF_DIR"

// StartPprof serves the profiles of PprofDirEnv for the process called name
// when the variable is set; it returns at once either way. A failure is
// logged and leaves the process running: profiling is never a reason to stop.
func StartPprof(name string) {
	dir := os.Getenv(PprofDirEnv)
	if dir == "" {
		return
	}
	if err := startPprof(dir, name); err != nil {
		slog.Warn("profiling is off", "err", err.Error())
	}
}

func startPprof(dir, name string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	file := filepath.Join(dir, name+".addr")
	if err := os.WriteFile(file+".tmp", []byte(ln.Addr().String()), 0o644); err != nil {
		ln.Close()
		return err
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: PprofHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	slog.Info("profiling", "addr", ln.Addr().String(), "file", file)
	return nil
}

// PprofHandler is the mux of the profiling listener (see PprofDirEnv).
func PprofHandler() http.Handler {
	var (
		mu      sync.Mutex
		running *bytes.Buffer
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /debug/cpu/start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if running != nil {
			http.Error(w, "a CPU profile is running", http.StatusConflict)
			return
		}
		buf := &bytes.Buffer{}
		if err := pprof.StartCPUProfile(buf); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		running = buf
	})
	mux.HandleFunc("POST /debug/cpu/stop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if running == nil {
			http.Error(w, "no CPU profile is running", http.StatusConflict)
			return
		}
		pprof.StopCPUProfile()
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(running.Bytes())
		running = nil
	})
	mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := pprof.Lookup(r.PathValue("name"))
		if p == nil {
			http.Error(w, fmt.Sprintf("no profile %q", r.PathValue("name")), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_ = p.WriteTo(w, 0)
	})
	return mux
}
