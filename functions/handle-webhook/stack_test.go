package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
)

// stack.yml delivers handle-webhook exactly the types it needs: every type
// a merchant's endpoint may subscribe to and the payment events that teach
// the payment map, from the topics the contract puts them on.
func TestStackSubscribesToEveryDeliverableType(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "stack.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Functions map[string]struct {
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"functions"`
	}
	if err := yaml.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	ann := st.Functions[webhooks.Name].Annotations
	patterns := strings.Split(ann["billfn.dev/types"], ",")
	topics := strings.Split(ann["topic"], ",")
	var got []string
	for _, s := range events.Contract() {
		if outgoing.Matches(patterns, s.Type) {
			got = append(got, s.Type)
		}
	}
	want := append(outgoing.Deliverable(), webhooks.LearnTypes...)
	slices.Sort(want)
	want = slices.Compact(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("stack.yml delivers %v\nwant %v", got, want)
	}
	for _, typ := range want {
		if topic, _ := events.ContractTopic(typ); !slices.Contains(topics, topic) {
			t.Errorf("%s travels on %s, which handle-webhook does not subscribe to", typ, topic)
		}
	}
}
