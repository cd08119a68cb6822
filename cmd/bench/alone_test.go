package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseBenchReadsTheMetricsOfEveryResultLine(t *testing.T) {
	out := []byte("goos: linux\n" +
		"BenchmarkSyncTransfers-2   \t   20000\t         0 ns/op\t      3817 transfers/s\t         2.100 p50_ms\t         8.200 p99_ms\n" +
		"BenchmarkGatewayOverhead/direct-2   \t  200000\t     41234 ns/op\n" +
		"--- FAIL: BenchmarkOther\nPASS\nok  \tgithub.com/billfn/billfn/functions/process-transaction\t12.3s\n")
	lines := parseBench(out)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %+v", len(lines), lines)
	}
	if l := lines[0]; l.Name != "BenchmarkSyncTransfers" || l.N != 20000 || len(l.Metrics) != 3 ||
		l.Metrics[0] != (metric{3817, "transfers/s"}) || l.Metrics[2] != (metric{8.2, "p99_ms"}) {
		t.Errorf("first line %+v", l)
	}
	if l := lines[1]; l.Name != "BenchmarkGatewayOverhead/direct" || l.Metrics[0].String() != "41.2 µs/op" {
		t.Errorf("second line %+v (%s)", l, l.Metrics[0])
	}
	if got := lines[0].Metrics[2].String(); got != "p99 8.20 ms" {
		t.Errorf("p99 renders as %q", got)
	}
}

// The run of record of 2026-12-03 lost handle-webhook's two lines: its
// start-up warning, written to stdout as the benchmark ran, split each
// result line in two.
func TestParseBenchReadsAResultLineSplitByALogLine(t *testing.T) {
	out := []byte("2026/12/03 11:06:44 WARN WEBHOOK_SECRETS_KEY is not set: the endpoints' signing secrets are stored in clear\n" +
		"goos: linux\n" +
		"BenchmarkVerifiedWebhooks-2   \t2026/12/03 11:06:44 WARN WEBHOOK_SECRETS_KEY is not set: the endpoints' signing secrets are stored in clear\n" +
		"   10000\t         3.308 p50_ms\t         5.286 p90_ms\t         9.185 p99_ms\t      4284 webhooks/s\n" +
		"2026/12/03 11:06:49 WARN again\n" +
		"BenchmarkOutgoingDeliveries/endpoints=8-2         \t2026/12/03 11:06:49 WARN WEBHOOK_SECRETS_KEY is not set\n" +
		"    2000\t    477114 ns/op\t     17312 deliveries/s\n" +
		"PASS\nok  \tgithub.com/billfn/billfn/functions/handle-webhook\t2.568s\n")
	lines := parseBench(out)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %+v", len(lines), lines)
	}
	if l := lines[0]; l.Name != "BenchmarkVerifiedWebhooks" || l.N != 10000 || len(l.Metrics) != 4 || l.Metrics[3] != (metric{4284, "webhooks/s"}) {
		t.Errorf("first %+v", l)
	}
	if l := lines[1]; l.Name != "BenchmarkOutgoingDeliveries/endpoints=8" || l.N != 2000 || len(l.Metrics) != 2 {
		t.Errorf("second %+v", l)
	}
}

func TestUpdateReadmeReplacesOnlyTheBlockWithTheReportsTables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	readme := "# x\n\nbefore\n\n" + readmeStart + "\nold figures\n" + readmeEnd + "\n\nafter\n"
	if err := os.WriteFile(path, []byte(readme), 0o644); err != nil {
		t.Fatal(err)
	}
	report := "# Benchmarks\n\nWritten by `make bench` (`go run ./cmd/bench`) on 2026-12-03 10:00 UTC, measuring commit abc1234.\n\n" +
		"Machine: two cores.\n\npgbench TPC-B (scale 10): **3608 tps**.\n\n" +
		"| scenario | ops/s |\n|---|---:|\n| transfers | 2199 |\n\nThe gateway hop …\n\n## Where each operation's CPU goes\n\n| scenario | µs/op |\n|---|---:|\n| transfers | 779 |\n\n" +
		"## Functions alone (`go test -bench`)\n\n| what | benchmark | package | iterations | figures |\n|---|---|---|---:|---|\n| sync transfers | `BenchmarkSyncTransfers` | `./functions/process-transaction` | 20000 | 3817 transfers/s |\n"
	for range 2 { // twice: the second run replaces the first's copy
		if err := updateReadme(path, report); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"before\n\n" + readmeStart + "\nWritten by `make bench`", "**3608 tps**", "| transfers | 2199 |",
		"| sync transfers | `BenchmarkSyncTransfers`", readmeEnd + "\n\nafter\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("README lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"old figures", "| transfers | 779 |", "Machine:"} {
		if strings.Contains(got, not) {
			t.Errorf("README holds %q:\n%s", not, got)
		}
	}
	if strings.Count(got, "Written by") != 1 {
		t.Errorf("the block was not replaced:\n%s", got)
	}
}

// A benchmark that fails says why in its row: the first failure go test
// printed (the run of record of 2026-12-05 19:19 UTC said only "exit
// status 1").
func TestTestFailureIsTheFirstFailurePrinted(t *testing.T) {
	out := []byte("goos: linux\nBenchmarkVerifiedWebhooks-2   \t2026/12/05 WARN x\n" +
		"    bench_test.go:57: status 429: {\"code\":\"rate_limited\",\"detail\":\"a | b\"}\n" +
		"    bench_test.go:57: status 429: again\nFAIL\nexit status 1\n")
	if got, want := testFailure(out), `bench_test.go:57: status 429: {"code":"rate_limited","detail":"a / b"}`; got != want {
		t.Errorf("testFailure = %q, want %q", got, want)
	}
	if got := testFailure([]byte("goos: linux\nFAIL\n")); got != "" {
		t.Errorf("testFailure of no failure line = %q, want none", got)
	}
}

// The idle memory is /proc/<pid>/status's VmRSS and its anonymous and
// file-backed parts.
func TestReadIdleMemoryReadsRSSAndItsParts(t *testing.T) {
	status := []byte("Name:\tgenerate-invoice\nVmHWM:\t   23000 kB\nVmRSS:\t   22060 kB\nRssAnon:\t    3784 kB\nRssFile:\t   18276 kB\nRssShmem:\t       0 kB\n")
	if got, want := readIdleMemory(status), (idleMemory{RSSKB: 22060, AnonKB: 3784, FileKB: 18276}); got != want {
		t.Errorf("readIdleMemory = %+v, want %+v", got, want)
	}
}
