package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
)

// Store is capture-payment's Postgres: payments, attempts, refunds, saved
// methods, the invoice read model, the outbox and the idempotent answers.
type Store struct {
	pool *pgxpool.Pool
	// source is the function's name, the source of the events it writes.
	source string
	// out writes them into the outbox, signed with the function's origin key.
	out outbox.Writer
	// group commits the finishing records of concurrent requests together;
	// async the intents recorded before a sandbox call (see asyncCommit).
	group, async *pgbatch.Group
	// Accounts is the read model of accounts (shared/accounts), which
	// Tx.Account reads in the Tx.
	Accounts *accounts.Directory
}

// New returns the store of pool; its events are written through out, as
// out.Source.
func New(pool *pgxpool.Pool, out outbox.Writer) *Store {
	return &Store{pool: pool, source: out.Source, out: out, group: pgbatch.NewGroup(pool, out.Source+" payments"),
		async: pgbatch.NewAsyncGroup(pool, out.Source+" sandbox intents")}
}

// Account implements payments.Tx: the read model's facts of account id,
// read on the Tx's own connection.
func (t Tx) Account(ctx context.Context, id string) (accounts.Facts, bool, error) {
	if t.s.Accounts == nil {
		return accounts.Facts{}, false, nil
	}
	return t.s.Accounts.Get(ctx, t.q, id)
}

// Group is the group commit of the store's synchronous writes, for other
// writes of a request to join (its Idempotency-Key's claim).
func (s *Store) Group() *pgbatch.Group { return s.group }

// Tx is the store inside one transaction, or on the pool, where each
// statement is atomic on its own. It implements payments.Tx.
type Tx struct {
	q db
	s *Store // nil for reads only
	// later, in a group commit's write (Pipeline, InsertCreated), collects
	// the events Emit left for the group to sign with its other writes'.
	later *[]*events.Unsigned
}

// runner runs the steps of a flow: each in a new transaction (HTTP
// requests, whose gateway call happens between two of them), or all in the
// caller's (event handlers, inside the receiver's transaction).
type runner struct {
	s  *Store
	tx pgx.Tx
}

// Fresh runs each step in a transaction of its own.
func (s *Store) Fresh() payments.Runner { return runner{s: s} }

// Within runs every step in tx (an event handler's transaction).
func (s *Store) Within(tx pgx.Tx) payments.Runner { return runner{s: s, tx: tx} }

// Run runs fn in the runner's transaction.
func (r runner) Run(ctx context.Context, fn func(payments.Tx) error) error {
	if r.tx != nil {
		return fn(r.s.tx(r.tx))
	}
	return postgres.Tx(ctx, r.s.pool, func(tx pgx.Tx) error { return fn(r.s.tx(tx)) })
}

// DB is where a single statement runs (atomic on its own).
func (r runner) DB() payments.Tx {
	if r.tx != nil {
		return r.s.tx(r.tx)
	}
	return r.s.tx(r.s.pool)
}

// Pipelined reports whether a finishing write may go as one pipeline of
// statements in an implicit transaction (not inside the caller's).
func (r runner) Pipelined() bool { return r.tx == nil }

func (s *Store) tx(q db) Tx { return Tx{q: q, s: s} }

// groupWrite is the Tx that queues a group commit's write in rest, and
// the events it leaves for the group to sign (pgbatch.Write.Events).
func (s *Store) groupWrite(rest *pgx.Batch) (Tx, *[]*events.Unsigned) {
	later := new([]*events.Unsigned)
	return Tx{q: pgbatch.Queue(rest), s: s, later: later}, later
}

// Handler adapts an event handler on the domain's transaction to the
// receiver's.
func (s *Store) Handler(fn func(ctx context.Context, run payments.Runner, ev events.Event) error) events.Handler {
	return func(ctx context.Context, tx pgx.Tx, ev events.Event) error { return fn(ctx, s.Within(tx), ev) }
}

// BatchHandler adapts a batch handler on the domain's transaction to the
// receiver's.
func (s *Store) BatchHandler(fn func(ctx context.Context, run payments.Runner, evs []events.Event) error) events.BatchHandler {
	return func(ctx context.Context, tx pgx.Tx, evs []events.Event) error { return fn(ctx, s.Within(tx), evs) }
}

// Emit writes msgs into the outbox, in the transaction (outbox.Writer.Add,
// which notes it in ctx's outbox.Written). It is the only way
// capture-payment writes outbox rows.
func (t Tx) Emit(ctx context.Context, msgs []payments.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	tx, ok := t.q.(pgx.Tx)
	if !ok {
		return errors.New("store: events are written only inside a transaction")
	}
	out := make([]outbox.Message, len(msgs))
	for i, m := range msgs {
		out[i] = outbox.Message{Topic: m.Topic, Key: m.Key, Event: m.Event}
	}
	if t.later != nil {
		u, err := t.s.out.AddLater(ctx, tx, out...)
		*t.later = append(*t.later, u)
		return err
	}
	return t.s.out.Add(ctx, tx, out...)
}

