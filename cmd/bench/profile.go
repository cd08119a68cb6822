package main

// CPU profiles of every Go process of the stack over a scenario's window:
// each serves them on a loopback port of its own when BILLFN_PPROF_DIR is
// set (shared/server.StartPprof), written to <dir>/<process>.addr.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

type profiler struct {
	dir     string // BILLFN_PPROF_DIR of the stack
	client  *http.Client
	running []string // processes whose profile runs: name → addr file read at start
	addrs   map[string]string
}

func newProfiler(dir string) *profiler {
	return &profiler{dir: dir, client: &http.Client{Timeout: 10 * time.Second}}
}

// start starts a CPU profile in every process that serves one.
func (p *profiler) start() {
	p.running, p.addrs = nil, map[string]string{}
	files, _ := filepath.Glob(filepath.Join(p.dir, "*.addr"))
	for _, f := range files {
		addr, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(f), ".addr")
		if _, err := p.post(string(addr), "start"); err != nil {
			fmt.Fprintf(os.Stderr, "   profile of %s: %v\n", name, err)
			continue
		}
		p.running = append(p.running, name)
		p.addrs[name] = string(addr)
	}
	sort.Strings(p.running)
}

// stop stops them and writes each profile to dir/<process>.pprof; it
// returns the files written by process name.
func (p *profiler) stop(dir string) map[string]string {
	out := map[string]string{}
	if len(p.running) == 0 {
		return out
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "  ", err)
		return out
	}
	for _, name := range p.running {
		b, err := p.post(p.addrs[name], "stop")
		if err != nil {
			// A function restarted during the scenario: its profile is gone.
			fmt.Fprintf(os.Stderr, "   profile of %s: %v\n", name, err)
			continue
		}
		file := filepath.Join(dir, name+".pprof")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "  ", err)
			continue
		}
		out[name] = file
	}
	p.running = nil
	return out
}

func (p *profiler) post(addr, what string) ([]byte, error) {
	res, err := p.client.Post("http://"+addr+"/debug/cpu/"+what, "", nil)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s %s", what, res.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// kfakeFocus matches the frames of kfake, the Kafka that the local stack
// runs in its own process beside the gateway: a deployment runs Kafka
// elsewhere, so the budget shows its CPU apart from the gateway's.
const kfakeFocus = `github\.com/twmb/franz-go/pkg/kfake\.`

// profileShare is the share, 0 to 1, of a CPU profile's samples that have
// a frame matching focus (`go tool pprof -focus`), and whether it could
// tell. The process's measured CPU times that share is what the frames
// cost, to within the profile's sampling (100 samples a second).
func profileShare(ctx context.Context, file, focus string) (float64, bool) {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=1000000", "-nodefraction=0", "-edgefraction=0",
		"-focus="+focus, file).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "matched no samples") {
		return 0, false
	}
	return parseShare(string(out))
}

// parseShare reads the share from `go tool pprof -top -focus` with every
// node shown: "Showing nodes accounting for 1.20s, 27.15% of 4.42s total"
// (the focused samples, of all), or "matched no samples" (0).
func parseShare(out string) (float64, bool) {
	if strings.Contains(out, "matched no samples") {
		return 0, true
	}
	for _, l := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "Showing nodes accounting for ")
		if !ok {
			continue
		}
		_, pct, ok := strings.Cut(rest, ", ")
		if pct, _, ok = strings.Cut(pct, "%"); !ok {
			return 0, false
		}
		v, err := strconv.ParseFloat(pct, 64)
		if err != nil || v < 0 || v > 100 {
			return 0, false
		}
		return v / 100, true
	}
	return 0, false
}

// top is `go tool pprof -top` of a profile: its 10 hottest functions by
// flat time, without the lines naming the file and build.
func top(ctx context.Context, file string) string {
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=10", file).Output()
	if err != nil {
		return fmt.Sprintf("go tool pprof -top %s: %v", file, err)
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}
