package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// An aloneBench is one function's own `go test -bench`: its handler on real
// PostgreSQL, Redis and kfake, no HTTP client, gateway or other function —
// the "function alone" figures beside the whole system's.
type aloneBench struct {
	Name  string // for -only: alone-<Name>
	Title string
	Pkg   string
	Bench string // the -bench regular expression
	Times int    // -benchtime <Times>x, so every run does the same work
}

var aloneBenches = []aloneBench{
	{"gateway", "the gateway hop (health, direct and through the gateway)", "./cmd/internal/gateway", "^BenchmarkGatewayOverhead$", 200000},
	{"transfers", "sync transfers, 16 clients", "./functions/process-transaction", "^BenchmarkSyncTransfers$", 20000},
	{"invoices", "invoices, sync create + finalize", "./functions/generate-invoice/api", "^BenchmarkCreateFinalizeSync$", 2000},
	{"invoices-batch", "invoices, POST /invoices/batch", "./functions/generate-invoice/api", "^BenchmarkBatchEndpoint$", 2000},
	{"payments", "payments through the sandbox: created and captured in one request, and in two", "./functions/capture-payment", "^BenchmarkSandbox(CreateCapturedPayment|CreateThenCapture)$", 5000},
	{"webhooks", "webhooks, signed and verified", "./functions/handle-webhook", "^BenchmarkVerifiedWebhooks$", 10000},
	{"deliveries", "outgoing webhook deliveries", "./functions/handle-webhook", "^BenchmarkOutgoingDeliveries$", 2000},
	{"events", "event ingestion, aggregate-report", "./functions/aggregate-report", "^BenchmarkBatchDelivery$", 40},
}

// aloneResult is one line of `go test -bench` output: the benchmark's name,
// its iterations and the metrics it reported, in order.
type aloneResult struct {
	Bench   aloneBench
	Lines   []benchLine
	Skipped string
}

type benchLine struct {
	Name    string
	N       int64
	Metrics []metric
}

type metric struct {
	Value float64
	Unit  string
}

// runAlone runs each selected function-alone benchmark once, with the
// stack stopped (they start what they need).
func runAlone(ctx context.Context, root string, quick bool) []aloneResult {
	var out []aloneResult
	for _, a := range aloneBenches {
		if selected != nil && !selected.MatchString("alone-"+a.Name) {
			continue
		}
		step("function alone: " + a.Title + " (go test -bench " + a.Bench + " " + a.Pkg + ")")
		times := a.Times
		if quick {
			times = max(times/20, 10)
		}
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-count", "1", "-bench", a.Bench,
			"-benchtime", strconv.Itoa(times)+"x", "-timeout", "20m", a.Pkg)
		cmd.Dir = root
		var stdout bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
		r := aloneResult{Bench: a}
		err := cmd.Run()
		r.Lines = parseBench(stdout.Bytes())
		if err != nil || len(r.Lines) == 0 {
			r.Skipped = "go test -bench gave no result line"
			if err != nil {
				r.Skipped = fmt.Sprintf("go test -bench failed (%v)", err)
				if why := testFailure(stdout.Bytes()); why != "" {
					r.Skipped += ": " + why
				}
			}
			fmt.Fprintln(os.Stderr, stdout.String())
		}
		out = append(out, r)
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

// parseBench reads the result lines of `go test -bench`:
// "BenchmarkX/sub-2   20000   3817 transfers/s   2.10 p50_ms ...". A log
// line the benchmark writes to stdout while it runs lands between the name
// and the figures ("BenchmarkX-2 \t<log line>\n  20000  3817 transfers/s"):
// the name is kept until a line of figures follows.
func parseBench(out []byte) []benchLine {
	var (
		lines   []benchLine
		pending string
	)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		name := ""
		if strings.HasPrefix(f[0], "Benchmark") {
			name, f = f[0], f[1:]
			if i := strings.LastIndexByte(name, '-'); i > 0 {
				name = name[:i] // the GOMAXPROCS suffix
			}
			pending = name
		}
		l, ok := figures(f)
		if !ok {
			continue
		}
		if name == "" {
			if pending == "" {
				continue
			}
			name = pending
		}
		l.Name, pending = name, ""
		lines = append(lines, l)
	}
	return lines
}

