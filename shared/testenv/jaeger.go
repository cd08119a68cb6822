package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/gotool"
)

// JaegerVersion is the Jaeger (v2, all-in-one) the tests and make observe
// run. It is built from source outside billfn's go.mod, like stripe-mock:
// its module has replace directives, so `go install …@version` refuses it;
// a throw-away module in the user cache requires it as a tool instead.
const JaegerVersion = "v1.75.0"

var jaegerBuild sync.Mutex

// JaegerBinary returns the jaeger program: on PATH, in GOBIN (or
// GOPATH/bin), else built there now (minutes the first time). logf says
// what it does; nil is quiet.
func JaegerBinary(ctx context.Context, logf func(format string, args ...any)) (string, error) {
	jaegerBuild.Lock()
	defer jaegerBuild.Unlock()
	bin, installed, err := gotool.Path(ctx, "jaeger")
	if err != nil || installed {
		return bin, err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "billfn", "jaeger-"+JaegerVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if logf != nil {
		logf("building Jaeger %s into %s (once; a few minutes)", JaegerVersion, bin)
	}
	mod := "module billfn.local/tools/jaeger\n\ngo 1.26.0\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		return "", err
	}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("get", "-tool", "github.com/jaegertracing/jaeger/cmd/jaeger@"+JaegerVersion); err != nil {
		return "", err
	}
	if err := run("build", "-o", bin, "github.com/jaegertracing/jaeger/cmd/jaeger"); err != nil {
		return "", err
	}
	return bin, nil
}

// JaegerConfig is a Jaeger v2 configuration: in-memory storage, OTLP
// receivers on grpcAddr and httpAddr, the query service (UI and
// /api/traces) on uiAddr and its gRPC API on queryGRPCAddr, no other port.
//
// uiAssets is a directory of jaeger-ui's built assets (index.html,
// static/) for the query service to serve as its UI (jaeger_query's
// ui.assets_path); "" keeps what the binary embeds. A Jaeger built from
// its Go module embeds only a placeholder page (jaeger-ui is a git
// submodule of Jaeger's repository, outside the module); a release binary
// embeds the UI. The query API works either way.
func JaegerConfig(uiAddr, queryGRPCAddr, grpcAddr, httpAddr, uiAssets string) string {
	ui := ""
	if uiAssets != "" {
		ui = "\n    ui:\n      assets_path: " + strconv.Quote(uiAssets)
	}
	return `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: "` + uiAddr + `"
    grpc:
      endpoint: "` + queryGRPCAddr + `"` + ui + `
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "` + grpcAddr + `"
      http:
        endpoint: "` + httpAddr + `"
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`
}

// Jaeger is a private Jaeger a test started.
type Jaeger struct {
	Query string // http://127.0.0.1:port: the UI and /api/traces
	OTLP  string // http://127.0.0.1:port: OTLP/HTTP, for OTEL_EXPORTER_OTLP_ENDPOINT
}

// StartJaeger runs a Jaeger of its own on free loopback ports for the
// test, building it first when it is missing; it fails the test (never
// skips) when it cannot.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	return StartJaegerUI(t, "")
}

// StartJaegerUI is StartJaeger serving the UI assets in uiAssets (see
// JaegerConfig; "" is what the binary embeds).
func StartJaegerUI(t testing.TB, uiAssets string) *Jaeger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bin, err := JaegerBinary(ctx, t.Logf)
	if err != nil {
		t.Fatalf("Jaeger is needed and could not be built: %v", err)
	}
	// Free ports, chosen at once so they differ, released for Jaeger.
	ports := make([]string, 4)
	lns := make([]net.Listener, 4)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i], lns[i] = ln.Addr().String(), ln
	}
	for _, ln := range lns {
		ln.Close()
	}
	p, err := RunJaeger(ctx, bin, t.TempDir(), JaegerConfig(ports[0], ports[1], ports[2], ports[3], uiAssets), "http://"+ports[0], 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &Jaeger{Query: "http://" + ports[0], OTLP: "http://" + ports[3]}
}

// JaegerProcess is a Jaeger RunJaeger started.
type JaegerProcess struct {
	Pid  int
	Log  string // its stdout and stderr
	Stop func() // SIGTERM to its process group, SIGKILL after 15 s; waits
}

// RunJaeger starts bin with config (JaegerConfig's YAML, written into dir
// with the log) and waits until query (http://host:port of its UI) answers
// /api/services, for at most within; an error, with the log, when it
// exits or does not answer in time (it is stopped then).
func RunJaeger(ctx context.Context, bin, dir, config, query string, within time.Duration) (*JaegerProcess, error) {
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "jaeger.log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start Jaeger: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(exited) }()
	p := &JaegerProcess{Pid: cmd.Process.Pid, Log: logPath, Stop: func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}}
	logged := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	for deadline := time.Now().Add(within); ; {
		if res, err := http.Get(query + "/api/services"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("Jaeger exited at start:\n%s", logged())
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("Jaeger did not answer on %s within %s:\n%s", query, within, logged())
		}
	}
}

// JaegerSpan is a span as Jaeger's query API (/api/traces) returns it.
type JaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	ProcessID string `json:"processID"`
	Service   string `json:"-"` // filled from the trace's processes
}

// Parent is the span's CHILD_OF parent span id ("" for a root).
func (s JaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Trace reads one trace back through Jaeger's query API; nil while
// Jaeger does not know it.
func (j *Jaeger) Trace(traceID string) ([]JaegerSpan, error) {
	res, err := http.Get(j.Query + "/api/traces/" + traceID)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/traces/%s: %s", traceID, res.Status)
	}
	var body struct {
		Data []struct {
			Spans     []JaegerSpan `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, err
	}
	var out []JaegerSpan
	for _, tr := range body.Data {
		for _, s := range tr.Spans {
			s.Service = tr.Processes[s.ProcessID].ServiceName
			out = append(out, s)
		}
	}
	return out, nil
}

// Services lists the services Jaeger has spans of.
func (j *Jaeger) Services() ([]string, error) {
	res, err := http.Get(j.Query + "/api/services")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var body struct {
		Data []string `json:"data"`
	}
	err = json.NewDecoder(res.Body).Decode(&body)
	return body.Data, err
}
