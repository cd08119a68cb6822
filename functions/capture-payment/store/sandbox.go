package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
	"github.com/billfn/billfn/shared/sandbox"
)

// SandboxIntent is a row of sandbox_intents: a payment intent in the
// sandbox gateway's own books (package gateway holds its rules).
type SandboxIntent struct {
	ID, PaymentID, Currency, CaptureMethod, PaymentMethod, Status string
	Amount, AmountCapturable, AmountReceived, AmountRefunded      int64
	LastError                                                     *sandbox.PaymentError
	ConfirmKey                                                    string
	SettleAt                                                      *time.Time
	CreatedAt, UpdatedAt                                          time.Time
}

// SandboxWebhook is a webhook the sandbox owes, stored with the change it
// announces.
type SandboxWebhook struct {
	ID, Type string
	Payload  []byte
	At       time.Time
}

// Hook returns the webhook a change of an intent owes, or nil when none
// is owed. A write given a nil Hook commits as one statement; with a Hook
// it runs in a transaction that stores the webhook too.
type Hook func(*SandboxIntent) (*SandboxWebhook, error)

// Errors of the sandbox's books.
var (
	// ErrNoIntent: no intent (in the state the write asked for).
	ErrNoIntent = errors.New("store: no such sandbox intent")
	// ErrRefundKey: a refund with that key exists (a concurrent twin won).
	ErrRefundKey = errors.New("store: a sandbox refund with that key exists")
)

// SandboxBooks is the sandbox gateway's Postgres: sandbox_intents,
// sandbox_refunds and sandbox_webhooks. Its writes commit asynchronously
// (see asyncCommit).
type SandboxBooks struct {
	pool  *pgxpool.Pool
	group *pgbatch.Group // new intents, committed together (asynchronously)
}

// NewSandboxBooks returns the sandbox's books in pool, with a group of
// their own.
func NewSandboxBooks(pool *pgxpool.Pool) *SandboxBooks {
	return &SandboxBooks{pool: pool, group: pgbatch.NewAsyncGroup(pool, "capture-payment sandbox books")}
}

// SandboxBooks returns the sandbox's books in the store's pool, whose new
// intents share the asynchronous group of the intents the store records
// before a sandbox call: a payment writes one of each, one after the
// other, so with one group the writes of concurrent payments share half
// as many commits (one group commits at a time) instead of two groups
// each committing its own half. Both are asynchronous for the same reason
// (asyncCommit), and both guards write nothing when they say no.
func (s *Store) SandboxBooks() *SandboxBooks {
	return &SandboxBooks{pool: s.pool, group: s.async}
}

const intentCols = `id, payment_id, amount, currency, capture_method, payment_method, status, amount_capturable,
	amount_received, amount_refunded, last_error, confirm_key, settle_at, created_at, updated_at`

// scanIntent scans a row of intentCols, followed by the columns of more
// when given.
func scanIntent(row pgx.Row, more ...any) (*SandboxIntent, error) {
	in := &SandboxIntent{}
	err := row.Scan(append([]any{&in.ID, &in.PaymentID, &in.Amount, &in.Currency, &in.CaptureMethod, &in.PaymentMethod, &in.Status,
		&in.AmountCapturable, &in.AmountReceived, &in.AmountRefunded, &in.LastError, &in.ConfirmKey, &in.SettleAt,
		&in.CreatedAt, &in.UpdatedAt}, more...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoIntent
	}
	return in, err
}

// enqueue stores the webhook hook owes for in, if any.
func enqueue(ctx context.Context, q db, hook Hook, in *SandboxIntent) error {
	if hook == nil {
		return nil
	}
	w, err := hook(in)
	if err != nil || w == nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO sandbox_webhooks (id, type, payload, created_at) VALUES ($1, $2, $3, $4)`,
		w.ID, w.Type, w.Payload, w.At)
	return err
}

// tx runs fn in a transaction committed asynchronously.
func (b *SandboxBooks) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return postgres.Tx(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, asyncCommit); err != nil {
			return err
		}
		return fn(tx)
	})
}

// InsertIntent records a new intent and the webhook hook owes for it; it
// reports false, having written nothing, when an intent with in's id
// exists. Concurrent inserts share one transaction (the books' group).
func (b *SandboxBooks) InsertIntent(ctx context.Context, in *SandboxIntent, hook Hook) (bool, error) {
	rest := &pgx.Batch{}
	if err := enqueue(ctx, pgbatch.Queue(rest), hook, in); err != nil {
		return false, err
	}
	var inserted int
	return b.group.Do(ctx, pgbatch.Write{Guard: pgbatch.Guard{SQL: `WITH ins AS (
			INSERT INTO sandbox_intents (` + intentCols + `)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) ON CONFLICT (id) DO NOTHING RETURNING 1)
		SELECT count(*)::int FROM ins`,
		Args: []any{in.ID, in.PaymentID, in.Amount, in.Currency, in.CaptureMethod, in.PaymentMethod, in.Status, in.AmountCapturable,
			in.AmountReceived, in.AmountRefunded, in.LastError, in.ConfirmKey, in.SettleAt, in.CreatedAt, in.UpdatedAt},
		// An intent that exists makes the guard write nothing, and then its
		// webhook is not written either (exists: the caller confirms it
		// again, or replays).
		Dest: []any{&inserted}, Proceed: func() bool { return inserted == 1 }}, Rest: rest})
}

// UpdateIntent locks intent id and lets fn change it: when fn reports
// true, the change and the webhook hook owes are written; otherwise
// nothing is (a replay). It returns the intent as fn left it.
func (b *SandboxBooks) UpdateIntent(ctx context.Context, id string, hook Hook, fn func(*SandboxIntent) (bool, error)) (*SandboxIntent, error) {
	var in *SandboxIntent
	err := b.tx(ctx, func(tx pgx.Tx) error {
		var err error
		if in, err = scanIntent(tx.QueryRow(ctx, `SELECT `+intentCols+` FROM sandbox_intents WHERE id = $1 FOR UPDATE`, id)); err != nil {
			return err
		}
		write, err := fn(in)
		if err != nil || !write {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE sandbox_intents SET payment_method = $2, status = $3, amount_capturable = $4,
			amount_received = $5, last_error = $6, confirm_key = $7, settle_at = $8, updated_at = $9 WHERE id = $1`,
			in.ID, in.PaymentMethod, in.Status, in.AmountCapturable, in.AmountReceived, in.LastError, in.ConfirmKey,
			in.SettleAt, in.UpdatedAt); err != nil {
			return err
		}
		return enqueue(ctx, tx, hook, in)
	})
	return in, err
}

