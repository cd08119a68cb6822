package main

// The platform's own figures (issue 17): a cold start of a function scaled
// to zero, process-transaction's transfers with 1 and with 2 replicas
// behind the gateway, and how soon a function the autoscaler scales out
// under load has its new replicas taking calls. Each is selectable with
// -only: cold-start, transfers-replicas-1, transfers-replicas-2, scale-out.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// platform holds what runPlatform measured, for render.
var platform *platformResult

type platformResult struct {
	ColdStart *coldStart
	ScaleOut  *scaleOut
}

type coldStart struct {
	Wakes []float64 // ms from the call to its response, each from zero
	Err   string
}

type scaleOut struct {
	Clients   int
	Max       int
	FirstNew  span   // load start → first call answered by a new replica
	AllTake   span   // load start → every replica took calls
	Available span   // load start → availableReplicas = Max
	Took      []span // per new replica, load start → its first call
	Err       string
}

// span bounds when something happened, from the start of the load: after
// the previous poll began (it did not see it yet), by the end of the poll
// that saw it. A poll takes a while under load.
type span struct{ lo, hi time.Duration }

func (s span) String() string {
	return fmt.Sprintf("%.0f–%.0f ms", float64(s.lo.Microseconds())/1000, float64(s.hi.Microseconds())/1000)
}

// sysAPI calls the bench stack's /system API with its credentials.
type sysAPI struct {
	url, user, password string
	client              *http.Client
}

func newSysAPI(secretsDir string) sysAPI {
	read := func(n string) string {
		b, _ := os.ReadFile(filepath.Join(secretsDir, n))
		return strings.TrimSpace(string(b))
	}
	return sysAPI{url: "http://" + gatewayAddr, user: read("basic-auth-user"), password: read("basic-auth-password"), client: &http.Client{Timeout: 5 * time.Minute}}
}

func (s sysAPI) call(method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		return 0, err
	}
	req.SetBasicAuth(s.user, s.password)
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		return res.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		return res.StatusCode, json.Unmarshal(raw, out)
	}
	return res.StatusCode, nil
}

type fnStatus struct {
	Image             string            `json:"image"`
	EnvVars           map[string]string `json:"envVars"`
	Secrets           []string          `json:"secrets"`
	Replicas          int               `json:"replicas"`
	AvailableReplicas int               `json:"availableReplicas"`
}

func (s sysAPI) status(name string) (fnStatus, error) {
	var st fnStatus
	_, err := s.call(http.MethodGet, "/system/function/"+name, nil, &st)
	return st, err
}

// until polls ok every 20 ms up to d.
func until(ctx context.Context, d time.Duration, ok func() bool) bool {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// scaleTo sets a function's replicas and waits until they are all ready.
func (s sysAPI) scaleTo(ctx context.Context, name string, n int) error {
	if _, err := s.call(http.MethodPost, "/system/scale-function/"+name, map[string]any{"serviceName": name, "replicas": n}, nil); err != nil {
		return err
	}
	if !until(ctx, 2*time.Minute, func() bool {
		st, err := s.status(name)
		return err == nil && st.Replicas == n && st.AvailableReplicas == n
	}) {
		return fmt.Errorf("%s did not reach %d ready replicas within 2 minutes", name, n)
	}
	return nil
}

// deployCopy deploys process-transaction's image again as name, with labels.
func (s sysAPI) deployCopy(name string, labels map[string]string) error {
	base, err := s.status("process-transaction")
	if err != nil {
		return err
	}
	_, _ = s.call(http.MethodDelete, "/system/functions", map[string]any{"functionName": name}, nil)
	_, err = s.call(http.MethodPost, "/system/functions", map[string]any{"service": name, "image": base.Image,
		"envVars": base.EnvVars, "secrets": base.Secrets, "labels": labels}, nil)
	return err
}

// platformRuns are the loadgen scenarios of the platform: the transfers
// of transfers-gateway with process-transaction at 1 and at 2 replicas.
func platformRuns(gw, secretsDir string, quick bool) []*run {
	api := newSysAPI(secretsDir)
	args := []string{"transfers", "-c", "16", "-n", scale(30000, quick), "-url", gw + "process-transaction"}
	var out []*run
	for _, n := range []int{1, 2} {
		out = append(out, &run{Name: fmt.Sprintf("transfers-replicas-%d", n),
			Title:  fmt.Sprintf("transfers (sync POST /transfers), through the gateway to %d replica(s) of process-transaction", n),
			Args:   args,
			Target: "≥ 1.5 × pgbench tps",
			Setup:  func(ctx context.Context) error { return api.scaleTo(ctx, "process-transaction", n) },
		})
	}
	return out
}

// runPlatform measures the cold start and the scale-out, those selected.
func runPlatform(ctx context.Context, secretsDir, marker string, quick bool) *platformResult {
	api := newSysAPI(secretsDir)
	res := &platformResult{}
	if selected == nil || selected.MatchString("transfers-replicas-2") {
		_ = api.scaleTo(ctx, "process-transaction", 1) // as the other scenarios had it
	}
	if selected == nil || selected.MatchString("cold-start") {
		step("cold start: a function scaled to zero, woken by a call")
		res.ColdStart = measureColdStart(ctx, api, marker, quick)
	}
	if selected == nil || selected.MatchString("scale-out") {
		step("scale-out: a function's health route under load, 1 → 4 replicas")
		res.ScaleOut = measureScaleOut(ctx, api, quick)
	}
	// Shown at once too: a later step that fails (pgbench) writes no report.
	var b strings.Builder
	platform = res
	renderPlatform(&b)
	fmt.Fprint(os.Stderr, b.String())
	return res
}

// processesNamed counts the bench stack's processes running exe name.
func processesNamed(marker, name string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || filepath.Base(exe) != name {
			continue
		}
		if env, err := os.ReadFile("/proc/" + e.Name() + "/environ"); err == nil && bytes.Contains(env, []byte("BILLFN_STACK_ID="+marker)) {
			n++
		}
	}
	return n
}

