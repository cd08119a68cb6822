// Package pgbatch sends a write made of several statements to Postgres as
// one pipeline: one round trip, one implicit transaction (all statements
// commit together or none does).
//
// Queue lets helpers that write through a transaction's Exec (outbox.Add,
// idempotency.Complete) add their statements to the pipeline:
//
//	b := &pgx.Batch{}
//	b.Queue(`UPDATE … guarded …`, args...)
//	q := pgbatch.Queue(b)
//	_ = outbox.Add(ctx, q, source, msgs...)          // queued, not run
//	_ = idempotency.Complete(ctx, q, resp)           // queued, not run
//	err := pgbatch.Send(ctx, pool, b)                // one round trip
//
// A statement that fails (for example a guard written to divide by zero
// when its row moved) aborts the whole pipeline, so a guard makes the
// write conditional.
package pgbatch

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Tx is a pgx.Tx whose Exec queues its statement into a batch. Only Exec
// is supported (the other methods panic): it is for helpers that write
// with Exec and ignore its command tag, whose outcome is Send's.
type Tx struct {
	pgx.Tx
	b *pgx.Batch
}

// Queue returns a Tx queueing into b.
func Queue(b *pgx.Batch) Tx { return Tx{b: b} }

// Exec queues sql with args.
func (t Tx) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	t.b.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

// Send runs b as one pipeline and returns the first error; nothing of b is
// committed when it is not nil.
func Send(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch) error {
	return SendScan(ctx, pool, b)
}

// SendScan is Send that also scans the row of b's first statement into
// dest (when dest is given).
func SendScan(ctx context.Context, pool *pgxpool.Pool, b *pgx.Batch, dest ...any) error {
	br := pool.SendBatch(ctx, b)
	var err error
	for i := range b.QueuedQueries {
		if i == 0 && len(dest) > 0 {
			err = br.QueryRow().Scan(dest...)
		} else {
			_, err = br.Exec()
		}
		if err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}