// returning runs one conditional UPDATE … RETURNING the intent and stores
// the webhook hook owes for it; ErrNoIntent when no intent matched.
func (b *SandboxBooks) returning(ctx context.Context, hook Hook, sql string, args ...any) (*SandboxIntent, error) {
	if hook == nil {
		// One statement, its own implicit transaction, made asynchronous
		// by its RETURNING (asyncCommit's setting, before it commits):
		// not a pipeline of the setting and the statement.
		var commit string
		return scanIntent(b.pool.QueryRow(ctx, sql+`, set_config('synchronous_commit', 'off', true)`, args...), &commit)
	}
	var in *SandboxIntent
	err := b.tx(ctx, func(tx pgx.Tx) error {
		var err error
		if in, err = scanIntent(tx.QueryRow(ctx, sql, args...)); err != nil {
			return err
		}
		return enqueue(ctx, tx, hook, in)
	})
	return in, err
}

// CaptureIntent captures amount of intent id if it is requires_capture
// with that much capturable; ErrNoIntent otherwise.
func (b *SandboxBooks) CaptureIntent(ctx context.Context, id string, amount int64, now time.Time, hook Hook) (*SandboxIntent, error) {
	return b.returning(ctx, hook, `UPDATE sandbox_intents SET status = 'succeeded', amount_received = $2,
			amount_capturable = 0, updated_at = $3 WHERE id = $1 AND status = 'requires_capture' AND amount_capturable >= $2
			RETURNING `+intentCols, id, amount, now)
}

// CancelIntent cancels intent id if it has not succeeded (nor been
// canceled, nor is processing); ErrNoIntent otherwise.
func (b *SandboxBooks) CancelIntent(ctx context.Context, id string, now time.Time, hook Hook) (*SandboxIntent, error) {
	return b.returning(ctx, hook, `UPDATE sandbox_intents SET status = 'canceled', amount_capturable = 0,
			settle_at = NULL, updated_at = $2 WHERE id = $1
			AND status IN ('requires_payment_method', 'requires_confirmation', 'requires_action', 'requires_capture')
			RETURNING `+intentCols, id, now)
}

// Intent reads intent id; ErrNoIntent when there is none.
func (b *SandboxBooks) Intent(ctx context.Context, id string) (*SandboxIntent, error) {
	return scanIntent(b.pool.QueryRow(ctx, `SELECT `+intentCols+` FROM sandbox_intents WHERE id = $1`, id))
}