// measureColdStart deploys a copy of process-transaction that scales to
// zero after 1 s idle and times GET /_/ready through the gateway from
// zero (its process gone): request to response, 20 times.
func measureColdStart(ctx context.Context, api sysAPI, marker string, quick bool) *coldStart {
	const name = "bench-cold"
	cs := &coldStart{}
	if err := api.deployCopy(name, map[string]string{"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "1s"}); err != nil {
		cs.Err = err.Error()
		return cs
	}
	defer api.call(http.MethodDelete, "/system/functions", map[string]any{"functionName": name}, nil)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	wakes := 20
	if quick {
		wakes = 5
	}
	for i := 0; i < wakes; i++ {
		if !until(ctx, 2*time.Minute, func() bool {
			st, err := api.status(name)
			return err == nil && st.Replicas == 0 && processesNamed(marker, name) == 0
		}) {
			cs.Err = fmt.Sprintf("%s did not scale to zero within 2 minutes", name)
			return cs
		}
		start := time.Now()
		res, err := client.Get("http://" + gatewayAddr + "/function/" + name + "/_/ready")
		if err != nil {
			cs.Err = err.Error()
			return cs
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		ms := float64(time.Since(start).Microseconds()) / 1000
		if res.StatusCode != http.StatusOK {
			cs.Err = fmt.Sprintf("wake %d: %d", i+1, res.StatusCode)
			return cs
		}
		cs.Wakes = append(cs.Wakes, ms)
	}
	return cs
}

var replicaCallsRE = regexp.MustCompile(`(?m)^gateway_replica_invocations_total\{function_name="([^"]+)",replica="([^"]+)"\} (\S+)$`)

// replicaCalls reads the gateway's calls per replica of function name.
func replicaCalls(client *http.Client, name string) (map[string]float64, error) {
	res, err := client.Get("http://" + gatewayAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range replicaCallsRE.FindAllSubmatch(b, -1) {
		if string(m[1]) == name {
			v, _ := strconv.ParseFloat(string(m[3]), 64)
			out[string(m[2])] = v
		}
	}
	return out, nil
}

// measureScaleOut deploys a copy of process-transaction the autoscaler
// scales on calls per second (OpenFaaS's default, 50 per replica, at most
// 4), puts 16 clients
// calling GET /_/health through the gateway on it, and records when the
// gateway's calls per replica show each new replica taking calls.
func measureScaleOut(ctx context.Context, api sysAPI, quick bool) *scaleOut {
	const name = "bench-scale"
	so := &scaleOut{Clients: 16, Max: 4}
	if err := api.deployCopy(name, map[string]string{"com.openfaas.scale.type": "rps", "com.openfaas.scale.target": "50",
		"com.openfaas.scale.min": "1", "com.openfaas.scale.max": strconv.Itoa(so.Max)}); err != nil {
		so.Err = err.Error()
		return so
	}
	defer api.call(http.MethodDelete, "/system/functions", map[string]any{"functionName": name}, nil)
	if !until(ctx, 2*time.Minute, func() bool {
		st, err := api.status(name)
		return err == nil && st.AvailableReplicas == 1
	}) {
		so.Err = name + " was not ready within 2 minutes"
		return so
	}
	metrics := &http.Client{Timeout: 5 * time.Second}
	before, err := replicaCalls(metrics, name)
	if err != nil || len(before) != 1 {
		so.Err = fmt.Sprintf("the gateway's replicas of %s before the load: %v %v", name, before, err)
		return so
	}
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 0; i < so.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			for lctx.Err() == nil {
				req, _ := http.NewRequestWithContext(lctx, http.MethodGet, "http://"+gatewayAddr+"/function/"+name+"/_/health", nil)
				if res, err := c.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}
		}()
	}
	start := time.Now()
	first := map[string]span{}
	var prev time.Duration // when the previous poll began
	limit := 90 * time.Second
	if quick {
		limit = 45 * time.Second
	}
	for time.Since(start) < limit && ctx.Err() == nil && (len(first) < so.Max-1 || so.Available.hi == 0) {
		began := time.Since(start)
		now, err := replicaCalls(metrics, name)
		at := time.Since(start)
		if err == nil {
			for addr, n := range now {
				if _, old := before[addr]; !old && n > 0 && first[addr].hi == 0 {
					first[addr] = span{prev, at}
				}
			}
		}
		if so.Available.hi == 0 {
			if st, err := api.status(name); err == nil && st.AvailableReplicas >= so.Max {
				so.Available = span{prev, time.Since(start)}
			}
		}
		prev = began
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()
	for _, d := range first {
		so.Took = append(so.Took, d)
	}
	sort.Slice(so.Took, func(i, j int) bool { return so.Took[i].hi < so.Took[j].hi })
	if len(so.Took) > 0 {
		so.FirstNew = so.Took[0]
	}
	if len(so.Took) >= so.Max-1 {
		so.AllTake = so.Took[len(so.Took)-1]
	} else {
		so.Err = fmt.Sprintf("%d of %d new replicas took calls within %s", len(so.Took), so.Max-1, limit)
	}
	return so
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(float64(len(s))*p+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// renderPlatform writes the platform section of the report.
func renderPlatform(b *strings.Builder) {
	if platform == nil || (platform.ColdStart == nil && platform.ScaleOut == nil) {
		return
	}
	b.WriteString("\n## The platform: cold start and scale-out\n\n")
	b.WriteString("Through the bench stack's gateway and its OpenFaaS API (the transfers with 1 and 2 replicas of process-transaction are in the table above).\n\n")
	if cs := platform.ColdStart; cs != nil {
		switch {
		case cs.Err != "":
			fmt.Fprintf(b, "- **cold start** (`cold-start`): not measured: %s\n", cs.Err)
		default:
			var all []string
			for _, w := range cs.Wakes {
				all = append(all, fmt.Sprintf("%.1f", w))
			}
			p50 := percentile(cs.Wakes, 0.5)
			fmt.Fprintf(b, "- **cold start** (`cold-start`): a copy of process-transaction labelled `com.openfaas.scale.zero=true`, `zero-duration=1s`, woken %d times from zero (its process gone) by `GET /function/bench-cold/_/ready`; from the request to its response: **p50 %.1f ms, p99 %.1f ms** (target p50 < 50 ms %s). All (ms): %s.\n",
				len(cs.Wakes), p50, percentile(cs.Wakes, 0.99), mark(p50 < 50), strings.Join(all, ", "))
		}
	}
	if so := platform.ScaleOut; so != nil {
		var took []string
		for _, d := range so.Took {
			took = append(took, d.String())
		}
		fmt.Fprintf(b, "- **scale-out** (`scale-out`): a copy of process-transaction labelled `com.openfaas.scale.type=rps`, `target=50`, `min=1`, `max=%d`; %d clients call `GET /function/bench-scale/_/health` through the gateway without pause. From the start of the load: ", so.Max, so.Clients)
		if so.Err != "" {
			fmt.Fprintf(b, "not complete: %s (new replicas' first calls: %s).\n", so.Err, strings.Join(took, ", "))
		} else {
			fmt.Fprintf(b, "first call on a new replica within **%s**, all %d replicas taking calls within **%s** (each new one: %s), `availableReplicas` %d within %s. Calls per replica are the gateway's `gateway_replica_invocations_total`, polled every 50 ms: each figure is between the start of the poll before the one that saw it and the end of that one (a poll is slow under the load). The autoscaler decides once a second on the last 2 s of calls; a new replica is ready about as fast as a cold start (above).\n",
				so.FirstNew, so.Max, so.AllTake, strings.Join(took, ", "), so.Max, so.Available)
		}
	}
}
