package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/testenv"
)

// The fixed addresses of make observe: Jaeger's UI and OTLP receivers
// (where make run's processes export by default) and Prometheus.
const (
	observeJaegerUI   = "127.0.0.1:16686"
	observeJaegerGRPC = "127.0.0.1:16685" // the query service's gRPC API
	observeOTLPGRPC   = "127.0.0.1:4317"
	observeOTLPHTTP   = "127.0.0.1:4318"
	observePrometheus = "127.0.0.1:9090"
)

// observe runs Jaeger and Prometheus beside a local stack (make observe):
// it does not start the stack, and the stack need not be running; the
// stack's processes export spans to OTLP 127.0.0.1:4318 whenever it is up,
// and Prometheus follows the targets file the stack writes in its run
// directory. Ctrl-C stops both.
func observe(ctx context.Context, cfg config, out io.Writer) error {
	log := &logger{out: out, width: len("prometheus")}
	dir := filepath.Join(cfg.RunDir, "observe")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for addr, what := range map[string]string{observeJaegerUI: "Jaeger's UI", observeOTLPHTTP: "Jaeger's OTLP/HTTP receiver",
		observeOTLPGRPC: "Jaeger's OTLP/gRPC receiver", observePrometheus: "Prometheus"} {
		if ln, err := net.Listen("tcp", addr); err != nil {
			return userErrorf("%s cannot listen on %s: %v (is make observe already running?)", what, addr, err)
		} else {
			ln.Close()
		}
	}

	jaeger, err := testenv.JaegerBinary(ctx, func(f string, a ...any) { log.printf("observe", f, a...) })
	if err != nil {
		return userErrorf("Jaeger: %v", err)
	}
	uiAssets, uiOK := jaegerUIAssets(cfg)
	if uiOK {
		log.printf("observe", "Jaeger's UI: jaeger-ui's assets in %s", uiAssets)
	} else {
		log.printf("observe", "Jaeger's UI: %s has no index.html (JAEGER_UI_ASSETS, else bin/jaeger-ui), so Jaeger serves what its binary embeds: "+
			"a placeholder page when built from its Go module; the query API works (docs/observability.md#jaegers-ui)", uiAssets)
		uiAssets = ""
	}
	jcfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(jcfg, []byte(testenv.JaegerConfig(observeJaegerUI, observeJaegerGRPC, observeOTLPGRPC, observeOTLPHTTP, uiAssets)), 0o644); err != nil {
		return err
	}
	jp := &proc{name: "jaeger", path: jaeger, args: []string{"--config", jcfg}, dir: cfg.Root, env: baseEnv(), log: log,
		health: "http://" + observeJaegerUI + "/api/services"}

	prom, err := findPrometheus(ctx, log)
	if err != nil {
		return userErrorf("Prometheus: %v", err)
	}
	pcfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(pcfg, []byte(prometheusConfig(filepath.Join(cfg.Root, "docs", "prometheus-alerts.yml"),
		filepath.Join(cfg.RunDir, TargetsFile), "5s")), 0o644); err != nil {
		return err
	}
	pp := &proc{name: "prometheus", path: prom, dir: cfg.Root, env: baseEnv(), log: log,
		args: []string{"--config.file=" + pcfg, "--web.listen-address=" + observePrometheus,
			"--storage.tsdb.path=" + filepath.Join(dir, "prometheus-data"), "--storage.tsdb.retention.time=2d",
			"--web.enable-lifecycle", "--log.level=warn"},
		health: "http://" + observePrometheus + "/-/ready"}

	if err := jp.start(); err != nil {
		return err
	}
	defer jp.stop(10 * time.Second)
	if err := pp.start(); err != nil {
		return err
	}
	defer pp.stop(10 * time.Second)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if !jp.waitHealthy(wctx) || !pp.waitHealthy(wctx) {
		if ctx.Err() != nil {
			return nil
		}
		return userErrorf("Jaeger or Prometheus did not come up (see their log lines above)")
	}
	jaegerWhat := "traces of the local stack (service = function name)"
	if uiAssets == "" {
		jaegerWhat = "traces; its UI needs jaeger-ui (docs/observability.md#jaegers-ui), its query API /api/traces answers always"
	}
	fmt.Fprintf(out, `
  Jaeger      http://%s   %s
  Prometheus  http://%s    Status → Targets: the gateway, every function, the kafka-trigger
  OTLP        http://%s (HTTP), %s (gRPC): make run's processes export here

  Run make run in another terminal (before or after this); Ctrl-C stops Jaeger and Prometheus.
`, observeJaegerUI, jaegerWhat, observePrometheus, observeOTLPHTTP, observeOTLPGRPC)
	<-ctx.Done()
	log.printf("observe", "stopping")
	return nil
}

// jaegerUIDefault is where make observe looks for jaeger-ui's built assets
// (index.html, static/) in the repository; bin/ is not committed.
const jaegerUIDefault = "bin/jaeger-ui"

// jaegerUIAssets is the directory of jaeger-ui's built assets that make
// observe's Jaeger serves as its UI: JAEGER_UI_ASSETS, else bin/jaeger-ui
// in the repository; ok is false when it holds no index.html (Jaeger then
// serves what its binary embeds).
func jaegerUIAssets(cfg config) (dir string, ok bool) {
	dir = filepath.Join(cfg.Root, jaegerUIDefault)
	if cfg.env != nil {
		if v, set := cfg.env("JAEGER_UI_ASSETS"); set && v != "" {
			dir = v
		}
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	_, err := os.Stat(filepath.Join(dir, "index.html"))
	return dir, err == nil
}

// prometheusConfig scrapes what the stack's targets file lists (the
// gateway, every function, the kafka-trigger; re-read when it changes)
// every interval and evaluates billfn's alerting rules. make observe
// scrapes every 5 s; the dashboard test (dashboard_test.go) every second.
func prometheusConfig(rules, targets, interval string) string {
	return `# Written by make observe (cmd/stack/observe.go); edits are overwritten.
global:
  scrape_interval: ` + interval + `
  evaluation_interval: ` + interval + `
rule_files:
  - "` + rules + `"
scrape_configs:
  - job_name: billfn
    file_sd_configs:
      - files: ["` + targets + `"]
        refresh_interval: ` + interval + `
`
}

// findPrometheus returns the prometheus program, installing Debian's
// package when it is missing (as root; otherwise it says what to run).
func findPrometheus(ctx context.Context, log *logger) (string, error) {
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("prometheus is not installed: sudo apt-get install --no-install-recommends prometheus")
	}
	log.printf("observe", "installing Prometheus (apt-get install prometheus)")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "--no-install-recommends", "prometheus"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		w := &lineWriter{log: log, name: "apt-get"}
		cmd.Stdout, cmd.Stderr = w, w
		err := cmd.Run()
		w.Flush()
		if err != nil {
			return "", fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
		}
	}
	// The package may start its own service on :9090; this one is ours.
	_ = exec.CommandContext(ctx, "service", "prometheus", "stop").Run()
	return exec.LookPath("prometheus")
}
