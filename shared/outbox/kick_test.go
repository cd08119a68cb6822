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
	drained(t, pool, source, "after the kicks")
	time.Sleep(3 * pub.Linger) // room for a pass the kicks would still ask for
	if n := outbox.Batches(pub); n != 1 {
		t.Fatalf("%d publish transactions for one burst of commits, want 1", n)
	}
	checkRecords(t, consume(t, brokers, events.TopicTransaction, len(ids)), ids)

	// A commit after the pass still gets its own.
	more := write(t, pool, source, 2)
	pub.Kick()
	drained(t, pool, source, "after a later kick")
	checkRecords(t, consume(t, brokers, events.TopicTransaction, len(ids)+len(more)), append(ids, more...))
}
