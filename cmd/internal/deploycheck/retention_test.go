package deploycheck

import (
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/platform"
)

// kafkaSegment is Kafka's default log.segment.ms: a topic deletes whole
// segments, so a record can outlive retention.ms by up to one segment.
const kafkaSegment = 7 * 24 * time.Hour

// A consumer group that starts from the earliest offset replays a topic
// from its oldest record, so every function's processed_events (its dedupe)
// must be kept at least as long as the longest-lived topic keeps a record:
// retention.ms plus a segment. The default of PROCESSED_EVENTS_RETENTION and
// any value stack.yml or the Knative services set are checked against
// knative/infra/topics.yaml.
func TestTheDedupeOutlastsEveryTopicsRecords(t *testing.T) {
	var longest time.Duration
	var topic string
	for _, tp := range decodeAll[kafkaTopic](t, "knative/infra/topics.yaml", "kafka.strimzi.io/v1beta2", "KafkaTopic") {
		keep := kafkaSegment
		if ms, ok := tp.Spec.Config["segment.ms"].(float64); ok {
			keep = time.Duration(ms) * time.Millisecond
		}
		ms, ok := tp.Spec.Config["retention.ms"].(float64)
		if !ok {
			t.Errorf("KafkaTopic %s sets no retention.ms", tp.Metadata.Name)
			continue
		}
		if keep += time.Duration(ms) * time.Millisecond; keep > longest {
			longest, topic = keep, tp.Metadata.Name
		}
	}
	field, _ := reflect.TypeFor[platform.Config]().FieldByName("ProcessedEventsRetention")
	const env = "PROCESSED_EVENTS_RETENTION"
	if field.Tag.Get("envconfig") != env {
		t.Fatalf("platform.Config.ProcessedEventsRetention is not read from %s", env)
	}
	check := func(where, value string) {
		t.Helper()
		d, err := time.ParseDuration(value)
		if err != nil {
			t.Errorf("%s: %s=%q: %v", where, env, value, err)
			return
		}
		if d != 0 && d < longest {
			t.Errorf("%s: %s=%v, shorter than %s keeps a record (%v): a replay from its start would apply events again", where, env, d, topic, longest)
		}
	}
	check("platform.Config's default", field.Tag.Get("default"))
	st := clusterStack(t)
	for _, name := range st.Names() {
		if v, ok := st.Functions[name].Environment[env]; ok {
			check("stack.yml's "+name, v)
		}
	}
	for _, s := range decodeAll[knService](t, "knative/services.yaml", "serving.knative.dev/v1", "Service") {
		for i, c := range s.Spec.Template.Spec.Containers {
			if v, ok := envMap(c)[env]; ok {
				check("knative Service "+s.Metadata.Name+" container "+strconv.Itoa(i), v)
			}
		}
	}
}
