package main

import (
	"slices"
	"testing"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// stack.yml delivers handle-webhook exactly the types it needs: every type
// a merchant's endpoint may subscribe to and the payment events that teach
// the payment map, from the topics the contract puts them on.
func TestStackSubscribesToEveryDeliverableType(t *testing.T) {
	ann := testenv.StackAnnotations(t, webhooks.Name)
	patterns := testenv.StackList(ann, "billfn.dev/types")
	topics := testenv.StackList(ann, "topic")
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
