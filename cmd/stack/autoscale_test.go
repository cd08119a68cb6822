package main

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The labels as OpenFaaS documents them, with its defaults; anything
// unreadable is refused (a 400 at deploy).
func TestParseAutoscaleLabels(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		want   *autoscale
		bad    bool
	}{
		{labels: map[string]string{"com.openfaas.scale.max": "5"}, want: nil},
		{labels: map[string]string{labelScaleTarget: "10"}, want: &autoscale{"rps", 10, 0.9}},
		{labels: map[string]string{labelScaleType: "capacity"}, want: &autoscale{"capacity", 50, 0.9}},
		{labels: map[string]string{labelScaleType: "inflight", labelScaleTarget: "4", labelScaleProportion: "0.5"}, want: &autoscale{"capacity", 4, 0.5}},
		{labels: map[string]string{labelScaleType: "rps", labelScaleProportion: "1"}, want: &autoscale{"rps", 50, 1}},
		{labels: map[string]string{labelScaleType: "cpu"}, bad: true},
		{labels: map[string]string{labelScaleType: "queue"}, bad: true},
		{labels: map[string]string{labelScaleTarget: "0"}, bad: true},
		{labels: map[string]string{labelScaleTarget: "-3"}, bad: true},
		{labels: map[string]string{labelScaleTarget: "ten"}, bad: true},
		{labels: map[string]string{labelScaleTarget: "5", labelScaleProportion: "0"}, bad: true},
		{labels: map[string]string{labelScaleTarget: "5", labelScaleProportion: "1.5"}, bad: true},
		{labels: map[string]string{labelScaleTarget: "5", labelScaleProportion: "NaN"}, bad: true},
	} {
		got, err := parseAutoscale(c.labels)
		switch {
		case c.bad && err == nil:
			t.Errorf("%v: accepted as %+v", c.labels, got)
		case !c.bad && err != nil:
			t.Errorf("%v: %v", c.labels, err)
		case !c.bad && (got == nil) != (c.want == nil), got != nil && c.want != nil && *got != *c.want:
			t.Errorf("%v: %+v, want %+v", c.labels, got, c.want)
		}
	}
}

// desired = ceil(load / (target × proportion)) within min and max: up at
// once, down only after a stable window of lower load.
func TestScalerFollowsTheLoad(t *testing.T) {
	rps := autoscale{"rps", 10, 0.9}    // 9 calls/s per replica
	capa := autoscale{"capacity", 5, 1} // 5 calls in flight per replica
	window := 5 * time.Second
	t0 := time.Unix(1_700_000_000, 0)

	// rps: 40 calls/s → ceil(40/9) = 5, capped by max 4.
	var sc scaler
	var calls uint64
	var want uint64
	for i := 0; i <= 20; i++ { // two seconds of samples
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		sc.observe(now, calls, 0)
		calls += 4
		if i == 20 {
			want, _ = sc.decide(now, rps, 1, 4, window)
		}
	}
	if want != 4 {
		t.Fatalf("40 calls/s at 9 per replica, max 4: %d replicas, want 4", want)
	}

	// capacity: 12 in flight → ceil(12/5) = 3, at once.
	sc = scaler{}
	now := t0
	step := func(inflight int64, d time.Duration) uint64 {
		var w uint64
		for end := now.Add(d); now.Before(end); now = now.Add(100 * time.Millisecond) {
			sc.observe(now, 0, inflight)
			if now.Sub(t0)%time.Second == 0 {
				w, _ = sc.decide(now, capa, 1, 10, window)
			}
		}
		return w
	}
	if w := step(12, 3*time.Second); w != 3 {
		t.Fatalf("12 in flight at 5 per replica: %d, want 3", w)
	}
	// Idle: it stays at 3 within the stable window, then falls to min.
	if w := step(0, 3*time.Second); w != 3 {
		t.Fatalf("3 s after the load stopped (window 5 s): %d, want still 3", w)
	}
	if w := step(0, 5*time.Second); w != 1 {
		t.Fatalf("a whole window idle: %d, want the minimum 1", w)
	}
	// Never below min, even idle.
	sc = scaler{}
	sc.observe(t0, 0, 0)
	if w, _ := sc.decide(t0, capa, 2, 10, window); w != 2 {
		t.Fatalf("idle with min 2: %d", w)
	}
}

