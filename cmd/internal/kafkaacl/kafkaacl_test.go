package kafkaacl

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/billfn/billfn/cmd/internal/stackfile"
	"github.com/billfn/billfn/shared/events"
)

var root = filepath.Join("..", "..", "..")

func load(t *testing.T) *Table {
	t.Helper()
	tab, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func set(xs ...string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}

// The table against the event contract (shared/events, itself checked
// against docs/events.md): every function may write exactly the topics of
// the facts it owns and the commands it produces, the integrator only the
// topics of commands, and nobody reads but the kafka-trigger.
func TestTableFollowsTheEventContract(t *testing.T) {
	tab := load(t)
	owned := map[string][]string{} // function -> topics of its facts
	for _, typ := range events.ContractTypes() {
		if f, ok := events.Emitter(typ); ok {
			topic, _ := events.ContractTopic(typ)
			owned[f] = append(owned[f], topic)
		}
	}
	for _, f := range events.Functions {
		p, ok := tab.Principal(f)
		if !ok {
			t.Errorf("%s has no principal in %s", f, File)
			continue
		}
		want := owned[f]
		for _, c := range p.Commands {
			if !events.IsCommand(c) {
				t.Errorf("%s lists %s as a command; the contract says it is not one", f, c)
			}
			topic, _ := events.ContractTopic(c)
			want = append(want, topic)
		}
		if got, want := set(p.Write...), set(want...); !slices.Equal(got, want) {
			t.Errorf("%s may write %v; the contract says it produces on %v", f, got, want)
		}
		if len(p.Read) > 0 || len(p.Groups) > 0 {
			t.Errorf("%s may read %v (groups %v): functions consume through the kafka-trigger, never from Kafka", f, p.Read, p.Groups)
		}
	}
	in, ok := tab.Principal(Integrator)
	if !ok {
		t.Fatalf("no %s principal", Integrator)
	}
	if len(in.Commands) == 0 {
		t.Errorf("the integrator produces no command")
	}
	var want []string
	for _, c := range in.Commands {
		if !events.IsCommand(c) {
			t.Errorf("the integrator lists %s, which is no command: an outside system may only ask", c)
		}
		topic, _ := events.ContractTopic(c)
		want = append(want, topic)
	}
	if got, want := set(in.Write...), set(want...); !slices.Equal(got, want) {
		t.Errorf("the integrator may write %v; its commands travel on %v", got, want)
	}
	if len(in.Read) > 0 || len(in.Groups) > 0 {
		t.Errorf("the integrator may read %v (groups %v)", in.Read, in.Groups)
	}
	wantNames := append(slices.Clone(events.Functions), Trigger, Integrator)
	if got, want := set(tab.Names()...), set(wantNames...); !slices.Equal(got, want) {
		t.Errorf("principals %v, want %v", got, want)
	}
}

// The kafka-trigger reads exactly the topics stack.yml subscribes the
// functions to, with the consumer groups it and the KafkaSources use, and
// writes only the dead-letter topic.
func TestTriggerReadsWhatFunctionsSubscribe(t *testing.T) {
	tab := load(t)
	st, err := stackfile.Load(filepath.Join(root, "stack.yml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	topics := map[string]bool{}
	for _, name := range st.Names() {
		sub, err := st.Functions[name].Subscription()
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range sub.Topics {
			topics[topic] = true
		}
	}
	p, ok := tab.Principal(Trigger)
	if !ok {
		t.Fatalf("no %s principal", Trigger)
	}
	if got, want := set(p.Read...), set(slices.Collect(maps.Keys(topics))...); !slices.Equal(got, want) {
		t.Errorf("the kafka-trigger may read %v; stack.yml subscribes functions to %v", got, want)
	}
	if got := set(p.Write...); !slices.Equal(got, []string{"billfn-dlq"}) {
		t.Errorf("the kafka-trigger may write %v; want only the dead-letter topic billfn-dlq", got)
	}
	if got := set(p.Groups...); !slices.Equal(got, []string{"kafka-trigger-", "knative-"}) {
		t.Errorf("the kafka-trigger's group prefixes are %v; want its own (GROUP_PREFIX kafka-trigger-) and the KafkaSources' (knative-)", got)
	}
}

func TestParseRefusesWildcardsAndDuplicates(t *testing.T) {
	for name, doc := range map[string]string{
		"wildcard topic": "principals:\n  - name: a\n    write: ['*']\n",
		"duplicate":      "principals:\n  - name: a\n  - name: a\n",
		"bad name":       "principals:\n  - name: A_b\n",
		"unknown field":  "principals:\n  - name: a\n    writes: [x]\n",
		"empty":          "principals: []\n",
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	tab, err := Parse([]byte("principals:\n  - name: a\n    write: [t]\n    read: [u]\n    groups: [g-]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := tab.Principal("a")
	var got []string
	for _, r := range p.Rules() {
		got = append(got, strings.Join([]string{r.Resource, r.Name, r.Pattern, r.Operation}, " "))
	}
	want := []string{"group g- prefix Read", "topic t literal Write", "topic u literal Read"}
	if !slices.Equal(got, want) {
		t.Errorf("rules %v, want %v", got, want)
	}
}
