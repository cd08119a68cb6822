package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/handle-webhook/store"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// TestLearnIsPlannedOncePerConnection holds Learn's statement to its
// generic plan: Postgres keeps a custom plan for a prepared statement as
// long as the generic one looks dearer than the custom ones, which this
// one's always did (its generic plan estimates ten references to a
// delivery's one or two), so it was planned on every delivery: 2,560
// plans for 2,553 runs in the payments bench, 256 µs of PostgreSQL's
// time each, more than running it (issue 20).
func TestLearnIsPlannedOncePerConnection(t *testing.T) {
	ctx := context.Background()
	pool := testenv.OneConnectionPool(t, nil) // every delivery and the count below on one connection
	const source = "/functions/handle-webhook"
	s := store.New(pool, outbox.Writer{Source: source, Signer: testenv.OriginSigner(source)}, time.Now)
	const deliveries = 8
	for d := range deliveries {
		var refs []webhooks.PaymentRef
		for range 1 + d%2 {
			refs = append(refs, webhooks.PaymentRef{Gateway: "sandbox", GatewayPaymentID: "pi_" + uuid.NewString(),
				PaymentID: uuid.NewString(), From: "payment.created"})
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			unparked, err := s.Learn(ctx, tx, refs)
			if err == nil && unparked != 0 {
				t.Errorf("delivery %d: %d references unparked, want 0", d, unparked)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var learned int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM webhook_payment_refs`).Scan(&learned); err != nil || learned != 12 {
		t.Fatalf("references learned: %d (%v), want 12", learned, err)
	}
	got := testenv.PreparedPlans(t, pool, "%INSERT INTO webhook_payment_refs%")
	if len(got) != 1 {
		t.Fatalf("Learn's statement among the prepared statements: %+v", got)
	}
	if p := got[0]; p.Custom != 0 || p.Generic != deliveries {
		t.Errorf("Learn over %d deliveries: %d custom plans, %d runs of the generic plan; want 0 and %d", deliveries, p.Custom, p.Generic, deliveries)
	}
}
