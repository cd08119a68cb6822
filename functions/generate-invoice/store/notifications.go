package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/postgres"
)

// ---- the delivery log of the customer's emails (invoice_notifications) ----

// An operator's notice (webhook_endpoint_id set) has no account nor owner:
// they read as "".
//
// A claimed email's lease (leased_until, claimed_at: migration 00027) reads
// as its next attempt and its last change, as when the claim moved
// next_attempt_at and updated_at themselves.
const notificationCols = `id, event_source, event_id, kind, invoice_id, subscription_id, coalesce(account_id::text, ''),
	coalesce(owner_user_id::text, ''), webhook_endpoint_id, recipient, status, reason,
	data, message_id, subject, attempts, greatest(next_attempt_at, leased_until), smtp_code, smtp_response, resend_of, created_at,
	greatest(updated_at, claimed_at), sent_at`

func scanNotification(row pgx.Row) (*notify.Notification, error) {
	n := &notify.Notification{Object: "notification"}
	var data []byte
	err := row.Scan(&n.ID, &n.EventSource, &n.EventID, &n.Kind, &n.InvoiceID, &n.SubscriptionID, &n.AccountID, &n.UserID, &n.EndpointID, &n.Recipient,
		&n.Status, &n.Reason, &data, &n.MessageID, &n.Subject, &n.Attempts, &n.NextAttemptAt, &n.SMTPCode,
		&n.SMTPResponse, &n.ResendOf, &n.CreatedAt, &n.UpdatedAt, &n.SentAt)
	if err != nil {
		return nil, err
	}
	if n.EndpointID != nil { // an operator's notice: its data is the endpoint's
		n.Endpoint = &events.WebhookEndpointDisabled{}
		n.Data = events.NotificationRequested{Kind: n.Kind}
		if err := json.Unmarshal(data, n.Endpoint); err != nil {
			return nil, err
		}
	} else if err := json.Unmarshal(data, &n.Data); err != nil {
		return nil, err
	}
	n.CreatedAt, n.UpdatedAt = n.CreatedAt.UTC(), n.UpdatedAt.UTC()
	n.NextAttemptAt, n.SentAt = utc(n.NextAttemptAt), utc(n.SentAt)
	return n, nil
}

// InsertNotification adds n to the log in the transaction, once per
// requesting event (source, id): false when the event had been logged
// already (the receiver's dedupe makes that rare; this makes it certain).
func (tx *Tx) InsertNotification(ctx context.Context, n *notify.Notification) (bool, error) {
	tag, err := tx.Exec(ctx, insertNotificationSQL, notificationArgs(n)...)
	return err == nil && tag.RowsAffected() > 0, err
}

const insertNotificationSQL = `INSERT INTO invoice_notifications (id, event_source, event_id, kind, invoice_id, account_id,
		owner_user_id, recipient, status, reason, data, message_id, subject, attempts, next_attempt_at, resend_of, created_at, updated_at,
		subscription_id, webhook_endpoint_id)
		VALUES ($1, $2, $3, $4, $5, nullif($6, '')::uuid, nullif($7, '')::uuid, $8, $9, $10, $11, $12, $13, 0, $14, $15, $16, $16, $17, $18)
		ON CONFLICT (event_source, event_id) DO NOTHING`

// notificationArgs are insertNotificationSQL's arguments for n.
func notificationArgs(n *notify.Notification) []any {
	return []any{n.ID, n.EventSource, n.EventID, n.Kind, n.InvoiceID, n.AccountID, n.UserID, n.Recipient, n.Status, n.Reason,
		n.DataJSON(), n.MessageID, n.Subject, n.NextAttemptAt, n.ResendOf, n.CreatedAt, n.SubscriptionID, n.EndpointID}
}

// InsertNotifications is InsertNotification for several notifications, in
// one statement (not one per email): fresh[i] is false when ns[i]'s event
// had been logged.
func (tx *Tx) InsertNotifications(ctx context.Context, ns []*notify.Notification) ([]bool, error) {
	fresh := make([]bool, len(ns))
	if len(ns) == 0 {
		return fresh, nil
	}
	k := len(ns)
	var (
		ids, sources, eventIDs, kinds, accounts, owners  = make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k)
		recipients, statuses, data, messageIDs, subjects = make([]string, k), make([]string, k), make([]string, k), make([]string, k), make([]string, k)
		invoices, reasons, resendOf, subs, endpoints     = make([]*string, k), make([]*string, k), make([]*string, k), make([]*string, k), make([]*string, k)
		next                                             = make([]*time.Time, k)
		created                                          = make([]time.Time, k)
	)
	for i, n := range ns {
		ids[i], sources[i], eventIDs[i], kinds[i], accounts[i], owners[i] = n.ID, n.EventSource, n.EventID, n.Kind, n.AccountID, n.UserID
		recipients[i], statuses[i], data[i], messageIDs[i], subjects[i] = n.Recipient, n.Status, string(n.DataJSON()), n.MessageID, n.Subject
		invoices[i], reasons[i], resendOf[i], subs[i], endpoints[i] = n.InvoiceID, n.Reason, n.ResendOf, n.SubscriptionID, n.EndpointID
		next[i], created[i] = n.NextAttemptAt, n.CreatedAt
	}
	logged, err := stringSet(tx.Query(ctx, `INSERT INTO invoice_notifications (id, event_source, event_id, kind, invoice_id, account_id,
		owner_user_id, recipient, status, reason, data, message_id, subject, attempts, next_attempt_at, resend_of, created_at, updated_at,
		subscription_id, webhook_endpoint_id)
		SELECT id, source, event_id, kind, invoice_id, nullif(account, '')::uuid, nullif(owner, '')::uuid, recipient, status, reason,
			data::jsonb, message_id, subject, 0, next_attempt_at, resend_of, created_at, created_at, subscription_id, endpoint_id
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
			$11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::uuid[], $16::timestamptz[], $17::uuid[], $18::uuid[])
			AS u(id, source, event_id, kind, invoice_id, account, owner, recipient, status, reason,
			data, message_id, subject, next_attempt_at, resend_of, created_at, subscription_id, endpoint_id)
		ON CONFLICT (event_source, event_id) DO NOTHING
		RETURNING id`,
		ids, sources, eventIDs, kinds, invoices, accounts, owners, recipients, statuses, reasons,
		data, messageIDs, subjects, next, resendOf, created, subs, endpoints))
	if err != nil {
		return nil, err
	}
	for i, n := range ns {
		fresh[i] = logged[n.ID]
	}
	return fresh, nil
}

