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
// A statement that fails aborts the whole pipeline. A write that must
// happen only if a first statement found its row as expected (a version
// check, an insert that may be a duplicate) is SendGuarded: the guard's
// row decides, in Go, whether the rest is written.
package pgbatch

import (
	"context"
	"time"

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

// Guard is the first statement of a guarded write: its row is scanned into
// Dest, then Proceed decides from it whether the rest is written.
type Guard struct {
	SQL     string
	Args    []any
	Dest    []any
	Proceed func() bool
}

// SendGuarded runs g and, when g.Proceed says so, the statements of rest,
// as one transaction: BEGIN and g in one pipelined round trip, then rest
// and COMMIT in a second (or ROLLBACK when g says no). It reports whether
// rest was committed; when it is false and err is nil, nothing g wrote is
// kept either. With an empty rest, g runs alone as one statement (atomic
// on its own, one round trip) and what it wrote stays.
func SendGuarded(ctx context.Context, pool *pgxpool.Pool, g Guard, rest *pgx.Batch) (bool, error) {
	if rest == nil || rest.Len() == 0 {
		if err := pool.QueryRow(ctx, g.SQL, g.Args...).Scan(g.Dest...); err != nil {
			return false, err
		}
		return g.Proceed(), nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(g.SQL, g.Args...)
	br := conn.SendBatch(ctx, b)
	_, err = br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(g.Dest...)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		Rollback(conn)
		return false, err
	}
	if !g.Proceed() {
		Rollback(conn)
		return false, nil
	}
	rest.Queue("COMMIT")
	if err := conn.SendBatch(ctx, rest).Close(); err != nil {
		Rollback(conn)
		return false, err
	}
	return true, nil
}

// Rollback ends the transaction a pipelined batch opened on conn (BEGIN
// queued in it); a connection in an unknown state is closed rather than
// reused.
func Rollback(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = conn.Conn().Close(ctx)
	}
}
