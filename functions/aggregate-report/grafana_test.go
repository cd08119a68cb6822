package main

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/shared/server"
)

type grafanaDashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// triggerMetrics are exposed by cmd/kafka-trigger, not by the functions.
var triggerMetrics = map[string]bool{"billfn_trigger_consumer_lag": true, "billfn_trigger_deliveries_total": true,
	"billfn_trigger_events_total": true, "billfn_trigger_delivery_duration_seconds": true, "billfn_trigger_dead_letters_total": true}

// exposedMetrics lists the metric names a function's /metrics serves: the
// runtime's own and those of the collectors the platform registers.
func exposedMetrics(t *testing.T, g *rig) map[string]bool {
	names := map[string]bool{}
	app := g.d.App(g.svc.Routes())
	srv := server.New(server.Config{}, app)
	rec := httpGet(srv, "/reports/summary") // creates the request series
	if rec != http.StatusUnauthorized {
		t.Fatalf("unauthenticated summary = %d", rec)
	}
	mfs, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	fq := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for _, c := range app.Collectors {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fq.FindStringSubmatch(d.String()); m != nil {
				names[m[1]] = true
			}
		}
	}
	return names
}

func httpGet(s *server.Server, path string) int {
	rec := &statusRecorder{header: http.Header{}}
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	s.Handler().ServeHTTP(rec, req)
	return rec.status
}

type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(code int)        { r.status = code }

// The Grafana dashboard parses, lays its panels out without overlap, and
// every metric it queries is one a function (or the kafka-trigger) serves;
// it covers request rate, errors, latency percentiles, trigger lag, outbox
// backlog and dead letters.
func TestGrafanaDashboardQueriesExposedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" || len(d.Templating.List) < 2 {
		t.Fatalf("dashboard header: %q %q %+v", d.Title, d.UID, d.Templating.List)
	}
	exposed := exposedMetrics(t, newRig(t))
	metric := regexp.MustCompile(`billfn_[a-z_]+`)
	var all strings.Builder
	cells := map[[2]int]int{}
	for _, p := range d.Panels {
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W <= 0 || p.GridPos.H <= 0 {
			t.Errorf("panel %q is outside the grid: %+v", p.Title, p.GridPos)
		}
		for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W; x++ {
			for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H; y++ {
				if other, ok := cells[[2]int{x, y}]; ok {
					t.Fatalf("panels %d and %d overlap at %d,%d", other, p.ID, x, y)
				}
				cells[[2]int{x, y}] = p.ID
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %q, %d targets", p.Title, p.Datasource.UID, len(p.Targets))
		}
		for _, tg := range p.Targets {
			all.WriteString(tg.Expr + "\n")
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced expression %s", p.Title, tg.Expr)
			}
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				name := strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count")
				if !exposed[name] && !triggerMetrics[name] {
					t.Errorf("panel %q queries %s, which nothing exposes", p.Title, m)
				}
			}
		}
	}
	exprs := all.String()
	for _, want := range []string{
		"rate(billfn_http_requests_total", `code=~"5.."`, "histogram_quantile(0.50", "histogram_quantile(0.95",
		"histogram_quantile(0.99", "billfn_http_request_duration_seconds_bucket", "billfn_trigger_consumer_lag",
		"billfn_outbox_backlog", "billfn_event_dead_letters_total", "billfn_trigger_dead_letters_total", "billfn_http_requests_in_flight",
		"billfn_cache_requests_total", "billfn_outbox_published_total", "billfn_outbox_publish_errors_total",
		"billfn_events_received_total", "billfn_event_delivery_duration_seconds_bucket", "billfn_trigger_events_total",
		"billfn_trigger_delivery_duration_seconds_bucket", "billfn_outbox_oldest_unpublished_age_seconds",
		"billfn_reconciliation_mismatches_total",
	} {
		if !strings.Contains(exprs, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
}