// GetNotification reads one notification; forUpdate locks it.
func GetNotification(ctx context.Context, q Querier, id string, forUpdate bool) (*notify.Notification, error) {
	if !ids.Valid(id) {
		return nil, invoicing.NotFound("notification", id)
	}
	sql := `SELECT ` + notificationCols + ` FROM invoice_notifications WHERE id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	n, err := scanNotification(q.QueryRow(ctx, sql, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, invoicing.NotFound("notification", id)
	}
	return n, err
}

// GetNotification reads one notification.
func (s *Store) GetNotification(ctx context.Context, id string) (*notify.Notification, error) {
	return GetNotification(ctx, s.pool, id, false)
}

// NotificationFilter selects a page of the log.
type NotificationFilter = billing.NotificationFilter

// ListNotifications is a page of the log, newest first.
func (s *Store) ListNotifications(ctx context.Context, f NotificationFilter) ([]*notify.Notification, error) {
	var w postgres.Where
	w.Filter("invoice_id", f.InvoiceID)
	w.Filter("subscription_id", f.SubscriptionID)
	w.Filter("status", f.Status)
	if f.Before != "" {
		w.And("id < ?::uuid", f.Before)
	}
	sql := `SELECT ` + notificationCols + ` FROM invoice_notifications` + w.SQL() + ` ORDER BY id DESC LIMIT ` + w.Arg(f.Limit)
	args := w.Args
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*notify.Notification, error) { return scanNotification(r) })
}

// ClaimDueNotifications takes up to limit queued notifications whose next
// attempt has come and leases them for lease: their lease ends at
// now+lease and their attempts grow by one, in one statement, so another
// sender (replica) does not take them meanwhile, and one that dies while
// sending leaves them to be taken again when the lease ends. The lease is
// in columns no index holds (leased_until, claimed_at), so the claim is a
// HOT update (TestEmailClaimsAreHOT); the rows read as if next_attempt_at
// had moved to the lease's end (notificationCols).
func (s *Store) ClaimDueNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*notify.Notification, error) {
	rows, err := s.pool.Query(ctx, `UPDATE invoice_notifications SET attempts = attempts + 1, leased_until = $2, claimed_at = $1
		WHERE id IN (SELECT id FROM invoice_notifications WHERE status = 'queued' AND next_attempt_at <= $1
			AND (leased_until IS NULL OR leased_until <= $1)
			ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING `+notificationCols, now, now.Add(lease), limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*notify.Notification, error) { return scanNotification(r) })
}

// RecordAttempts writes the outcomes of attempts (notify.Notification.Record)
// in one statement (one round trip, one commit), each unless its row has
// moved on meanwhile (another sender took it after the lease ended), and
// ends their leases.
func (s *Store) RecordAttempts(ctx context.Context, ns []*notify.Notification) error {
	if len(ns) == 0 {
		return nil
	}
	k := len(ns)
	var (
		ids, statuses, subjects = make([]string, k), make([]string, k), make([]string, k)
		reasons, responses      = make([]*string, k), make([]*string, k)
		next, sent              = make([]*time.Time, k), make([]*time.Time, k)
		updated                 = make([]time.Time, k)
		codes                   = make([]*int, k)
		attempts                = make([]int, k)
	)
	for i, n := range ns {
		ids[i], statuses[i], subjects[i], reasons[i], responses[i] = n.ID, n.Status, n.Subject, n.Reason, n.SMTPResponse
		next[i], sent[i], updated[i], codes[i], attempts[i] = n.NextAttemptAt, n.SentAt, n.UpdatedAt, n.SMTPCode, n.Attempts
	}
	_, err := s.pool.Exec(ctx, `UPDATE invoice_notifications AS n SET status = u.status, reason = u.reason, subject = u.subject,
		next_attempt_at = u.next_attempt_at, smtp_code = u.smtp_code, smtp_response = u.smtp_response, updated_at = u.updated_at, sent_at = u.sent_at,
		leased_until = NULL, claimed_at = NULL
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::text[], $8::timestamptz[],
			$9::timestamptz[], $10::int[])
			AS u(id, status, reason, subject, next_attempt_at, smtp_code, smtp_response, updated_at, sent_at, attempts)
		WHERE n.id = u.id AND n.status = 'queued' AND n.attempts = u.attempts`,
		ids, statuses, reasons, subjects, next, codes, responses, updated, sent, attempts)
	return err
}

// PruneNotifications deletes up to limit notifications that are done with
// (sent, failed, suppressed) and last changed before cutoff, oldest first,
// and answers how many. Queued ones are never pruned.
func (s *Store) PruneNotifications(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM invoice_notifications WHERE id IN (
		SELECT id FROM invoice_notifications WHERE status <> 'queued' AND updated_at < $1
		ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, cutoff, limit)
	return int(tag.RowsAffected()), err
}
