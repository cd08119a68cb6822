package main

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

// The same events delivered at once by several deliveries (alone, and in
// overlapping batches, as two kafka-trigger replicas redelivering would):
// each is counted once.
func TestConcurrentDeliveriesOfTheSameEventsCountOnce(t *testing.T) {
	g := newRig(t)
	d := day("2026-07-13")
	one := transfer(t, d.Add(time.Hour), acctA, acctB, 700, "USD", "posted")
	two := transfer(t, d.Add(2*time.Hour), acctA, acctB, 5, "USD", "posted")
	three := transfer(t, d.Add(3*time.Hour), acctB, acctA, 9, "USD", "posted")
	deliveries := [][]events.Event{{one}, {one}, {one, two}, {two, three}, {three, one}, {three}, {one, two, three}, {two}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make([]int, len(deliveries))
	for i, evs := range deliveries {
		req := g.kit.Delivery(t, evs...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rec := httptest.NewRecorder()
			g.h.ServeHTTP(rec, req)
			codes[i] = rec.Code
		}()
	}
	close(start)
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			// A delivery refused (a conflict with another) is redelivered.
			if r := g.deliver(deliveries[i]...); r.Processed+r.Duplicates != len(deliveries[i]) {
				t.Fatalf("redelivery %d: %+v", i, r)
			}
		}
	}
	want := []string{"acct:aaaa transfer.posted  USD = 2/705", "acct:aaaa transfer.received  USD = 1/9",
		"acct:bbbb transfer.posted  USD = 1/9", "acct:bbbb transfer.received  USD = 2/705",
		"transfer.posted  USD = 3/714"}
	if got := g.rollupRows(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("rollups %q, want %q (answers %v)", got, want, codes)
	}
}
