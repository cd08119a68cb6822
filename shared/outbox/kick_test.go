package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// Commits that kick while a pass is on its way (during its linger) are all
// published by that pass: the kicks waiting behind it run no second, empty
// transaction (one commit more per burst, issue 20).
func TestKicksBeforeAPassCostNoEmptyPassAfterIt(t *testing.T) {
	pool := testenv.Pool(t)
	_, brokers := testenv.Kafka(t)
	source := "fn-" + uuid.NewString()[:8]
	pub := outbox.NewPublisher(pool, source, brokers)
	pub.Linger = 300 * time.Millisecond
	pub.Start(context.Background())
	defer pub.Close(context.Background())

	var ids []string
	for range 5 { // five requests commit and kick within the linger
		ids = append(ids, write(t, pool, source, 3)...)
		pub.Kick()
	}
	deadline := time.Now().Add(10 * time.Second)
	for backlog(t, pool, source) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := backlog(t, pool, source); n != 0 {
		t.Fatalf("backlog = %d after the kicks", n)
	}
	time.Sleep(3 * pub.Linger) // room for a pass the kicks would still ask for
	if n := outbox.Batches(pub); n != 1 {
		t.Fatalf("%d publish transactions for one burst of commits, want 1", n)
	}
	checkRecords(t, consume(t, brokers, events.TopicTransaction, len(ids)), ids)

	// A commit after the pass still gets its own.
	more := write(t, pool, source, 2)
	pub.Kick()
	deadline = time.Now().Add(10 * time.Second)
	for backlog(t, pool, source) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := backlog(t, pool, source); n != 0 {
		t.Fatalf("backlog = %d after a later kick", n)
	}
	checkRecords(t, consume(t, brokers, events.TopicTransaction, len(ids)+len(more)), append(ids, more...))
}
