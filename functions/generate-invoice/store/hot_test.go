package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/testenv"
)

// tupleUpdates are invoice_notifications' row updates as
// pg_stat_user_tables counts them, and how many of them were HOT (the new
// version on the old one's page, no index entry added).
type tupleUpdates struct{ all, hot int64 }

func notificationUpdates(t *testing.T, pool *pgxpool.Pool) tupleUpdates {
	t.Helper()
	var u tupleUpdates
	// A new transaction each time: the statistics snapshot is taken anew.
	if err := pool.QueryRow(context.Background(), `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
		WHERE relname = 'invoice_notifications'`).Scan(&u.all, &u.hot); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestEmailClaimsAreHOT holds how PostgreSQL writes a sender's claim of
// the emails the receiver logged, as the bench's invoice batches make
// them: the receiver logs a delivery's emails in one statement, the
// sender claims them by batches of connections × claimPerConnection (8 ×
// 5) and records their outcomes. The claims are HOT updates (the lease is
// in columns no index holds, and the table's fillfactor keeps room for
// the claimed version on the page): all of them, but on a page whose
// older versions a snapshot still held when it was pruned (autovacuum's,
// ANALYZE's), hence at least 90 %. The outcome, which changes the status,
// cannot be HOT. When the claim moved next_attempt_at and updated_at
// (both indexed), none was HOT: a new entry in each of the table's
// indexes per email.
func TestEmailClaimsAreHOT(t *testing.T) {
	url := testenv.FreshDatabase(t, true)
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := store.New(pool, outbox.Writer{})
	ctx := t.Context()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const deliveries, perDelivery, claim = 6, 100, 40
	due := "2030-02-01"
	before := notificationUpdates(t, pool)
	for d := range deliveries {
		ns := make([]*notify.Notification, perDelivery)
		for i := range ns {
			number := "INV-" + uuid.NewString()[:8]
			req := events.NotificationRequested{Kind: events.NotifyInvoiceFinalized, AccountID: uuid.NewString(), UserID: uuid.NewString(),
				InvoiceID: uuid.NewString(), Number: &number, AmountDue: int64(100*d + i), Currency: "USD", DueDate: &due}
			ns[i] = notify.New(ids.New(), "billfn.test", uuid.NewString(), req, "customer@example.com", "billfn.test", now)
		}
		if err := st.InTx(ctx, func(tx *store.Tx) error {
			_, err := tx.InsertNotifications(ctx, ns)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for {
			claimed, err := st.ClaimDueNotifications(ctx, now, 2*time.Minute, claim)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range claimed {
				n.Record(notify.Outcome{Code: 250, Response: "queued as " + n.ID}, true, now.Add(time.Second), 20)
			}
			if err := st.RecordAttempts(ctx, claimed); err != nil {
				t.Fatal(err)
			}
			if len(claimed) < claim {
				break
			}
		}
	}
	const emails = deliveries * perDelivery
	// A backend reports its counts within 10 s of going idle.
	var u tupleUpdates
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		u = notificationUpdates(t, pool)
		u.all -= before.all
		u.hot -= before.hot
		if u.all >= 2*emails || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("invoice_notifications: %d updates (%d emails claimed and recorded), %d HOT", u.all, emails, u.hot)
	if u.all != 2*emails {
		t.Fatalf("%d updates reported, want %d (a claim and an outcome per email)", u.all, 2*emails)
	}
	if u.hot*100 < emails*90 {
		t.Errorf("%d of %d updates HOT, want at least 90 %% of the %d claims", u.hot, u.all, emails)
	}
}

// A claim's lease keeps what it was when it moved next_attempt_at: a
// claimed email is not claimed again before its lease ends (another
// sender), is claimed again when it ends (its sender died while sending),
// reads meanwhile as due at the lease's end and changed at the claim; an
// outcome ends the lease, and a retry comes at its backoff, not later.
func TestEmailClaimLease(t *testing.T) {
	st := store.New(testenv.Pool(t), outbox.Writer{})
	ctx := t.Context()
	now := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC) // after the other tests' emails: claimed first here
	req := events.NotificationRequested{Kind: events.NotifyInvoiceFinalized, AccountID: uuid.NewString(), UserID: uuid.NewString(),
		InvoiceID: uuid.NewString(), AmountDue: 100, Currency: "USD"}
	n := notify.New(ids.New(), "billfn.test", uuid.NewString(), req, "customer@example.com", "billfn.test", now)
	if err := st.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.InsertNotifications(ctx, []*notify.Notification{n})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Longer than the backoff after a second attempt (2 min): a lease the
	// outcome left behind would hold the retry back.
	const lease = 10 * time.Minute
	claim := func(at time.Time) *notify.Notification {
		t.Helper()
		claimed, err := st.ClaimDueNotifications(ctx, at, lease, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var got *notify.Notification
		for _, c := range claimed {
			if c.ID == n.ID {
				got = c
			} else { // another test's email, due long ago: out of the way
				c.Record(notify.Outcome{Code: 250}, true, at, 20)
				if err := st.RecordAttempts(ctx, []*notify.Notification{c}); err != nil {
					t.Fatal(err)
				}
			}
		}
		return got
	}
	check := func(what string, n *notify.Notification, attempts int, next, updated time.Time) {
		t.Helper()
		if n.Attempts != attempts || n.NextAttemptAt == nil || !n.NextAttemptAt.Equal(next) || !n.UpdatedAt.Equal(updated) {
			t.Fatalf("%s: %d attempts, next %v, updated %v; want %d, %v, %v", what, n.Attempts, n.NextAttemptAt, n.UpdatedAt, attempts, next, updated)
		}
	}

	c := claim(now)
	if c == nil {
		t.Fatal("a due email was not claimed")
	}
	check("claimed", c, 1, now.Add(lease), now)
	got, err := st.GetNotification(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("read while claimed", got, 1, now.Add(lease), now)
	if claim(now.Add(lease-time.Second)) != nil {
		t.Fatal("claimed again before its lease ended")
	}
	c = claim(now.Add(lease)) // its sender died: taken again
	if c == nil {
		t.Fatal("not claimed again when its lease ended")
	}
	at := now.Add(lease)
	check("claimed again", c, 2, at.Add(lease), at)

	done := at.Add(time.Second)
	c.Record(notify.Outcome{Code: 451, Response: "try later", Temporary: true}, false, done, 20)
	if err := st.RecordAttempts(ctx, []*notify.Notification{c}); err != nil {
		t.Fatal(err)
	}
	retry := done.Add(notify.Backoff(2))
	got, err = st.GetNotification(ctx, n.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("retried", got, 2, retry, done)
	if claim(retry.Add(-time.Second)) != nil {
		t.Fatal("claimed before its backoff ended")
	}
	if c = claim(retry); c == nil {
		t.Fatal("not claimed when its backoff ended")
	}
	check("claimed for its retry", c, 3, retry.Add(lease), retry)
}
