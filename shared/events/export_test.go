package events

import "testing"

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
