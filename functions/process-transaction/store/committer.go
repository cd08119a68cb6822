package store

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/idempotency"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/outbox"
	"github.com/billfn/billfn/shared/pgbatch"
	"github.com/billfn/billfn/shared/postgres"
)

// The Committer applies many transfers in ONE database transaction (group
// commit). Requests queue on a channel; one goroutine takes everything that
// is waiting (up to MaxOps), and in two round trips to Postgres:
//
//  1. BEGIN, generic plans for its statements (postgres.GenericPlans); lock
//     every touched account (ORDER BY id, so concurrent groups never
//     deadlock);
//  2. decide each transfer in Go against the running balances (ledger.Group),
//     then insert transfers, account updates and outbox events in
//     bulk (unnest, one statement: writeSQL) and COMMIT — pipelined in one
//     pgx batch.
//
// The idempotency keys already used are read only when the unique index
// refused one (a replay): the group is then decided again, reading them.
//
// Each caller gets its own outcome: one rejected transfer never fails the
// others, unless they were submitted together as an atomic unit. While a
// group commits the next one gathers, so under load groups grow by
// themselves and the cost per transfer falls.
type Committer struct {
	pool     *pgxpool.Pool
	source   string
	signer   *events.OriginSigner // signs the group's events as they are written; nil: at publish
	now      func() time.Time
	in       chan *queued
	onCommit func(accounts []string) // cache invalidation, outbox kick

	MaxOps  int           // transfers per group at most
	Window  time.Duration // extra time to gather a group (0: take what is waiting)
	Workers int           // committers sharing the queue; their groups overlap

	sysMu sync.Mutex
	sys   map[string]bool // system account numbers known to exist
}

// queued is a unit waiting for its group, and the signal that it is decided.
type queued struct {
	u    *ledger.Unit
	done chan struct{}
}

var (
	groupSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "billfn_ledger_group_transfers", Help: "Transfers decided per group commit.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048},
	})
	groupSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "billfn_ledger_group_seconds", Help: "Duration of one group commit.",
		Buckets: []float64{.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512},
	})
	groupRetries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "billfn_ledger_group_retries_total", Help: "Group commits run again after a conflict.",
	})
	groupReplays = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "billfn_ledger_group_replays_total",
		Help: "Group commits decided again reading the idempotency keys, because one of their keys was used already (a replay).",
	})
)

// Collectors are the group commit's metrics.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{groupSize, groupSeconds, groupRetries, groupReplays}
}

// NewCommitter makes a committer writing its events through out (as
// out.Source, signed with out.Signer); onCommit runs with the accounts each
// committed group changed, before its callers are answered.
func NewCommitter(pool *pgxpool.Pool, out outbox.Writer, now func() time.Time, onCommit func([]string)) *Committer {
	return &Committer{pool: pool, source: out.Source, signer: out.Signer, now: now, in: make(chan *queued, 4096), MaxOps: 2000, Workers: 1,
		onCommit: onCommit, sys: map[string]bool{}}
}