// SettleIntents settles the processing intents whose settle_at has come
// (only intent id, unless id is ""), storing the webhooks hook owes, and
// returns them.
func (b *SandboxBooks) SettleIntents(ctx context.Context, id string, now time.Time, hook Hook) ([]*SandboxIntent, error) {
	var settled []*SandboxIntent
	err := b.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE sandbox_intents SET
			status = CASE capture_method WHEN 'manual' THEN 'requires_capture' ELSE 'succeeded' END,
			amount_capturable = CASE capture_method WHEN 'manual' THEN amount ELSE 0 END,
			amount_received = CASE capture_method WHEN 'manual' THEN 0 ELSE amount END,
			settle_at = NULL, updated_at = $1
			WHERE settle_at <= $1 AND status = 'processing' AND ($2 = '' OR id = $2) RETURNING `+intentCols, now, id)
		if err != nil {
			return err
		}
		if settled, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*SandboxIntent, error) { return scanIntent(r) }); err != nil {
			return err
		}
		for _, in := range settled {
			if err := enqueue(ctx, tx, hook, in); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return settled, nil
}

// SandboxRefund is a row of sandbox_refunds.
type SandboxRefund struct {
	ID, IntentID, Key, Status string
	Amount                    int64
	CreatedAt                 time.Time
}

// RefundByKey reads the refund made with key; ErrNoIntent when there is
// none.
func (b *SandboxBooks) RefundByKey(ctx context.Context, key string) (id, status string, err error) {
	err = b.pool.QueryRow(ctx, `SELECT id, status FROM sandbox_refunds WHERE key = $1`, key).Scan(&id, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNoIntent
	}
	return id, status, err
}

// RefundStatus reads the status of refund id; ErrNoIntent when there is
// none.
func (b *SandboxBooks) RefundStatus(ctx context.Context, id string) (string, error) {
	var status string
	err := b.pool.QueryRow(ctx, `SELECT status FROM sandbox_refunds WHERE id = $1`, id).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		err = ErrNoIntent
	}
	return status, err
}

// RefundIntent takes r.Amount from what succeeded intent r.IntentID has
// left to refund and records r, with the webhook hook owes. It returns the
// intent; ErrNoIntent when no succeeded intent has that much left,
// ErrRefundKey when a refund with r.Key exists.
func (b *SandboxBooks) RefundIntent(ctx context.Context, r SandboxRefund, hook Hook) (*SandboxIntent, error) {
	var in *SandboxIntent
	err := b.tx(ctx, func(tx pgx.Tx) error {
		var err error
		in, err = scanIntent(tx.QueryRow(ctx, `UPDATE sandbox_intents SET amount_refunded = amount_refunded + $2, updated_at = $3
			WHERE id = $1 AND status = 'succeeded' AND amount_received - amount_refunded >= $2 RETURNING `+intentCols,
			r.IntentID, r.Amount, r.CreatedAt))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sandbox_refunds (id, intent_id, key, amount, status, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, r.ID, in.ID, r.Key, r.Amount, r.Status, r.CreatedAt); err != nil {
			return err
		}
		return enqueue(ctx, tx, hook, in)
	})
	if _, dup := postgres.UniqueViolation(err); dup {
		return nil, ErrRefundKey
	}
	return in, err
}

// SendWebhooks hands up to max unsent webhooks, oldest first, to send, one
// at a time, and records each outcome; it stops at the first that send
// fails (sendErr). It returns how many were sent.
func (b *SandboxBooks) SendWebhooks(ctx context.Context, max int, now func() time.Time, send func(payload []byte) error) (sent int, sendErr error, err error) {
	err = b.tx(ctx, func(tx pgx.Tx) error {
		sent, sendErr = 0, nil
		rows, err := tx.Query(ctx, `SELECT id, payload FROM sandbox_webhooks WHERE sent_at IS NULL
			ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED`, max)
		if err != nil {
			return err
		}
		type hook struct {
			id      string
			payload []byte
		}
		hooks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hook, error) {
			var h hook
			return h, r.Scan(&h.id, &h.payload)
		})
		if err != nil {
			return err
		}
		if len(hooks) > 0 {
			// The books these webhooks announce were committed
			// asynchronously: make the WAL durable before telling anyone
			// (a synchronous commit of a transaction with an id flushes
			// the WAL up to it).
			if _, err := b.pool.Exec(ctx, `SELECT txid_current()`); err != nil {
				return err
			}
		}
		for _, h := range hooks {
			if sendErr = send(h.payload); sendErr != nil {
				_, err := tx.Exec(ctx, `UPDATE sandbox_webhooks SET attempts = attempts + 1, last_error = $2 WHERE id = $1`,
					h.id, sendErr.Error())
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE sandbox_webhooks SET sent_at = $2, attempts = attempts + 1, last_error = NULL
				WHERE id = $1`, h.id, now()); err != nil {
				return err
			}
			sent++
		}
		return nil
	})
	return sent, sendErr, err
}

// PruneWebhooks forgets the webhooks delivered before before.
func (b *SandboxBooks) PruneWebhooks(ctx context.Context, before time.Time) error {
	_, err := b.pool.Exec(ctx, `DELETE FROM sandbox_webhooks WHERE sent_at < $1`, before)
	return err
}
