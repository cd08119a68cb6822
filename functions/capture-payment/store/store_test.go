package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/functions/capture-payment/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func newIntent(id, status string) *store.SandboxIntent {
	return &store.SandboxIntent{ID: id, PaymentID: ids.New(), Amount: 1000, Currency: "usd", CaptureMethod: "manual",
		PaymentMethod: "pm_card_visa", Status: status, ConfirmKey: "k-" + id, CreatedAt: t0, UpdatedAt: t0}
}

// hook owes a webhook for every change, named after the intent's status.
func hook(in *store.SandboxIntent) (*store.SandboxWebhook, error) {
	return &store.SandboxWebhook{ID: "evt_" + ids.New(), Type: "payment_intent." + in.Status, Payload: []byte(`{}`), At: t0}, nil
}

func TestSandboxBooksKeepIntentsAndTheWebhooksTheyOwe(t *testing.T) {
	pool := testenv.Pool(t)
	ctx := context.Background()
	b := store.NewSandboxBooks(pool)
	hooks := func() int { return count(t, pool, `SELECT count(*) FROM sandbox_webhooks`) }
	before := hooks()

	// Insert: once; the second is a replay and writes nothing, webhook included.
	in := newIntent("pi_sbx_a", "requires_capture")
	in.AmountCapturable = 1000
	if ok, err := b.InsertIntent(ctx, in, nil); err != nil || !ok {
		t.Fatalf("insert: %v %v", ok, err)
	}
	if ok, err := b.InsertIntent(ctx, in, hook); err != nil || ok {
		t.Fatalf("insert again: %v %v, want false", ok, err)
	}
	if n := hooks(); n != before {
		t.Fatalf("a replayed insert stored a webhook (%d, want %d)", n, before)
	}
	got, err := b.Intent(ctx, "pi_sbx_a")
	if err != nil || got.Status != "requires_capture" || got.AmountCapturable != 1000 || got.PaymentID != in.PaymentID {
		t.Fatalf("read back: %+v %v", got, err)
	}
	if _, err := b.Intent(ctx, "pi_sbx_none"); !errors.Is(err, store.ErrNoIntent) {
		t.Fatalf("a missing intent: %v, want ErrNoIntent", err)
	}

	// Update: fn decides; false writes nothing.
	if _, err := b.UpdateIntent(ctx, "pi_sbx_a", hook, func(in *store.SandboxIntent) (bool, error) {
		in.Status = "canceled"
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Intent(ctx, "pi_sbx_a"); got.Status != "requires_capture" {
		t.Fatalf("an update fn declined wrote %q", got.Status)
	}
	boom := errors.New("refused")
	if _, err := b.UpdateIntent(ctx, "pi_sbx_a", hook, func(*store.SandboxIntent) (bool, error) { return true, boom }); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}

	// Capture: a conditional update; the second finds no capturable intent.
	c, err := b.CaptureIntent(ctx, "pi_sbx_a", 600, t0.Add(time.Minute), hook)
	if err != nil || c.Status != "succeeded" || c.AmountReceived != 600 || c.AmountCapturable != 0 {
		t.Fatalf("capture: %+v %v", c, err)
	}
	if n := hooks(); n != before+1 {
		t.Fatalf("capture stored %d webhooks, want 1", n-before)
	}
	if _, err := b.CaptureIntent(ctx, "pi_sbx_a", 600, t0, nil); !errors.Is(err, store.ErrNoIntent) {
		t.Fatalf("capture again: %v, want ErrNoIntent", err)
	}
	if _, err := b.CancelIntent(ctx, "pi_sbx_a", t0, nil); !errors.Is(err, store.ErrNoIntent) {
		t.Fatalf("cancel a succeeded intent: %v, want ErrNoIntent", err)
	}

	// Refunds: at most what was received, once per key.
	r := store.SandboxRefund{ID: "re_sbx_1", IntentID: "pi_sbx_a", Key: "rk1", Amount: 700, Status: "succeeded", CreatedAt: t0}
	if _, err := b.RefundIntent(ctx, r, nil); !errors.Is(err, store.ErrNoIntent) {
		t.Fatalf("refund more than received: %v, want ErrNoIntent", err)
	}
	r.Amount = 400
	if got, err := b.RefundIntent(ctx, r, hook); err != nil || got.AmountRefunded != 400 {
		t.Fatalf("refund: %+v %v", got, err)
	}
	r.ID, r.Amount = "re_sbx_2", 100 // within what is left: only the key refuses it
	if _, err := b.RefundIntent(ctx, r, nil); !errors.Is(err, store.ErrRefundKey) {
		t.Fatalf("the same key again: %v, want ErrRefundKey", err)
	}
	if got, _ := b.Intent(ctx, "pi_sbx_a"); got.AmountRefunded != 400 {
		t.Fatalf("the refused twin changed the intent: refunded %d", got.AmountRefunded)
	}
	if id, status, err := b.RefundByKey(ctx, "rk1"); err != nil || id != "re_sbx_1" || status != "succeeded" {
		t.Fatalf("refund by key: %q %q %v", id, status, err)
	}
	if _, _, err := b.RefundByKey(ctx, "rk-none"); !errors.Is(err, store.ErrNoIntent) {
		t.Fatalf("no refund by key: %v", err)
	}
	if st, err := b.RefundStatus(ctx, "re_sbx_1"); err != nil || st != "succeeded" {
		t.Fatalf("refund status: %q %v", st, err)
	}

	// Cancel and settle.
	if _, err := b.InsertIntent(ctx, newIntent("pi_sbx_b", "requires_confirmation"), nil); err != nil {
		t.Fatal(err)
	}
	if c, err := b.CancelIntent(ctx, "pi_sbx_b", t0, nil); err != nil || c.Status != "canceled" {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	due, later := newIntent("pi_sbx_c", "processing"), newIntent("pi_sbx_d", "processing")
	at, after := t0.Add(time.Second), t0.Add(time.Hour)
	due.SettleAt, later.SettleAt = &at, &after
	for _, in := range []*store.SandboxIntent{due, later} {
		if _, err := b.InsertIntent(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
	}
	settled, err := b.SettleIntents(ctx, "", t0.Add(time.Minute), hook)
	if err != nil || len(settled) != 1 || settled[0].ID != "pi_sbx_c" || settled[0].Status != "requires_capture" ||
		settled[0].AmountCapturable != 1000 || settled[0].SettleAt != nil {
		t.Fatalf("settle: %+v %v", settled, err)
	}
	if settled, err := b.SettleIntents(ctx, "pi_sbx_d", t0.Add(time.Minute), nil); err != nil || len(settled) != 0 {
		t.Fatalf("settle one not due: %+v %v", settled, err)
	}
}

func TestSandboxBooksSendWebhooksOldestFirstAndStopAtAFailure(t *testing.T) {
	pool := testenv.Pool(t)
	ctx := context.Background()
	b := store.NewSandboxBooks(pool)
	if _, err := pool.Exec(ctx, `DELETE FROM sandbox_webhooks`); err != nil { // other tests' webhooks
		t.Fatal(err)
	}
	for i, id := range []string{"evt_1", "evt_2", "evt_3"} {
		if _, err := pool.Exec(ctx, `INSERT INTO sandbox_webhooks (id, type, payload, created_at) VALUES ($1, 't', $2, $3)`,
			id, []byte(id), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	down := errors.New("handle-webhook is down")
	sent, sendErr, err := b.SendWebhooks(ctx, 50, func() time.Time { return t0 }, func(p []byte) error {
		seen = append(seen, string(p))
		if string(p) == "evt_2" {
			return down
		}
		return nil
	})
	if err != nil || !errors.Is(sendErr, down) || sent != 1 || len(seen) != 2 || seen[0] != "evt_1" {
		t.Fatalf("sent %d (%v), sendErr %v, err %v", sent, seen, sendErr, err)
	}
	if n := count(t, pool, `SELECT count(*) FROM sandbox_webhooks WHERE id = 'evt_2' AND attempts = 1 AND last_error = $1 AND sent_at IS NULL`, down.Error()); n != 1 {
		t.Fatal("the failed webhook's attempt is not recorded")
	}
	sent, sendErr, err = b.SendWebhooks(ctx, 50, func() time.Time { return t0 }, func([]byte) error { return nil })
	if err != nil || sendErr != nil || sent != 2 {
		t.Fatalf("the rest: sent %d, %v %v", sent, sendErr, err)
	}
	if err := b.PruneWebhooks(ctx, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool, `SELECT count(*) FROM sandbox_webhooks`); n != 0 {
		t.Fatalf("%d webhooks left after pruning the sent ones", n)
	}
}

// Pipeline writes a flow's finishing record only while the payment is at
// the version the flow read: a payment that moved meanwhile keeps what the
// other writer wrote, and no event or answer of the stale record is kept.
func TestPipelineWritesOnlyAPaymentStillAtItsVersion(t *testing.T) {
	pool := testenv.Pool(t)
	ctx := context.Background()
	s := store.New(pool, outbox.Writer{Source: "capture-payment-store-test"})
	gw := payments.GatewaySandbox
	p := &payments.Payment{ID: ids.New(), AccountID: ids.New(), UserID: ids.New(), Amount: 500, Currency: "USD",
		Status: payments.Processing, CaptureMethod: payments.CaptureAutomatic, Gateway: &gw, Attempts: 1,
		Metadata: map[string]string{}, CreatedAt: t0, UpdatedAt: t0}
	a := payments.Attempt{N: 1, Gateway: gw, PaymentMethod: "pm_card_visa", Status: "pending", StartedAt: t0}
	if ok, err := s.Fresh().DB().InsertConfirming(ctx, p, a); err != nil || !ok {
		t.Fatalf("insert: %v %v", ok, err)
	}
	outbox := func() int {
		return count(t, pool, `SELECT count(*) FROM outbox WHERE source LIKE '%capture-payment-store-test%'`)
	}
	message := func() []payments.Message {
		ev, err := events.New(ctx, "capture-payment-store-test", events.TypePaymentCaptured, p.ID, map[string]any{"payment_id": p.ID})
		if err != nil {
			t.Fatal(err)
		}
		return []payments.Message{{Topic: events.TopicPayment, Key: p.ID, Event: ev}}
	}

	// At its version: the payment, its attempt and the event.
	done := *p
	done.Status, done.AmountCaptured, done.UpdatedAt = payments.Succeeded, 500, t0.Add(time.Second)
	fin := t0.Add(time.Second)
	a.Status, a.FinishedAt = "succeeded", &fin
	ok, err := s.Pipeline(ctx, &done, t0, a, message(), nil)
	if err != nil || !ok {
		t.Fatalf("pipeline at the version: %v %v", ok, err)
	}
	if n := count(t, pool, `SELECT count(*) FROM payments WHERE id = $1 AND status = 'succeeded'`, p.ID); n != 1 {
		t.Fatal("the payment was not written")
	}
	if n := count(t, pool, `SELECT count(*) FROM payment_attempts WHERE payment_id = $1 AND n = 1 AND status = 'succeeded'`, p.ID); n != 1 {
		t.Fatal("the attempt was not written")
	}
	if n := outbox(); n != 1 {
		t.Fatalf("%d outbox rows, want 1", n)
	}

	// Stale (the flow read version t0, the payment is at t0+1s now): nothing.
	stale := done
	stale.Status, stale.AmountCaptured, stale.UpdatedAt = payments.Canceled, 0, t0.Add(time.Minute)
	a.Status = "canceled"
	ok, err = s.Pipeline(ctx, &stale, t0, a, message(), nil)
	if err != nil || ok {
		t.Fatalf("a stale pipeline: %v %v, want false and no error", ok, err)
	}
	if n := count(t, pool, `SELECT count(*) FROM payments WHERE id = $1 AND status = 'succeeded'`, p.ID); n != 1 {
		t.Fatal("a stale pipeline overwrote the payment")
	}
	if n := count(t, pool, `SELECT count(*) FROM payment_attempts WHERE payment_id = $1 AND status = 'succeeded'`, p.ID); n != 1 {
		t.Fatal("a stale pipeline overwrote the attempt")
	}
	if n := outbox(); n != 1 {
		t.Fatalf("%d outbox rows after a stale pipeline, want 1 (its event dropped)", n)
	}
}
