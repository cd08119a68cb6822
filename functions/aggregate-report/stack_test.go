package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/shared/events"
)

// stack.yml delivers aggregate-report exactly the facts its rollups
// aggregate: a type it lists but does not consume costs a delivery and a
// processed_events row for nothing, a type it consumes but does not list
// never reaches it. (cmd/internal/stackfile checks every other function's
// list; cmd/ may not import a function, so this one is checked here.)
func TestStackDeliversExactlyWhatTheRollupsConsume(t *testing.T) {
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
	fn, ok := st.Functions["aggregate-report"]
	if !ok {
		t.Fatal("stack.yml has no aggregate-report")
	}
	patterns := strings.Split(fn.Annotations["billfn.dev/types"], ",")
	if len(patterns) < 2 {
		t.Fatalf("aggregate-report's billfn.dev/types is %q", fn.Annotations["billfn.dev/types"])
	}
	topics := strings.Split(fn.Annotations["topic"], ",")
	consumed := 0
	for _, typ := range events.ContractTypes() {
		listed := false
		for _, p := range patterns {
			if prefix, wild := strings.CutSuffix(p, "*"); (wild && strings.HasPrefix(typ, prefix)) || p == typ {
				listed = true
			}
		}
		if listed != rollup.Consumes(typ) {
			t.Errorf("stack.yml delivers %s: %v, the rollups consume it: %v", typ, listed, rollup.Consumes(typ))
		}
		if !rollup.Consumes(typ) {
			continue
		}
		consumed++
		topic, _ := events.ContractTopic(typ)
		found := false
		for _, tp := range topics {
			found = found || tp == topic
		}
		if !found {
			t.Errorf("%s travels on %s, which aggregate-report does not subscribe to", typ, topic)
		}
	}
	if consumed == 0 {
		t.Fatal("the rollups consume no contract type")
	}
}
