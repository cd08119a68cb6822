package outbox_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// gauges reads a publisher's Collector and the package's counters: metric
// name → value of the series of source.
func gauges(t *testing.T, pub *outbox.Publisher, source string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(append(outbox.Collectors(), pub.Collector())...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					out[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// The outbox's depth and the age of its oldest unpublished event (issue
// 19) are read from the table when scraped: they follow the rows, and both
// counters exist at zero from the publisher's start.
func TestOutboxDepthAndOldestAgeFollowTheTable(t *testing.T) {
	pool := testenv.Pool(t)
	_, brokers := testenv.Kafka(t)
	source := "fn-" + uuid.NewString()[:8]
	pub := outbox.NewPublisher(pool, source, brokers)
	defer pub.Close(context.Background())

	got := gauges(t, pub, source)
	if v, ok := got["billfn_outbox_publish_errors_total"]; !ok || v != 0 {
		t.Fatalf("publish errors before any pass: %v", got)
	}
	if got["billfn_outbox_backlog"] != 0 || got["billfn_outbox_oldest_unpublished_age_seconds"] != 0 {
		t.Fatalf("empty outbox: %v", got)
	}
	write(t, pool, source, 4)
	if _, err := pool.Exec(context.Background(),
		`UPDATE outbox SET created_at = now() - interval '90 seconds' WHERE source = $1 AND id = (SELECT min(id) FROM outbox WHERE source = $1)`, source); err != nil {
		t.Fatal(err)
	}
	got = gauges(t, pub, source)
	if got["billfn_outbox_backlog"] != 4 || got["billfn_outbox_oldest_unpublished_age_seconds"] < 90 {
		t.Fatalf("4 waiting events, the oldest 90 s old: %v", got)
	}
	if n, err := pub.Sweep(context.Background()); err != nil || n != 4 {
		t.Fatalf("sweep = %d, %v", n, err)
	}
	got = gauges(t, pub, source)
	if got["billfn_outbox_backlog"] != 0 || got["billfn_outbox_oldest_unpublished_age_seconds"] != 0 || got["billfn_outbox_published_total"] != 4 {
		t.Fatalf("after the sweep: %v", got)
	}
}
