package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/billfn/billfn/cmd/internal/gateway"
	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
)

// Trigger runs one consumer group per subscribed function and the schedules.
type Trigger struct {
	cfg     Config
	keys    *events.KeyRing
	client  *http.Client
	metrics *metrics

	mu        sync.Mutex
	consumers map[string]*consumer // by function name
	sched     *scheduler

	dlqMu sync.Mutex
	dlq   sarama.SyncProducer
}

// key is the key deliveries are signed with now.
func (t *Trigger) key() []byte { return t.keys.Keys()[0] }

// New builds a trigger; Run starts it.
func New(cfg Config) (*Trigger, error) {
	keys, err := cfg.keys()
	if err != nil {
		return nil, err
	}
	t := &Trigger{
		cfg:  cfg,
		keys: keys,
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
			},
			// Deliveries are never redirected: a 3xx is an answer to classify.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		metrics:   newMetrics(),
		consumers: map[string]*consumer{},
	}
	t.sched = newScheduler(t)
	return t, nil
}

// Handler serves /metrics and /healthz.
func (t *Trigger) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("OK")) })
	return mux
}

// Run discovers the functions, keeps the consumers and schedules in line
// with them, and stops everything when ctx ends.
func (t *Trigger) Run(ctx context.Context) error {
	if t.cfg.Schedules {
		t.sched.start()
	}
	defer t.stopAll()
	warned := false
	for {
		subs, err := t.discover(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			if !warned {
				slog.Warn("cannot read the functions' subscriptions yet; retrying", "err", err.Error())
				warned = true
			}
		case err == nil:
			if warned {
				slog.Info("reading the functions' subscriptions again")
				warned = false
			}
			t.reconcile(ctx, subs)
		}
		wait := t.cfg.RefreshInterval.D()
		if err != nil {
			wait = min(wait, 2*time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// discover returns the subscriptions of every function.
func (t *Trigger) discover(ctx context.Context) (map[string]stackfile.Subscription, error) {
	out := map[string]stackfile.Subscription{}
	if t.cfg.StackFile != "" {
		s, err := stackfile.Load(t.cfg.StackFile, os.LookupEnv)
		if err != nil {
			return nil, err
		}
		for name, f := range s.Functions {
			sub, _ := f.Subscription() // Load validated it
			out[name] = sub
		}
		return out, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(t.cfg.GatewayURL, "/")+"/system/functions", nil)
	if err != nil {
		return nil, err
	}
	if t.cfg.GatewayUser != "" {
		req.SetBasicAuth(t.cfg.GatewayUser, t.cfg.GatewayPassword)
	}
	res, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /system/functions: %s", res.Status)
	}
	var fns []gateway.FunctionStatus
	if err := json.NewDecoder(res.Body).Decode(&fns); err != nil {
		return nil, fmt.Errorf("GET /system/functions: %w", err)
	}
	for _, f := range fns {
		var ann map[string]string
		if f.Annotations != nil {
			ann = *f.Annotations
		}
		sub, err := stackfile.ParseSubscription(ann)
		if err != nil {
			slog.Warn("ignoring a function with invalid trigger annotations", "target", f.Name, "err", err.Error())
			continue
		}
		out[f.Name] = sub
	}
	return out, nil
}

// reconcile starts, restarts and stops consumers and schedules so they
// match subs.
func (t *Trigger) reconcile(ctx context.Context, subs map[string]stackfile.Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, c := range t.consumers {
		sub, ok := subs[name]
		if !ok || !slices.Equal(sub.Topics, c.sub.Topics) || sub.BatchSize != c.sub.BatchSize ||
			sub.BatchWait != c.sub.BatchWait || !slices.Equal(sub.Types, c.sub.Types) {
			c.stop()
			delete(t.consumers, name)
			slog.Info("consumer stopped", "target", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(subs)) {
		sub := subs[name]
		if len(sub.Topics) == 0 {
			continue
		}
		if _, ok := t.consumers[name]; ok {
			continue
		}
		t.consumers[name] = t.startConsumer(ctx, name, sub)
		slog.Info("consumer started", "target", name, "topics", strings.Join(sub.Topics, ","),
			"group", t.cfg.GroupPrefix+name, "batch_size", sub.BatchSize, "batch_wait", sub.BatchWait.String())
	}
	if t.cfg.Schedules {
		t.sched.reconcile(subs)
	}
}

func (t *Trigger) stopAll() {
	t.sched.stop()
	t.mu.Lock()
	cs := t.consumers
	t.consumers = map[string]*consumer{}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop() }()
	}
	wg.Wait()
	t.dlqMu.Lock()
	if t.dlq != nil {
		_ = t.dlq.Close()
		t.dlq = nil
	}
	t.dlqMu.Unlock()
}

// dlqProducer returns the dead-letter producer, opening it on first use.
func (t *Trigger) dlqProducer() (sarama.SyncProducer, error) {
	t.dlqMu.Lock()
	defer t.dlqMu.Unlock()
	if t.dlq != nil {
		return t.dlq, nil
	}
	cfg := outbox.ProducerConfig()
	cfg.ClientID = "billfn-kafka-trigger-dlq"
	if err := t.cfg.SASL.Apply(cfg); err != nil {
		return nil, err
	}
	p, err := sarama.NewSyncProducer(t.cfg.Brokers, cfg)
	if err != nil {
		return nil, err
	}
	t.dlq = p
	return p, nil
}

type metrics struct {
	reg        *prometheus.Registry
	deliveries *prometheus.CounterVec
	seconds    *prometheus.HistogramVec
	lag        *prometheus.GaugeVec
	ticks      *prometheus.CounterVec
	// RED per event type (issue 19): records by type and result, each
	// delivery's time from its first attempt to its end, and what was
	// dead-lettered by reason.
	events      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	deadLetters *prometheus.CounterVec
}

// initConsumer gives a function's bounded label sets their series at
// zero: a dashboard shows "0 dead letters", not "no data".
func (m *metrics) initConsumer(function string) {
	for _, r := range dlqReasons {
		m.deadLetters.WithLabelValues(function, r)
	}
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billfn_trigger_deliveries_total",
			Help: "Delivery attempts of Kafka records by function, topic and result (delivered, retried, dead_lettered).",
		}, []string{"function", "topic", "result"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "billfn_trigger_delivery_seconds",
			Help:    "Time of one delivery request by function.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"function"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "billfn_trigger_consumer_lag",
			Help: "Records not yet delivered, per function, topic and partition (high-water mark minus next offset).",
		}, []string{"function", "topic", "partition"}),
		ticks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "billfn_trigger_ticks_total",
			Help: "Schedule ticks by function and result (ok, rate_limited, failed).",
		}, []string{"function", "result"}),
	}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "billfn_trigger_events_total",
		Help: "Kafka records by function, CloudEvent type (\"other\" for a type the contract does not know) and result " +
			"(delivered, retried: an attempt failed, dead_lettered, filtered: a type the function does not ask for).",
	}, []string{"function", "type", "result"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "billfn_trigger_delivery_duration_seconds",
		Help: "Time from a delivery's first attempt to its end, retries included, by function, CloudEvent type " +
			"(\"mixed\" for a batch of several) and result (delivered, dead_lettered).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"function", "type", "result"})
	m.deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "billfn_trigger_dead_letters_total",
		Help: "Records written to the dead-letter topic by function and reason: rejected (a status no retry changes), " +
			"retries_exhausted (every attempt failed), unsendable (no request could be built).",
	}, []string{"function", "reason"})
	m.reg.MustRegister(m.deliveries, m.seconds, m.lag, m.ticks, m.events, m.duration, m.deadLetters,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
