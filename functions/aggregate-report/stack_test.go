package main

import (
	"slices"
	"testing"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// stack.yml delivers aggregate-report exactly the facts its rollups
// aggregate: a type it lists but does not consume costs a delivery and a
// processed_events row for nothing, a type it consumes but does not list
// never reaches it. (cmd/internal/stackfile checks every other function's
// list; cmd/ may not import a function, so this one is checked here.)
func TestStackDeliversExactlyWhatTheRollupsConsume(t *testing.T) {
	ann := testenv.StackAnnotations(t, "aggregate-report")
	patterns := testenv.StackList(ann, "billfn.dev/types")
	if len(patterns) < 2 {
		t.Fatalf("aggregate-report's billfn.dev/types is %q", ann["billfn.dev/types"])
	}
	topics := testenv.StackList(ann, "topic")
	consumed := 0
	for _, typ := range events.ContractTypes() {
		listed := events.MatchesType(patterns, typ)
		if listed != rollup.Consumes(typ) {
			t.Errorf("stack.yml delivers %s: %v, the rollups consume it: %v", typ, listed, rollup.Consumes(typ))
		}
		if !rollup.Consumes(typ) {
			continue
		}
		consumed++
		if topic, _ := events.ContractTopic(typ); !slices.Contains(topics, topic) {
			t.Errorf("%s travels on %s, which aggregate-report does not subscribe to", typ, topic)
		}
	}
	if consumed == 0 {
		t.Fatal("the rollups consume no contract type")
	}
}
