package main

// The autoscaler: OpenFaaS Pro's, on the labels it documents, measured at
// the gateway. A function labelled com.openfaas.scale.target or
// com.openfaas.scale.type is scaled between com.openfaas.scale.min and
// com.openfaas.scale.max on its load:
//
//	desired = ceil(load / (target × target-proportion))
//
// where load is, over the last two seconds, the calls per second the
// gateway sent it (rps) or the mean of its calls in flight (capacity, or
// inflight). Up at once; down only to the highest figure of the stable
// window (BILLFN_SCALE_DOWN_WINDOW), so a short lull does not stop
// replicas a returning load needs again. A function without either label
// keeps the replicas it is given, as on OpenFaaS CE, which has no
// autoscaler.

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The OpenFaaS Pro autoscaler's labels.
const (
	labelScaleTarget     = "com.openfaas.scale.target"
	labelScaleType       = "com.openfaas.scale.type"
	labelScaleProportion = "com.openfaas.scale.target-proportion"
	// OpenFaaS's defaults.
	defaultScaleTarget     = 50
	defaultScaleType       = "rps"
	defaultScaleProportion = 0.90
)

const (
	// loadWindow is how far back the load is measured; sampleEvery is how
	// often the calls and the calls in flight are read; decideEvery how
	// often the replicas are reconsidered.
	loadWindow  = 2 * time.Second
	sampleEvery = 100 * time.Millisecond
	decideEvery = time.Second
)

// autoscale is a function's scaling rule, read from its labels.
type autoscale struct {
	mode       string // rps or capacity (inflight is capacity)
	target     float64
	proportion float64
}

func (a autoscale) String() string {
	return fmt.Sprintf("%s, target %g per replica × %g", a.mode, a.target, a.proportion)
}

// parseAutoscale reads the autoscaler's labels: nil when the function has
// neither com.openfaas.scale.target nor com.openfaas.scale.type.
func parseAutoscale(labels map[string]string) (*autoscale, error) {
	_, hasTarget := labels[labelScaleTarget]
	_, hasType := labels[labelScaleType]
	if !hasTarget && !hasType {
		return nil, nil
	}
	a := &autoscale{mode: defaultScaleType, target: defaultScaleTarget, proportion: defaultScaleProportion}
	if v, ok := labels[labelScaleType]; ok {
		switch m := strings.TrimSpace(v); m {
		case "rps", "capacity":
			a.mode = m
		case "inflight":
			a.mode = "capacity" // the calls in flight, which capacity measures
		case "cpu":
			return nil, badRequest("label %s=cpu: this stack measures load at the gateway, so it scales on rps, capacity or inflight", labelScaleType)
		default:
			return nil, badRequest("label %s must be rps, capacity or inflight, not %q", labelScaleType, v)
		}
	}
	if v, ok := labels[labelScaleTarget]; ok {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil || n < 1 {
			return nil, badRequest("label %s must be a whole number of at least 1 (load per replica), not %q", labelScaleTarget, v)
		}
		a.target = float64(n)
	}
	if v, ok := labels[labelScaleProportion]; ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(p > 0 && p <= 1) {
			return nil, badRequest("label %s must be a number above 0 and at most 1 such as 0.90, not %q", labelScaleProportion, v)
		}
		a.proportion = p
	}
	return a, nil
}

// scaler keeps one function's load samples and recent recommendations.
type scaler struct {
	samples []loadSample
	recs    []recommendation
}

type loadSample struct {
	at       time.Time
	calls    uint64
	inflight int64
}

type recommendation struct {
	at       time.Time
	replicas uint64
}

// observe records the function's counters at now, keeping loadWindow.
func (sc *scaler) observe(now time.Time, calls uint64, inflight int64) {
	sc.samples = append(sc.samples, loadSample{now, calls, inflight})
	i := 0
	for i < len(sc.samples)-1 && now.Sub(sc.samples[i].at) > loadWindow {
		i++
	}
	sc.samples = sc.samples[i:]
}

// load is the function's load over the samples: calls per second, or the
// mean of the calls in flight.
func (sc *scaler) load(mode string) float64 {
	n := len(sc.samples)
	if n == 0 {
		return 0
	}
	if mode == "rps" {
		first, last := sc.samples[0], sc.samples[n-1]
		secs := last.at.Sub(first.at).Seconds()
		if secs <= 0 || last.calls < first.calls {
			return 0
		}
		return float64(last.calls-first.calls) / secs
	}
	var sum int64
	for _, s := range sc.samples {
		sum += s.inflight
	}
	return float64(sum) / float64(n)
}

// decide is the replica count for now: ceil(load / (target × proportion))
// within [minR, maxR]; the highest of the stable window's recommendations,
// so scaling up is immediate and scaling down waits for a whole window of
// lower load.
func (sc *scaler) decide(now time.Time, a autoscale, minR, maxR uint64, window time.Duration) (want uint64, load float64) {
	load = sc.load(a.mode)
	rec := uint64(math.Ceil(load/(a.target*a.proportion) - 1e-9))
	rec = min(max(rec, minR, 1), maxR)
	sc.recs = append(sc.recs, recommendation{now, rec})
	i := 0
	for i < len(sc.recs)-1 && now.Sub(sc.recs[i].at) > window {
		i++
	}
	sc.recs = sc.recs[i:]
	for _, r := range sc.recs {
		want = max(want, r.replicas)
	}
	return want, load
}

// autoscaler scales every function with an autoscale rule on its load
// until ctx ends.
func (s *stack) autoscaler(ctx context.Context) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	scalers := map[*function]*scaler{}
	lastDecision := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		decide := now.Sub(lastDecision) >= decideEvery
		if decide {
			lastDecision = now
		}
		s.mu.Lock()
		fns := slices.Collect(maps.Values(s.fns))
		s.mu.Unlock()
		for _, f := range fns {
			f.mu.Lock()
			rs, auto, desired, minR, maxR := f.rs, f.auto, f.desired, f.minR, f.maxR
			f.mu.Unlock()
			if rs == nil || auto == nil || desired == 0 {
				delete(scalers, f) // a function at zero starts afresh when woken
				continue
			}
			sc := scalers[f]
			if sc == nil {
				sc = &scaler{}
				scalers[f] = sc
			}
			sc.observe(now, rs.Calls(), rs.InFlight())
			if !decide {
				continue
			}
			want, load := sc.decide(now, *auto, minR, maxR, s.cfg.ScaleDownWindow)
			if want == desired || !f.op.TryLock() {
				continue // a deploy, scale or wake is under way: next time
			}
			f.mu.Lock()
			same := f.desired == desired && f.auto != nil
			f.mu.Unlock()
			if same {
				s.log.printf("stack", "%s: load %.1f (%s): %d → %d replicas", f.name, load, auto, desired, want)
				_ = s.scaleLocked(f, want)
			}
			f.op.Unlock()
		}
		for f := range scalers {
			if !slices.Contains(fns, f) {
				delete(scalers, f)
			}
		}
	}
}
