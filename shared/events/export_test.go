package events

import (
	"context"
	"fmt"
	"testing"
)

// ObserveVerify makes f see every slice of events whose origin proofs a
// Receiver verifies, until the test ends. f runs in the receiver's
// goroutines and is shared by every test running at the same time: it
// must be safe for concurrent use and pick out its own test's events.
func ObserveVerify(t *testing.T, f func([]Event)) {
	t.Helper()
	if !verifyHook.CompareAndSwap(nil, &f) {
		t.Fatal("events.ObserveVerify: another test is observing")
	}
	t.Cleanup(func() { verifyHook.Store(nil) })
}

var dispositionNames = map[disposition]string{
	parkForeign:      "park foreign",
	ignoreMisplaced:  "ignore misplaced",
	ignoreUnhandled:  "ignore unhandled",
	ignoreIrrelevant: "ignore irrelevant",
	applySelf:        "apply self",
	applyTx:          "apply in a transaction",
}

func (d disposition) String() string {
	if n, ok := dispositionNames[d]; ok {
		return n
	}
	return fmt.Sprintf("disposition %d", d)
}

// Dispositions names every disposition deliver has for an event whose
// origin is proven.
func Dispositions() []string {
	var out []string
	for d := range nDispositions {
		out = append(out, d.String())
	}
	return out
}

// DispositionOf is what rc's deliver does with ev, proven, read from the
// topic ctx carries (WithTopic).
func DispositionOf(ctx context.Context, rc *Receiver, ev Event) string {
	d, _ := rc.dispose(ctx, ev)
	return d.String()
}
