package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/events"
)

// scheduler ticks functions on their schedules, as the OpenFaaS
// cron-connector does.
type scheduler struct {
	t       *Trigger
	cron    *cron.Cron
	mu      sync.Mutex
	entries map[string]scheduled
}

type scheduled struct {
	spec string
	id   cron.EntryID
}

func newScheduler(t *Trigger) *scheduler {
	return &scheduler{
		t: t,
		// An overrunning tick is skipped, not stacked.
		cron:    cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger))),
		entries: map[string]scheduled{},
	}
}

func (s *scheduler) start() { s.cron.Start() }

func (s *scheduler) stop() {
	<-s.cron.Stop().Done()
}

// spec is the function's schedule, or the fixed period that replaces every
// schedule (SCHEDULE_EVERY).
func (s *scheduler) spec(sub stackfile.Subscription) string {
	if sub.Schedule == "" {
		return ""
	}
	if d := s.t.cfg.ScheduleEvery.D(); d > 0 {
		return "@every " + d.String()
	}
	return sub.Schedule
}

func (s *scheduler) reconcile(subs map[string]stackfile.Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, e := range s.entries {
		if sub, ok := subs[name]; !ok || s.spec(sub) != e.spec {
			s.cron.Remove(e.id)
			delete(s.entries, name)
		}
	}
	for name, sub := range subs {
		spec := s.spec(sub)
		if spec == "" {
			continue
		}
		if _, ok := s.entries[name]; ok {
			continue
		}
		id, err := s.cron.AddFunc(spec, func() { s.tick(name) })
		if err != nil {
			slog.Warn("invalid schedule; the function is not scheduled", "target", name, "schedule", spec, "err", err.Error())
			continue
		}
		s.entries[name] = scheduled{spec: spec, id: id}
		slog.Info("schedule added", "target", name, "schedule", spec)
	}
}

// tick POSTs one cron-connector tick, signed as deliveries are. Ticks are not retried: the next one
// comes soon and the work is idempotent.
func (s *scheduler) tick(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.t.cfg.DeliveryTimeout.D())
	defer cancel()
	url := strings.TrimRight(s.t.cfg.GatewayURL, "/") + "/function/" + name
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return
	}
	req.Header.Set("X-Connector", "cron-connector")
	req.Header.Set("X-Topic", stackfile.CronTopic)
	req.Header.Set("User-Agent", "billfn-kafka-trigger")
	// A tick is a delivery like any other: signed (over its empty body,
	// for this function) with the delivery key, or the function refuses
	// it with 401.
	req.Header.Set(events.SignatureHeader, events.SignDelivery(s.t.key(), time.Now(), name, nil))
	start := time.Now()
	res, err := s.t.client.Do(req)
	result := "ok"
	switch {
	case err != nil:
		result = "failed"
		slog.Warn("tick failed", "target", name, "err", err.Error())
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
		res.Body.Close()
		switch {
		case res.StatusCode == http.StatusTooManyRequests:
			result = "rate_limited" // a gateway's limit; a function answers 200 to a tick it skips
		case res.StatusCode >= 300:
			result = "failed"
			slog.Warn("tick failed", "target", name, "status", res.StatusCode)
		default:
			slog.Debug("tick", "target", name, "ms", time.Since(start).Milliseconds())
		}
	}
	s.t.metrics.ticks.WithLabelValues(name, result).Inc()
}
