package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/generate-invoice/billing"
	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/postgres"
)

// Store keeps generate-invoice's tables: invoices and their lines,
// subscriptions, the catalogue, invoice requests and the payments applied
// to invoices. Its transactions write the outbox and the idempotent
// response of the change they make.
type Store struct {
	pool  *pgxpool.Pool
	out   outbox.Writer // the emitting function's outbox (its source and origin key)
	accts *accounts.Directory
}

// New returns the store over pool; its events are written through out, as
// out.Source, the emitting function.
func New(pool *pgxpool.Pool, out outbox.Writer) *Store { return &Store{pool: pool, out: out} }

// Tx is one transaction over generate-invoice's tables: every read and
// write of a use case goes through it, and its events and idempotent
// response are written in it.
type Tx struct {
	pgx.Tx
	out   outbox.Writer
	accts *accounts.Directory
}

// tx wraps a pgx transaction of s.
func (s *Store) tx(tx pgx.Tx) *Tx { return &Tx{tx, s.out, s.accts} }

// ReadAccounts makes the store read the accounts billed from d, the read
// model of its table (Tx.Account).
func (s *Store) ReadAccounts(d *accounts.Directory) { s.accts = d }

// InTx runs fn in a transaction, committed when fn returns nil.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	return postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error { return fn(s.tx(tx)) })
}

// Pipelined is InTx whose writes are queued and sent in one round trip
// (see pipeline): for the create and change paths.
func (s *Store) Pipelined(ctx context.Context, fn func(*Tx) error) error {
	return postgres.Tx(ctx, s.pool, func(tx pgx.Tx) error {
		return pipelined(ctx, tx, func(tx pgx.Tx) error { return fn(s.tx(tx)) })
	})
}

// UpdateInvoice locks invoice id and hands it to fn, which changes it
// (and may read or write more through tx), then writes it and the events
// fn returns, in one transaction. The writes after the lock are pipelined.
// An unknown id is a not_found problem.
func (s *Store) UpdateInvoice(ctx context.Context, id string, fn func(tx *Tx, inv *invoicing.Invoice) ([]invoicing.Event, error)) (*invoicing.Invoice, error) {
	var inv *invoicing.Invoice
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		if inv, err = GetInvoice(ctx, tx, id, true); err != nil {
			return err
		}
		return pipelined(ctx, tx.Tx, func(p pgx.Tx) error {
			tx := s.tx(p)
			evs, err := fn(tx, inv)
			if err != nil {
				return err
			}
			if err := SaveInvoice(ctx, tx, inv); err != nil {
				return err
			}
			return tx.Emit(ctx, evs)
		})
	})
	return inv, err
}

// UpdateSubscription locks subscription id and hands it to fn, which
// changes it, then writes it and the events fn returns, in one transaction.
func (s *Store) UpdateSubscription(ctx context.Context, id string, fn func(tx *Tx, sub *invoicing.Subscription) ([]invoicing.Event, error)) (*invoicing.Subscription, error) {
	var sub *invoicing.Subscription
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		if sub, err = GetSub(ctx, tx, id, true); err != nil {
			return err
		}
		evs, err := fn(tx, sub)
		if err != nil {
			return err
		}
		if err := SaveSub(ctx, tx, sub); err != nil {
			return err
		}
		return tx.Emit(ctx, evs)
	})
	return sub, err
}