var replicaCallsRE = regexp.MustCompile(`(?m)^gateway_replica_invocations_total\{function_name="([^"]+)",replica="([^"]+)"\} (\S+)$`)

// replicaCalls reads the gateway's /metrics: the calls each current
// replica of the function took.
func (e *e2e) replicaCalls(name string) map[string]float64 {
	e.t.Helper()
	r := e.req(http.MethodGet, "/metrics", nil)
	out := map[string]float64{}
	for _, m := range replicaCallsRE.FindAllStringSubmatch(string(r.raw), -1) {
		if m[1] == name {
			out[m[2]], _ = strconv.ParseFloat(m[3], 64)
		}
	}
	return out
}

// Through the real gateway and processes: load on a function labelled for
// the autoscaler (rps) takes it from 1 replica to 3 (availableReplicas
// says so, and each process answers calls); once idle for the stable window it goes
// back to 1. Labels it cannot read are refused with 400.
func TestAutoscaleUnderLoadAndBackWhenIdle(t *testing.T) {
	e := startStack(t, stackOptions{env: []string{"BILLFN_SCALE_DOWN_WINDOW=3s", "RATE_LIMIT=off"}})
	base, status := e.functionStatus("process-transaction")
	if status != http.StatusOK {
		t.Fatalf("GET /system/function/process-transaction: %d", status)
	}
	deploy := func(labels map[string]string) response {
		return e.sys(http.MethodPost, "/system/functions", map[string]any{"service": "pt-auto", "image": base.Image,
			"envVars": base.EnvVars, "secrets": base.Secrets, "labels": labels})
	}
	for _, bad := range []map[string]string{
		{labelScaleType: "cpu"}, {labelScaleType: "fast"}, {labelScaleTarget: "0"}, {labelScaleTarget: "many"},
		{labelScaleTarget: "2", labelScaleProportion: "1.5"}, {labelScaleTarget: "2", labelScaleProportion: "most"},
	} {
		if r := deploy(bad); r.status != http.StatusBadRequest || r.body["code"] == nil {
			t.Errorf("labels %v: %s, want a 400 problem", bad, r)
		}
	}
	// 5 calls a second per replica, scaled at 90 %: 8 clients calling
	// without pause ask for the maximum, 3, however slow the machine.
	if r := deploy(map[string]string{labelScaleType: "rps", labelScaleTarget: "5",
		"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "3"}); r.status != http.StatusAccepted {
		t.Fatalf("POST /system/functions: %s", r)
	}
	e.eventually("pt-auto ready", 90*time.Second, func() bool {
		st, _ := e.functionStatus("pt-auto")
		return st.Replicas == 1 && st.AvailableReplicas == 1
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = e.try(http.MethodGet, "/function/pt-auto/accounts/SYS-EXTERNAL-USD", nil)
			}
		}()
	}
	loadOn := true
	stopLoad := func() {
		if loadOn {
			close(stop)
			wg.Wait()
			loadOn = false
		}
	}
	defer stopLoad()
	e.eventually("3 available replicas under load", 90*time.Second, func() bool {
		st, _ := e.functionStatus("pt-auto")
		return st.Replicas == 3 && st.AvailableReplicas == 3 && len(e.processesOf("pt-auto")) == 3
	})
	// Each of the 3 processes answers calls: the gateway's count of the
	// calls each replica answered grows.
	e.eventually("every replica answers", 60*time.Second, func() bool {
		took := 0
		for _, n := range e.replicaCalls("pt-auto") {
			if n > 0 {
				took++
			}
		}
		return took == 3
	})
	stopLoad()
	e.eventually("back to 1 replica when idle", 90*time.Second, func() bool {
		st, _ := e.functionStatus("pt-auto")
		return st.Replicas == 1 && st.AvailableReplicas == 1 && len(e.processesOf("pt-auto")) == 1
	})
	if !strings.Contains(e.out.String(), "pt-auto: load") {
		t.Errorf("the stack's output does not show the autoscaler's decisions")
	}
}
