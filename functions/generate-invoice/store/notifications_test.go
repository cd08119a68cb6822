package store_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// statements counts the statements a pool sends: every Exec, Query and
// QueryRow (BEGIN and COMMIT included) and every statement of a batch.
type statements struct{ n atomic.Int64 }

func (s *statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	s.n.Add(1)
	return ctx
}
func (s *statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (s *statements) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (s *statements) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) { s.n.Add(1) }
func (s *statements) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// countingStore is a store over the package database whose statements
// are counted.
func countingStore(t *testing.T) (*store.Store, *pgxpool.Pool, *statements) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	count := &statements{}
	cfg.ConnConfig.Tracer = count
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return store.New(pool, outbox.Writer{}), pool, count
}

// The emails of a batch delivery are logged in one statement, and their
// outcomes recorded in one, however many there are (they were one
// statement per email, and a transaction around the outcomes' batch):
// each email logged once per requesting event, each outcome written
// unless its row moved on meanwhile (another sender's lease).
func TestEmailsAreLoggedAndRecordedInOneStatementEach(t *testing.T) {
	st, pool, count := countingStore(t)
	ctx := t.Context()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const emails = 20
	var ns []*notify.Notification
	for i := range emails {
		req := events.NotificationRequested{Kind: events.NotifyInvoiceFinalized, AccountID: uuid.NewString(), UserID: uuid.NewString(),
			InvoiceID: uuid.NewString(), AmountDue: int64(100 + i)}
		recipient := "customer@example.com"
		if i == 1 { // no address: logged as suppressed
			recipient = ""
		}
		ns = append(ns, notify.New(ids.New(), "billfn.test", uuid.NewString(), req, recipient, "billfn.test", now))
	}

	log := func() []bool {
		t.Helper()
		var fresh []bool
		before := count.n.Load()
		err := st.InTx(ctx, func(tx *store.Tx) error {
			var err error
			fresh, err = tx.InsertNotifications(ctx, ns)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count.n.Load() - before; n != 3 { // BEGIN, the insert, COMMIT
			t.Fatalf("logging %d emails took %d statements, want 3 (BEGIN, one insert, COMMIT)", emails, n)
		}
		return fresh
	}
	for i, fresh := range log() {
		if !fresh {
			t.Fatalf("email %d was not logged", i)
		}
	}
	for i, fresh := range log() { // the same events again: nothing logged twice
		if fresh {
			t.Fatalf("email %d was logged twice", i)
		}
	}

	claimed, err := st.ClaimDueNotifications(ctx, now, time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != emails-1 {
		t.Fatalf("claimed %d emails, want %d", len(claimed), emails-1)
	}
	// Another sender took the first one meanwhile (its lease ended).
	if _, err := pool.Exec(ctx, `UPDATE invoice_notifications SET attempts = attempts + 1 WHERE id = $1`, claimed[0].ID); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Second)
	for i, n := range claimed {
		if i%2 == 0 {
			n.Record(notify.Outcome{Code: 250, Response: "queued as " + n.ID}, true, later, 20)
		} else {
			n.Record(notify.Outcome{Code: 451, Response: "try later", Temporary: true}, false, later, 20)
		}
	}
	before := count.n.Load()
	if err := st.RecordAttempts(ctx, claimed); err != nil {
		t.Fatal(err)
	}
	if n := count.n.Load() - before; n != 1 {
		t.Fatalf("recording %d outcomes took %d statements, want 1", len(claimed), n)
	}

	for i, c := range claimed {
		got, err := st.GetNotification(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		want, code, response := notify.Sent, 250, "queued as "+c.ID
		switch {
		case i == 0: // moved on: left as the other sender has it
			want, code, response = notify.Queued, 0, ""
		case i%2 == 1:
			want, code, response = notify.Queued, 451, "try later"
		}
		gotCode, gotResponse := 0, ""
		if got.SMTPCode != nil {
			gotCode, gotResponse = *got.SMTPCode, *got.SMTPResponse
		}
		if got.Status != want || gotCode != code || gotResponse != response {
			t.Fatalf("email %d: %s, %d %q; want %s, %d %q", i, got.Status, gotCode, gotResponse, want, code, response)
		}
		if want == notify.Sent && (got.SentAt == nil || !got.SentAt.Equal(later) || got.NextAttemptAt != nil || !got.UpdatedAt.Equal(later)) {
			t.Fatalf("email %d sent: sent_at %v, next_attempt_at %v, updated_at %v", i, got.SentAt, got.NextAttemptAt, got.UpdatedAt)
		}
		if i%2 == 1 && (got.NextAttemptAt == nil || !got.NextAttemptAt.Equal(later.Add(notify.Backoff(1)))) {
			t.Fatalf("email %d retried: next_attempt_at %v, want %v", i, got.NextAttemptAt, later.Add(notify.Backoff(1)))
		}
	}
	// The suppressed one kept its reason and was never claimed.
	got, err := st.GetNotification(ctx, ns[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != notify.Suppressed || got.Reason == nil || *got.Reason != notify.ReasonNoEmail || got.Attempts != 0 {
		t.Fatalf("the email without an address: %s %v, %d attempts", got.Status, got.Reason, got.Attempts)
	}
}

// BenchmarkEmailsLoggedAndRecorded logs the emails of a batch delivery of
// 100 notification requests (one transaction), claims them and records
// their outcomes, as the receiver and the sender do: the store's share of
// an email's cost in generate-invoice.
func BenchmarkEmailsLoggedAndRecorded(b *testing.B) {
	st := store.New(testenv.Pool(b), outbox.Writer{})
	ctx := b.Context()
	now := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC) // before the tests' emails: they are never due here
	const emails = 100
	b.ReportAllocs()
	for b.Loop() {
		ns := make([]*notify.Notification, emails)
		for i := range ns {
			req := events.NotificationRequested{Kind: events.NotifyInvoiceFinalized, AccountID: uuid.NewString(), UserID: uuid.NewString(),
				InvoiceID: uuid.NewString(), AmountDue: int64(100 + i)}
			ns[i] = notify.New(ids.New(), "billfn.bench", uuid.NewString(), req, "customer@example.com", "billfn.test", now)
		}
		err := st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.InsertNotifications(ctx, ns)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		claimed, err := st.ClaimDueNotifications(ctx, now, time.Minute, emails)
		if err != nil || len(claimed) != emails {
			b.Fatalf("claimed %d of %d: %v", len(claimed), emails, err)
		}
		for _, n := range claimed {
			n.Record(notify.Outcome{Code: 250, Response: "ok"}, true, now, 20)
		}
		if err := st.RecordAttempts(ctx, claimed); err != nil {
			b.Fatal(err)
		}
	}
}
