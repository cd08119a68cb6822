package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// TargetsFile is the Prometheus file_sd list of what the running stack
// serves /metrics on, written in the run directory at start: make observe's
// Prometheus reads it (and re-reads it whenever the stack writes it again),
// so its scrape targets follow the functions the stack runs.
const TargetsFile = "prometheus-targets.json"

type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// targets lists the gateway, every replica of every deployed function
// (stack.yml's and those deployed through the API) and every kafka-trigger.
func (s *stack) targets() []targetGroup {
	out := []targetGroup{{Targets: []string{s.cfg.GatewayAddr}, Labels: map[string]string{"job": "gateway", "service": "gateway"}}}
	s.mu.Lock()
	fns := slices.Collect(maps.Values(s.fns))
	s.mu.Unlock()
	slices.SortFunc(fns, func(a, b *function) int { return strings.Compare(a.name, b.name) })
	for _, f := range fns {
		if addrs := f.addrs(); len(addrs) > 0 {
			slices.Sort(addrs)
			out = append(out, targetGroup{Targets: addrs, Labels: map[string]string{"job": "functions", "service": f.name}})
		}
	}
	out = append(out, targetGroup{Targets: s.triggerAddrs(), Labels: map[string]string{"job": "kafka-trigger", "service": "kafka-trigger"}})
	return out
}

// followTargets rewrites TargetsFile whenever the replicas change (looked
// at every 2 s), until ctx ends: Prometheus follows a scale-up, a
// scale-to-zero and a function deployed through the API.
func (s *stack) followTargets(ctx context.Context) {
	var last []byte
	for {
		b, err := json.MarshalIndent(s.targets(), "", "  ")
		if err == nil && !bytes.Equal(b, last) {
			if err := s.writeTargetsFile(b); err != nil {
				s.log.printf("stack", "cannot write the Prometheus targets (make observe scrapes them): %v", err)
			} else {
				last = b
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// writeTargetsFile writes TargetsFile atomically (Prometheus may read it at any time).
func (s *stack) writeTargetsFile(b []byte) error {
	path := filepath.Join(s.cfg.RunDir, TargetsFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
