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
const notificationCols = `id, event_source, event_id, kind, invoice_id, subscription_id, coalesce(account_id::text, ''),
	coalesce(owner_user_id::text, ''), webhook_endpoint_id, recipient, status, reason,
	data, message_id, subject, attempts, next_attempt_at, smtp_code, smtp_response, resend_of, created_at, updated_at, sent_at`

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
// one round trip: fresh[i] is false when ns[i]'s event had been logged.
func (tx *Tx) InsertNotifications(ctx context.Context, ns []*notify.Notification) ([]bool, error) {
	fresh := make([]bool, len(ns))
	if len(ns) == 0 {
		return fresh, nil
	}
	b := &pgx.Batch{}
	for _, n := range ns {
		b.Queue(insertNotificationSQL, notificationArgs(n)...)
	}
	br := tx.SendBatch(ctx, b)
	for i := range ns {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return nil, err
		}
		fresh[i] = tag.RowsAffected() > 0
	}
	return fresh, br.Close()
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
// attempt has come and leases them for lease: their next attempt moves to
// now+lease and their attempts grow by one, in one statement, so another
// sender (replica) does not take them meanwhile, and one that dies while
// sending leaves them to be taken again when the lease ends.
func (s *Store) ClaimDueNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*notify.Notification, error) {
	rows, err := s.pool.Query(ctx, `UPDATE invoice_notifications SET attempts = attempts + 1, next_attempt_at = $2, updated_at = $1
		WHERE id IN (SELECT id FROM invoice_notifications WHERE status = 'queued' AND next_attempt_at <= $1
			ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING `+notificationCols, now, now.Add(lease), limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*notify.Notification, error) { return scanNotification(r) })
}

// RecordAttempts writes the outcomes of attempts (notify.Notification.Record)
// in one transaction (one round trip), each unless its row has moved on
// meanwhile (another sender took it after the lease ended).
func (s *Store) RecordAttempts(ctx context.Context, ns []*notify.Notification) error {
	if len(ns) == 0 {
		return nil
	}
	return postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, n := range ns {
			b.Queue(`UPDATE invoice_notifications SET status = $2, reason = $3, subject = $4, next_attempt_at = $5,
				smtp_code = $6, smtp_response = $7, updated_at = $8, sent_at = $9
				WHERE id = $1 AND status = 'queued' AND attempts = $10`,
				n.ID, n.Status, n.Reason, n.Subject, n.NextAttemptAt, n.SMTPCode, n.SMTPResponse, n.UpdatedAt, n.SentAt, n.Attempts)
		}
		return tx.SendBatch(ctx, b).Close()
	})
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