// Savepoint runs fn in a savepoint: when fn fails, what it wrote is
// undone and the transaction goes on.
func (tx *Tx) Savepoint(ctx context.Context, fn func(billing.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(&Tx{sp, tx.out, tx.accts}); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	if err := sp.Commit(ctx); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return nil
}

// Emit writes events to the outbox in the transaction.
func (tx *Tx) Emit(ctx context.Context, evs []invoicing.Event) error {
	return tx.EmitAll(ctx, billing.Emission{Ctx: ctx, Events: evs})
}

// EmitAll writes the events of several emissions to the outbox in one
// statement, signed together; each event carries its own emission's trace,
// and each emission's context notes the write (outbox.Tracking) as Add
// notes ctx's.
func (tx *Tx) EmitAll(ctx context.Context, es ...billing.Emission) error {
	var msgs []outbox.Message
	for _, em := range es {
		if len(em.Events) > 0 {
			outbox.Wrote(em.Ctx)
		}
		for _, e := range em.Events {
			// Our own data always encodes, so an error here is a bug.
			ev := events.Must(events.New(em.Ctx, tx.out.Source, e.Type, e.Subject, e.Data))
			msgs = append(msgs, outbox.Message{Topic: events.TopicBilling, Key: e.Key, Event: ev})
		}
	}
	return tx.out.Add(ctx, tx, msgs...)
}

// Send writes ready-made outbox messages in the transaction.
func (tx *Tx) Send(ctx context.Context, msgs ...outbox.Message) error {
	return tx.out.Add(ctx, tx, msgs...)
}

// Complete stores the response of the request's Idempotency-Key in the
// transaction (nothing without a key).
func (tx *Tx) Complete(ctx context.Context, resp idempotency.Response) error {
	return idempotency.Complete(ctx, tx, resp)
}

// Handler adapts an event handler over a Tx to the receiver's.
func (s *Store) Handler(fn func(context.Context, *Tx, events.Event) error) events.Handler {
	return func(ctx context.Context, tx pgx.Tx, ev events.Event) error { return fn(ctx, s.tx(tx), ev) }
}

// BatchHandler adapts a batch handler over a Tx to the receiver's.
func (s *Store) BatchHandler(fn func(context.Context, *Tx, []events.Event) error) events.BatchHandler {
	return func(ctx context.Context, tx pgx.Tx, evs []events.Event) error { return fn(ctx, s.tx(tx), evs) }
}

// ---- payments applied to invoices ----

// CapturedSoFar is what a payment captured for an invoice so far (0 for
// a payment not seen yet).
func (tx *Tx) CapturedSoFar(ctx context.Context, invoiceID, paymentID string) (int64, error) {
	var before int64
	err := tx.QueryRow(ctx, `SELECT amount_captured FROM invoice_payments WHERE invoice_id = $1 AND payment_id = $2`,
		invoiceID, paymentID).Scan(&before)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return before, err
}

// RecordCapture records a payment's cumulative captured amount.
func (tx *Tx) RecordCapture(ctx context.Context, invoiceID, paymentID string, captured int64, cur string) error {
	_, err := tx.Exec(ctx, `INSERT INTO invoice_payments AS p (invoice_id, payment_id, kind, amount_captured, currency)
		VALUES ($1, $2, 'gateway', $3, $4)
		ON CONFLICT (invoice_id, payment_id) DO UPDATE SET amount_captured = EXCLUDED.amount_captured, updated_at = now()`,
		invoiceID, paymentID, captured, cur)
	return err
}

// RecordFailure counts a failed attempt of a payment for an invoice.
func (tx *Tx) RecordFailure(ctx context.Context, invoiceID, paymentID, cur, reason string) error {
	_, err := tx.Exec(ctx, `INSERT INTO invoice_payments AS p (invoice_id, payment_id, kind, currency, failures, last_failure)
			VALUES ($1, $2, 'gateway', $3, 1, $4)
			ON CONFLICT (invoice_id, payment_id) DO UPDATE SET failures = p.failures + 1, last_failure = EXCLUDED.last_failure, updated_at = now()`,
		invoiceID, paymentID, cur, reason)
	return err
}

// RecordRefund records a refund once per refund id; false for one seen before.
func (tx *Tx) RecordRefund(ctx context.Context, refundID, invoiceID, paymentID string, amount int64, cur string) (bool, error) {
	tag, err := tx.Exec(ctx, `INSERT INTO invoice_refunds (refund_id, invoice_id, payment_id, amount, currency)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (refund_id) DO NOTHING`, refundID, invoiceID, paymentID, amount, cur)
	return err == nil && tag.RowsAffected() > 0, err
}

// ReverseRefund records that refund refundID of an invoice's payment,
// which had succeeded, failed after all: counted is what amount_refunded
// had counted of it (its recorded amount; amount for a refund whose
// success was never recorded under its own id), fresh false for one
// reversed before. A refund first seen reversed gets its row, so its
// success arriving later is not counted (RecordRefund).
func (tx *Tx) ReverseRefund(ctx context.Context, refundID, invoiceID, paymentID string, amount int64, cur string) (counted int64, fresh bool, err error) {
	err = tx.QueryRow(ctx, `INSERT INTO invoice_refunds AS r (refund_id, invoice_id, payment_id, amount, currency, reversed)
		VALUES ($1, $2, $3, $4, $5, true)
		ON CONFLICT (refund_id) DO UPDATE SET reversed = true WHERE NOT r.reversed
		RETURNING r.amount`, refundID, invoiceID, paymentID, amount, cur).Scan(&counted)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	return counted, err == nil, err
}

// RecordOutOfBandPayment records a payment made outside billfn.
func (tx *Tx) RecordOutOfBandPayment(ctx context.Context, invoiceID, paymentID string, amount int64, cur, reference string) error {
	_, err := tx.Exec(ctx, `INSERT INTO invoice_payments (invoice_id, payment_id, kind, amount_captured, currency, reference)
			VALUES ($1, $2, 'out_of_band', $3, $4, $5)`, invoiceID, paymentID, amount, cur, reference)
	return err
}

// RedeemCoupon counts n more redemptions of a coupon (n < 0: released,
// never below zero).
func (tx *Tx) RedeemCoupon(ctx context.Context, id string, n int) error {
	_, err := tx.Exec(ctx, `UPDATE coupons SET times_redeemed = greatest(times_redeemed + $2, 0) WHERE id = $1`, id, n)
	return err
}

// ---- the sweeps of the tick ----

// LockOverdue locks up to limit open invoices not yet flagged whose due
// date is before today, skipping rows another replica holds.
func (tx *Tx) LockOverdue(ctx context.Context, today time.Time, limit int) ([]*invoicing.Invoice, error) {
	return lockInvoices(ctx, tx, `status = 'open' AND NOT overdue AND due_date < $1::date ORDER BY due_date LIMIT $2`, today, limit)
}

// LockDunningDue locks up to limit open invoices whose next dunning step is due.
func (tx *Tx) LockDunningDue(ctx context.Context, now time.Time, limit int) ([]*invoicing.Invoice, error) {
	return lockInvoices(ctx, tx, `next_dunning_at <= $1 AND status = 'open' ORDER BY next_dunning_at LIMIT $2`, now, limit)
}

// lockInvoices selects invoices by a condition, locked, skipping rows
// another replica's tick holds. Lines are not loaded (the sweeps change
// only invoice columns).
func lockInvoices(ctx context.Context, tx *Tx, cond string, args ...any) ([]*invoicing.Invoice, error) {
	rows, err := tx.Query(ctx, `SELECT `+invoiceCols+` FROM invoices WHERE `+cond+` FOR UPDATE SKIP LOCKED`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*invoicing.Invoice
	for rows.Next() {
		inv, err := scanInvoice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, rows.Err()
}

// LockBillable locks up to limit subscriptions due for billing at now,
// but those of skip.
func (tx *Tx) LockBillable(ctx context.Context, now time.Time, skip []string, limit int) ([]*invoicing.Subscription, error) {
	rows, err := tx.Query(ctx, `SELECT `+subCols+` FROM subscriptions
				WHERE status <> 'canceled' AND next_billing_at <= $1 AND id <> ALL($2::uuid[])
				ORDER BY next_billing_at LIMIT $3 FOR UPDATE SKIP LOCKED`, now, skip, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*invoicing.Subscription, error) { return scanSub(r) })
}

// LockCancelDue locks up to limit subscriptions whose cancel_at has come.
func (tx *Tx) LockCancelDue(ctx context.Context, now time.Time, limit int) ([]*invoicing.Subscription, error) {
	rows, err := tx.Query(ctx, `SELECT `+subCols+` FROM subscriptions
			WHERE status <> 'canceled' AND cancel_at <= $1 ORDER BY cancel_at LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*invoicing.Subscription, error) { return scanSub(r) })
}