// figures reads "20000  3817 transfers/s  2.10 p50_ms …": the iterations,
// then value–unit pairs.
func figures(f []string) (benchLine, bool) {
	if len(f) < 3 || len(f)%2 != 1 {
		return benchLine{}, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return benchLine{}, false
	}
	l := benchLine{N: n}
	for i := 1; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return benchLine{}, false
		}
		if f[i+1] == "ns/op" && v == 0 {
			continue // a benchmark that reports its own rates zeroes ns/op
		}
		l.Metrics = append(l.Metrics, metric{v, f[i+1]})
	}
	return l, true
}

func (m metric) String() string {
	switch {
	case strings.HasSuffix(m.Unit, "_ms") || strings.HasSuffix(m.Unit, "-ms"):
		return fmt.Sprintf("%s %.2f ms", m.Unit[:len(m.Unit)-3], m.Value)
	case m.Unit == "ns/op":
		return fmt.Sprintf("%.1f µs/op", m.Value/1000)
	case strings.HasSuffix(m.Unit, "/s"):
		return fmt.Sprintf("%.0f %s", m.Value, m.Unit)
	}
	return fmt.Sprintf("%g %s", m.Value, m.Unit)
}

// renderAlone is the report's section of the function-alone benchmarks.
func renderAlone(results []aloneResult) string {
	if len(results) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Functions alone (`go test -bench`)\n\n")
	b.WriteString("Each function's own benchmark, run by `make bench` after the stack has stopped: the handler on real PostgreSQL, Redis and kfake, no HTTP client, no gateway, no other function consuming its events (`go test -run '^$' -bench <benchmark> -benchtime <N>x <package>`). Rates and latencies are the benchmark's own metrics.\n\n")
	b.WriteString("| what | benchmark | package | iterations | figures |\n|---|---|---|---:|---|\n")
	for _, r := range results {
		if r.Skipped != "" {
			fmt.Fprintf(&b, "| %s | `%s` | `%s` | | %s |\n", r.Bench.Title, strings.Trim(r.Bench.Bench, "^$"), r.Bench.Pkg, r.Skipped)
			continue
		}
		for _, l := range r.Lines {
			var figs []string
			for _, m := range l.Metrics {
				figs = append(figs, m.String())
			}
			fmt.Fprintf(&b, "| %s | `%s` | `%s` | %d | %s |\n", r.Bench.Title, l.Name, r.Bench.Pkg, l.N, strings.Join(figs, ", "))
		}
	}
	return b.String()
}

// The README carries a copy of the run of record's tables between these
// markers; make bench rewrites it after a full run, so no figure in it is
// typed by hand.
const (
	readmeStart = "<!-- make bench writes from here: the run of record's tables (cmd/bench) -->"
	readmeEnd   = "<!-- make bench writes up to here -->"
)

// updateReadme replaces the README's copy with the report's first lines
// (when and what was measured, pgbench) and its scenario and function-alone
// tables.
func updateReadme(path, report string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, readmeStart), strings.Index(s, readmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q … %q block", path, readmeStart, readmeEnd)
	}
	var keep []string
	table, scenarios := "", false
	for _, line := range strings.Split(report, "\n") {
		switch {
		case strings.HasPrefix(line, "Written by `make bench`"), strings.HasPrefix(line, "pgbench TPC-B"):
			keep = append(keep, line, "")
		case strings.HasPrefix(line, "| scenario |") && !scenarios, strings.HasPrefix(line, "| what | benchmark |"):
			// The first scenario table (the cost table comes later).
			scenarios = scenarios || strings.HasPrefix(line, "| scenario |")
			table = line
			keep = append(keep, line)
		case table != "" && strings.HasPrefix(line, "|"):
			keep = append(keep, line)
		case table != "":
			table = ""
			keep = append(keep, "")
		}
	}
	out := s[:i] + readmeStart + "\n" + strings.Join(keep, "\n") + "\n" + s[j:]
	return os.WriteFile(path, []byte(out), 0o644)
}

// failureLine matches what t.Error and t.Fatal print: "    x_test.go:57: …".
var failureLine = regexp.MustCompile(`(?m)^\s+(\w+_test\.go:\d+: .*)$`)

// testFailure is the first failure go test printed, so that the table
// says why a benchmark gave no figures ("" when it printed none).
func testFailure(out []byte) string {
	m := failureLine.FindSubmatch(out)
	if m == nil {
		return ""
	}
	why := string(m[1])
	if len(why) > 200 {
		why = why[:200] + "…"
	}
	return strings.NewReplacer("|", "/", "`", "'").Replace(why)
}
