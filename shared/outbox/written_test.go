package outbox_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/testenv"
)

// A delivery's route kicks its publisher only when the delivery wrote
// outbox rows (issue 20): Add notes them in the context's Written, an Add
// of nothing does not, and a context without one is left alone.
func TestAddNotesItsWritesInTheContextsWritten(t *testing.T) {
	pool := testenv.Pool(t)
	ev := events.Must(events.New(context.Background(), "capture-payment", events.TypePaymentCaptured, "acct-w", map[string]int{"n": 1}))
	add := func(ctx context.Context, msgs ...outbox.Message) {
		t.Helper()
		if err := postgres.Tx(ctx, pool, func(tx pgx.Tx) error {
			return outbox.Writer{Source: "fn-written"}.Add(ctx, tx, msgs...)
		}); err != nil {
			t.Fatal(err)
		}
	}
	var none, some outbox.Written
	add(outbox.Tracking(context.Background(), &none))
	if none.Load() {
		t.Fatal("an Add of no message noted a write")
	}
	add(outbox.Tracking(context.Background(), &some), outbox.Message{Topic: events.TopicPayment, Key: "acct-w", Event: ev})
	if !some.Load() {
		t.Fatal("an Add of a message did not note its write")
	}
	add(context.Background(), outbox.Message{Topic: events.TopicPayment, Key: "acct-w", Event: ev}) // no Written: no panic
}
