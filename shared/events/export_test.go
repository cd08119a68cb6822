package events

import (
	"context"
	"fmt"
	"sync/atomic"
)

// CountVerifiedAlone counts the origin proofs ks verifies one by one
// rather than in a batch equation. Set it before ks is used.
func CountVerifiedAlone(ks *OriginKeys) *atomic.Int64 {
	var n atomic.Int64
	ks.verifiedAlone = func() { n.Add(1) }
	return &n
}

// ObserveVerify makes f see every slice of events whose origin proofs rc
// verifies. Set it before rc serves: f runs in rc's goroutines, so it
// must be safe for concurrent use.
func ObserveVerify(rc *Receiver, f func([]Event)) { rc.verifying = f }

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

// ScanBatch is scanBatch: whether body, which starts with '[', is valid
// JSON, and how many elements its top-level array has.
func ScanBatch(body []byte, spans [][2]int) ([][2]int, bool) { return scanBatch(body, spans) }
