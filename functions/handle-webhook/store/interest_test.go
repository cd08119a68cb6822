package store

import (
	"testing"
	"time"
)

// Wants answers from the copy in use only: nothing before a load or after
// a drop, and a type by the endpoints' patterns ("prefix.*" too).
func TestWantsAnswersFromTheCopyInUse(t *testing.T) {
	c := newInterests(nil)
	if wants, cached := c.Wants("billfn.invoice.paid"); wants || cached {
		t.Fatalf("before a load: wants %v, cached %v", wants, cached)
	}
	if !c.set([][]string{{"billfn.invoice.*"}, {"billfn.refund.succeeded"}}, time.Now(), c.generation()) {
		t.Fatal("not installed")
	}
	for typ, want := range map[string]bool{"billfn.invoice.paid": true, "billfn.refund.succeeded": true, "billfn.transaction.posted": false} {
		if wants, cached := c.Wants(typ); wants != want || !cached {
			t.Errorf("%s: wants %v, cached %v", typ, wants, cached)
		}
	}
	c.drop()
	if wants, cached := c.Wants("billfn.invoice.paid"); wants || cached {
		t.Fatalf("after a drop: wants %v, cached %v", wants, cached)
	}
}