// Submit queues u and waits until it is decided or ctx ends. The group
// runs with its own context, so a caller that goes away never turns a
// committed transfer into an error: a retry replays it.
func (c *Committer) Submit(ctx context.Context, u *ledger.Unit) error {
	q := &queued{u: u, done: make(chan struct{})}
	select {
	case c.in <- q:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finished is a committed group waiting for its callers to be answered.
type finished struct {
	group   []*queued
	touched []string
}

// Run commits groups until ctx ends. A finisher goroutine invalidates the
// changed accounts' cache entries and then answers the group's callers, so
// no caller reads a stale balance after its answer, while the committer
// already gathers the next group.
func (c *Committer) Run(ctx context.Context) {
	done := make(chan finished, 64)
	defer close(done)
	go func() {
		for f := range done {
			if c.onCommit != nil && len(f.touched) > 0 {
				c.onCommit(f.touched)
			}
			for _, q := range f.group {
				close(q.done)
			}
		}
	}()
	for {
		var first *queued
		select {
		case first = <-c.in:
		case <-ctx.Done():
			return
		}
		group, n := []*queued{first}, len(first.u.Ops)
		var deadline <-chan time.Time
		if c.Window > 0 {
			deadline = time.After(c.Window)
		}
	gather:
		for n < c.MaxOps {
			select {
			case q := <-c.in:
				group, n = append(group, q), n+len(q.u.Ops)
			default:
				if deadline == nil {
					break gather
				}
				select {
				case q := <-c.in:
					group, n = append(group, q), n+len(q.u.Ops)
				case <-deadline:
					break gather
				}
			}
		}
		done <- finished{group, c.commit(group, n)}
	}
}

// commit applies a group and returns the accounts it changed.
func (c *Committer) commit(group []*queued, n int) (touched []string) {
	defer func() {
		// A bug must cost one group its answer, not the process its life.
		if v := recover(); v != nil {
			slog.Error("group commit panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			failAll(group, fmt.Errorf("group commit panicked: %v", v))
		}
	}()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	groupSize.Observe(float64(n))
	defer func() { groupSeconds.Observe(time.Since(start).Seconds()) }()

	units := make([]*ledger.Unit, len(group))
	for i, q := range group {
		units[i] = q.u
	}
	if err := c.EnsureSystemAccounts(ctx, units...); err != nil {
		failAll(group, err)
		return nil
	}
	var err error
	readKeys := false // see tryCommit
	for attempt := 1; attempt <= postgres.MaxAttempts; attempt++ {
		touched, err = c.tryCommit(ctx, units, readKeys)
		if err == nil {
			return touched
		}
		_, dup := postgres.UniqueViolation(err)
		if !postgres.Retryable(err) && !dup {
			break
		}
		if dup && !readKeys {
			// A key of the group was used already: decide it again,
			// reading the keys, and that op replays.
			readKeys = true
			groupReplays.Inc()
		} else {
			// A deadlock with another writer, or a replica that used the
			// same idempotency key a moment earlier: decide the group again.
			groupRetries.Inc()
		}
		for _, u := range units {
			for _, o := range u.Ops {
				o.Res = ledger.Outcome{}
			}
		}
	}
	slog.Error("group commit failed", "transfers", n, "err", err.Error())
	failAll(group, &apperr.Error{Code: apperr.Unavailable, Detail: "the ledger could not commit; retry with the same Idempotency-Key",
		RetryAfter: time.Second, Err: err})
	return nil
}

// failAll answers every op of a group that did not commit with err. Every
// outcome is replaced, including those decided inside the transaction that
// failed: a transfer decided "posted" but never committed must not be
// answered 201 (its caller retries with the same key instead).
func failAll(group []*queued, err error) {
	for _, q := range group {
		for _, o := range q.u.Ops {
			o.Res = ledger.Outcome{Err: err, Done: true}
		}
	}
}

// EnsureSystemAccounts creates the system accounts (SYS-<ROLE>-<CUR>) the
// units name by number, on first use, before a transaction needs them. Only
// a privileged caller's ops count: a customer cannot conjure one.
func (c *Committer) EnsureSystemAccounts(ctx context.Context, units ...*ledger.Unit) error {
	var missing []string
	c.sysMu.Lock()
	for _, u := range units {
		for _, o := range u.Ops {
			if !o.Caller.Privileged() {
				continue
			}
			for _, n := range []string{o.Req.FromAccountNumber, o.Req.ToAccountNumber} {
				if _, ok := ledger.IsSystemNumber(n); ok && !c.sys[n] {
					missing = append(missing, n)
				}
			}
		}
	}
	c.sysMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	for _, n := range missing {
		cur, _ := ledger.IsSystemNumber(n)
		if _, err := c.pool.Exec(ctx, `INSERT INTO accounts (id, user_id, account_number, currency, allow_negative)
			VALUES ($1, $2, $3, $4, true) ON CONFLICT (account_number) DO NOTHING`, ids.New(), ledger.SystemUser, n, cur); err != nil {
			return err
		}
	}
	c.sysMu.Lock()
	for _, n := range missing {
		c.sys[n] = true
	}
	c.sysMu.Unlock()
	return nil
}

// tryCommit runs the group's transaction and returns the accounts it changed.
//
// With readKeys false it does not read which of the group's idempotency
// keys were used already: almost every key is new, and the unique index
// on (idem_scope, idem_key) refuses a used one when the group writes, so
// the group is then decided again with readKeys, and the op whose key was
// used replays. A replay costs its group a second transaction; every other
// group saves a statement (issue 20).
func (c *Committer) tryCommit(ctx context.Context, units []*ledger.Unit, readKeys bool) ([]string, error) {
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()

	// Round trip 1: begin, lock the accounts, read used keys and the
	// asynchronously accepted transfers to decide.
	var ids, numbers, scopes, keys, completes, ownScopes, ownKeys []string
	for _, u := range units {
		for _, o := range u.Ops {
			if o.Complete != "" {
				// An accepted transfer's event names its accounts by id.
				completes = append(completes, o.Complete)
				ids = append(ids, o.Req.FromAccountID, o.Req.ToAccountID)
				continue
			}
			for _, id := range []string{o.Req.FromAccountID, o.Req.ToAccountID} {
				if id != "" {
					ids = append(ids, id)
				}
			}
			for _, n := range []string{o.Req.FromAccountNumber, o.Req.ToAccountNumber} {
				if n != "" {
					numbers = append(numbers, n)
				}
			}
			if readKeys {
				scopes, keys = append(scopes, o.Scope), append(keys, o.Key)
			}
			if o.OwnKey {
				ownScopes, ownKeys = append(ownScopes, o.Scope), append(ownKeys, o.Key)
			}
		}
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// Every statement of the group's transaction is an index lookup by
	// key or a bulk write over arrays: planned once per connection, not on
	// every group (postgres.GenericPlans).
	b.Queue(postgres.GenericPlans)
	if len(completes) > 0 {
		// Accepted transfers name their accounts by id; lock them too.
		b.Queue(`SELECT `+transferCols+` FROM transfers t WHERE t.id = ANY($1::text[]::uuid[]) ORDER BY t.id FOR UPDATE`, completes)
	}
	// Plain predicates only: under READ COMMITTED, FOR UPDATE re-checks a
	// row another transaction changed meanwhile, and that re-check is only
	// reliable for simple conditions on the row itself (with a semi-join it
	// can drop the row — seen with concurrent committers). Postgres reads
	// the two conditions through the primary key and the account_number
	// index (BitmapOr), and locks in id order.
	b.Queue(`SELECT `+bookCols+` FROM accounts
		WHERE id = ANY($1::text[]::uuid[]) OR account_number = ANY($2::text[])
		ORDER BY id FOR UPDATE`, ids, numbers)
	if len(ownKeys) > 0 {
		// A transfer's own key held by another route's request (a
		// capture, a void, a batch) in the idempotency table: in the same
		// round trip, one index lookup per key, once the keys' locks are
		// taken (a capture under one of them commits first, and its claim
		// is read; keyLockSQL).
		b.Queue(keyLockSQL, ownScopes, ownKeys)
		// A key past its TTL is free again, as the middleware's claim
		// takes it. Each key is looked up through the primary key whatever
		// the statistics: the LIMIT keeps the lookup a subquery run per
		// key (a join may be planned as a scan of the table), and the TTL
		// is tested on the row found, so no plan reads the created_at
		// index. The generic plan is made once per connection, often on a
		// near-empty table; a join planned then scanned every key of the
		// last 24 hours for each group once the table had grown
		// (TestAGroupsOwnKeysAreLookedUpByIndexAsTheTableGrows).
		b.Queue(ownKeysSQL, ownScopes, ownKeys, idempotency.TTL)
	}
	if readKeys {
		b.Queue(`SELECT `+transferCols+`, t.idem_scope, t.idem_key, t.request_hash FROM transfers t
			JOIN unnest($1::text[], $2::text[]) AS k(s, k) ON t.idem_scope = k.s AND t.idem_key = k.k`, scopes, keys)
	}

	br := conn.SendBatch(ctx, b)
	g := &ledger.Group{Priors: map[ledger.IdemKey]ledger.Prior{}, Accepted: map[string]*ledger.Transfer{}}
	err = func() error {
		for range 2 { // BEGIN, GenericPlans
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if len(completes) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			for rows.Next() {
				t, err := scanTransfer(rows)
				if err != nil {
					rows.Close()
					return err
				}
				g.Accepted[t.ID] = t
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		if g.Books, g.ByNumber, err = scanBooks(rows); err != nil {
			return err
		}
		if len(ownKeys) > 0 {
			if _, err := br.Exec(); err != nil {
				return err
			}
			rows, err := br.Query()
			if err != nil {
				return err
			}
			g.Claimed = map[ledger.IdemKey]string{}
			for rows.Next() {
				var k ledger.IdemKey
				var route string
				if err := rows.Scan(&k.Scope, &k.Key, &route); err != nil {
					rows.Close()
					return err
				}
				g.Claimed[k] = route
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		if !readKeys {
			return nil
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var k ledger.IdemKey
			var h []byte
			t, err := scanTransfer(rows, &k.Scope, &k.Key, &h)
			if err != nil {
				rows.Close()
				return err
			}
			g.Priors[k] = ledger.Prior{Transfer: t, Hash: h}
		}
		rows.Close()
		return rows.Err()
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		pgbatch.Rollback(conn)
		return nil, err
	}

	// Decide every transfer in Go.
	g.Now = c.now().UTC().Truncate(time.Microsecond)
	w := &writes{now: g.Now, source: c.source, signer: c.signer}
	g.Sink = w
	for _, u := range units {
		g.DecideUnit(u)
	}

	// Round trip 2: write everything and commit.
	for _, a := range g.Books {
		if a.Changed > 0 {
			w.acctIDs = append(w.acctIDs, a.ID)
			w.acctBal = append(w.acctBal, a.Balance)
			w.acctHeld = append(w.acctHeld, a.Held)
			w.acctN = append(w.acctN, int64(a.Changed))
		}
	}
	if err := w.flush(ctx, conn); err != nil {
		pgbatch.Rollback(conn)
		return nil, err
	}
	return w.acctIDs, nil
}
