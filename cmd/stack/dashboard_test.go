package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// dashboardQueries are the queries (expr) of every panel of
// docs/grafana-dashboard.json, by "panel title (refId)", with Grafana's
// variables given the values a viewer of the whole stack has: every
// function, a rate interval and range that cover the test's load and the
// minute the test may wait after it.
func dashboardQueries(t *testing.T, root string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer(`$function`, `.*`, `$__rate_interval`, `3m`, `$__range`, `10m`)
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out[p.Title+" ("+tg.RefID+")"] = vars.Replace(tg.Expr)
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d queries in the dashboard", len(out))
	}
	return out
}

// promQuery runs an instant query and returns why it shows nothing ("" when
// it has at least one finite value).
func promQuery(client *http.Client, base, expr string) string {
	res, err := client.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return err.Error()
	}
	if body.Status != "success" {
		return "error: " + body.Error
	}
	var values []string
	switch body.Data.ResultType {
	case "vector":
		var v []struct {
			Value [2]any `json:"value"`
		}
		_ = json.Unmarshal(body.Data.Result, &v)
		for _, s := range v {
			values = append(values, fmt.Sprint(s.Value[1]))
		}
	case "scalar":
		var s [2]any
		_ = json.Unmarshal(body.Data.Result, &s)
		values = append(values, fmt.Sprint(s[1]))
	default:
		return "result type " + body.Data.ResultType
	}
	for _, s := range values {
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return ""
		}
	}
	if len(values) == 0 {
		return "no data"
	}
	return fmt.Sprintf("no finite value (%s)", strings.Join(values, ", "))
}

// TestDashboardQueriesReturnDataFromARealPrometheus (issue 19): a whole
// stack under a short load of payments, transfers, invoices and reports,
// scraped every second by a real Prometheus (Debian's, as make observe
// runs it, with make observe's configuration and the stack's own targets
// file); every query of every panel of docs/grafana-dashboard.json then
// returns data. A panel that would show "No data" (a metric nothing
// serves, a label that does not exist, a series that appears only after a
// failure) fails the test. A missing prometheus fails it too.
func TestDashboardQueriesReturnDataFromARealPrometheus(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is needed (apt-get install --no-install-recommends prometheus): %v", err)
	}
	e := startStack(t, stackOptions{})
	queries := dashboardQueries(t, e.root)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(prometheusConfig(filepath.Join(e.root, "docs", "prometheus-alerts.yml"),
		filepath.Join(e.runDir, TargetsFile), "1s")), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePorts(t, 1))
	cmd := exec.Command(prom, "--config.file="+cfg, "--web.listen-address="+addr,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--log.level=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var plog syncBuffer
	cmd.Stdout, cmd.Stderr = &plog, &plog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus:\n%s", tail(plog.String(), 40))
		}
	})
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second}
	e.eventually("Prometheus ready and every target up", 60*time.Second, func() bool {
		return promQuery(client, base, `count(up) >= 7 and min(up) == 1`) == ""
	})

	// A short real load: every flow the dashboard watches, in rounds two
	// seconds apart. A series is born at its first observation, so rate()
	// sees only the increments after Prometheus first scraped it: a burst
	// that ends before that scrape (a function's first deliveries of a
	// type) would leave its rate at 0 and its p99 NaN.
	for i := range 6 {
		if i > 0 {
			time.Sleep(2 * time.Second)
		}
		c := e.newCustomer("USD")
		e.fund(c, 10_000, "USD")
		inv := e.req(http.MethodPost, "/function/generate-invoice/invoices", map[string]any{
			"account_id": c.account, "currency": "USD", "collection_method": "send_invoice", "net_terms_days": 30,
			"customer":      map[string]any{"name": "Ada Lovelace", "email": "ada@example.com"},
			"line_items":    []any{map[string]any{"description": "Engine time", "quantity": "1", "unit_amount": 1_500 + i}},
			"auto_finalize": true,
		}, "Idempotency-Key", uuid.NewString())
		if inv.status != http.StatusCreated {
			t.Fatalf("invoice: %s", inv)
		}
		p := e.req(http.MethodPost, "/function/capture-payment/payments", map[string]any{
			"account_id": c.account, "invoice_id": str(inv.body, "id"), "amount": 1_500 + i, "currency": "USD",
			"payment_method": "pm_card_visa", "confirm": true},
			"Authorization", "Bearer "+c.token, "Idempotency-Key", uuid.NewString())
		if p.status != http.StatusCreated {
			t.Fatalf("payment: %s", p)
		}
		// A client's mistake (the 4xx line of the errors panel) and
		// reports read twice (the cache panel's hits).
		if r := e.req(http.MethodGet, "/function/generate-invoice/invoices/"+uuid.NewString(), nil); r.status != http.StatusNotFound {
			t.Fatalf("unknown invoice: %s", r)
		}
		for range 2 {
			if r := e.req(http.MethodGet, "/function/aggregate-report/reports/summary", nil); r.status != http.StatusOK {
				t.Fatalf("summary: %s", r)
			}
		}
	}

	// The events travel on (outbox, Kafka, trigger, consumers) and
	// Prometheus scrapes every second: ask until every panel has data or
	// a minute has passed, then name the panels that still show nothing.
	var empty []string
	for deadline := time.Now().Add(time.Minute); ; {
		empty = empty[:0]
		for name, q := range queries {
			if why := promQuery(client, base, q); why != "" {
				empty = append(empty, fmt.Sprintf("%s: %s\n    %s", name, why, q))
			}
		}
		if len(empty) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if len(empty) > 0 {
		t.Fatalf("%d of %d dashboard queries show nothing after the load:\n%s", len(empty), len(queries), strings.Join(empty, "\n"))
	}
	t.Logf("%d dashboard queries, each with data", len(queries))
}