// Record stores the answer of the request in the transaction: answer is
// the api's idempotency.Response (nil: nothing to store).
func (t Tx) Record(ctx context.Context, answer any) error {
	if answer == nil {
		return nil
	}
	resp, ok := answer.(idempotency.Response)
	if !ok {
		return fmt.Errorf("store: cannot record a %T as a request's answer", answer)
	}
	tx, ok := t.q.(pgx.Tx)
	if !ok {
		return errors.New("store: an answer is recorded only inside a transaction")
	}
	return idempotency.Complete(ctx, tx, resp)
}

// Pipeline writes a flow's finishing record as one pipeline in one round
// trip: the payment (only if still at version) and its attempt, the outbox
// events, the request's answer, and the commit. Concurrent requests'
// records share that transaction and its commit (pgbatch.Group), each
// answered once it is committed. It reports false, having written nothing,
// when the payment moved since: then the update fails (guardedUpdate),
// the transaction with it, and the group runs its other writes again
// alone (pgbatch.Group's split), which a payment that moved in the
// instant of its flow's finishing write seldom costs.
func (s *Store) Pipeline(ctx context.Context, p *payments.Payment, version time.Time, a payments.Attempt, msgs []payments.Message, answer any) (bool, error) {
	rest := &pgx.Batch{}
	sql, args := guardedUpdate(p, version, a)
	rest.Queue(sql, args...)
	t, later := s.groupWrite(rest)
	if err := t.Emit(ctx, msgs); err != nil {
		return false, err
	}
	if err := t.Record(ctx, answer); err != nil {
		return false, err
	}
	ok, err := s.group.Do(ctx, pgbatch.Write{Rest: rest, Events: *later})
	if movedError(err) {
		return false, nil
	}
	return ok, err
}

// InsertCreated records a new payment p, guarded by g in the same
// statement (InsertPaymentFor's), with msgs and the request's answer, as
// one write of the store's group: two pipelined round trips (the insert,
// then, if it wrote the payment, the rest and the commit), whose commit
// concurrent requests share. p.UserID is the owner the caller expects
// (the guard's owner when it passes, see CreateFor). It reports false,
// having written nothing, when a payment with p's id exists, and fails
// with payments.ErrAccountUnchecked, having written nothing, when the
// guard refused.
func (s *Store) InsertCreated(ctx context.Context, p *payments.Payment, g payments.AccountGuard, msgs []payments.Message, answer any) (bool, error) {
	rest := &pgx.Batch{}
	t, later := s.groupWrite(rest)
	if err := t.Emit(ctx, msgs); err != nil {
		return false, err
	}
	if err := t.Record(ctx, answer); err != nil {
		return false, err
	}
	var (
		inserted, passed int
		owner            string
	)
	// A payment that exists, or a guard that refuses, writes nothing:
	// grouping holds.
	_, err := s.group.Do(ctx, pgbatch.Write{Guard: pgbatch.Guard{SQL: insertPaymentGuarded,
		Args: append(guardedArgs(p, g), g.Owner), Dest: []any{&inserted, &passed, &owner},
		Proceed: func() bool { return inserted == 1 }}, Rest: rest, Events: *later})
	if err != nil {
		return false, err
	}
	expected := p.UserID
	ok, err := guardedOutcome(p, inserted, passed, owner)
	if ok && owner != expected {
		return false, fmt.Errorf("store: payment %s inserted for owner %s, its events written for %s", p.ID, owner, expected)
	}
	return ok, err
}

// MarkCapture marks payment id as capturing amount (0: all capturable) in
// one statement, if it is in requires_capture with no pending operation,
// is user's ("" for anyone), can capture amount, and its account is
// active (a closed account cannot be paid into, a frozen one refuses an
// invoice's settlement: the ledger would reject the capture's postings),
// and is not a Stripe payment in one of tenths for an amount that is not
// a multiple of 10 (Stripe would refuse it). It returns the marked
// payment, or payments.ErrNotMarked when it could not be marked.
func (s *Store) MarkCapture(ctx context.Context, id string, now time.Time, user string, amount int64, tenths []string) (*payments.Payment, error) {
	// Asynchronous for the sandbox (see asyncCommit): a lost mark is
	// harmless, the capture's key is fixed and the sandbox is in the WAL.
	// The setting is made by the marked row itself (its RETURNING, before
	// the statement's implicit transaction commits): one statement, no
	// read of the payment's gateway before it.
	var commit string
	// Its version moves on by at least a microsecond, as Payment.Touch's.
	p, err := scanPayment(s.pool.QueryRow(ctx, `UPDATE payments SET pending_op = 'capture', op_started_at = $2,
			updated_at = greatest($2, updated_at + interval '1 microsecond')
		WHERE id = $1 AND status = 'requires_capture' AND pending_op IS NULL AND ($3 = '' OR user_id::text = $3)
		AND ($4 = 0 OR amount_capturable >= $4)
		AND ($4 % 10 = 0 OR gateway IS DISTINCT FROM 'stripe' OR currency <> ALL($5::text[]))
		AND EXISTS (SELECT 1 FROM payment_accounts a WHERE a.id = payments.account_id AND a.status = 'active')
		RETURNING `+paymentCols+`, set_config('synchronous_commit', CASE gateway WHEN 'sandbox' THEN 'off' ELSE 'on' END, true)`,
		id, now, user, amount, tenths), &commit)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, payments.ErrNotMarked
	}
	return p, err
}
