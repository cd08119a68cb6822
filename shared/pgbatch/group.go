package pgbatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/billfn/billfn/shared/events"
)

// A Group commits the writes of concurrent callers together (group
// commit), as process-transaction's committer does for transfers: callers
// queue their Write; one goroutine takes every write waiting (up to
// MaxWrites) and runs them as ONE transaction, in one or two pipelined
// round trips:
//
//  1. BEGIN and every write's guard (its row scanned, in queue order);
//  2. the rest of each write whose guard says so, then COMMIT.
//
// (One round trip when no write of the group has a rest.) Each caller is
// answered only after the commit that holds its write, with its own
// outcome: a guard that says no skips only its own rest. A statement that
// fails aborts the group's transaction, and then every write of the
// group runs again alone, so a failing write fails only its caller. While
// a group commits the next one gathers, so under load groups grow by
// themselves and the commits per write fall; alone, a write costs what
// SendGuarded does.
//
// The rule that makes grouping safe: a guard that says no has written
// nothing (ON CONFLICT DO NOTHING, a version in its WHERE), since the
// group's transaction commits whatever the guards wrote. Guards see the
// writes of the guards before them in the group (one transaction), so two
// writes of one key in one group decide as they would one after the other.
type Group struct {
	pool  *pgxpool.Pool
	name  string
	async bool

	// MaxWrites bounds the writes of one group.
	MaxWrites int
	// Workers is how many groups may commit at once (their goroutines
	// share the queue).
	Workers int

	in    chan *pending
	start sync.Once
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// Write is one caller's part of a group. Guard.SQL empty: no guard, the
// rest is always written. Events are the events its statements write,
// left unsigned (outbox.Writer.RowsLater): the group signs the
// events of all its writes together, once, before it runs (one Ed25519
// signature per tree of up to 32 where each write alone would sign its
// own, and each consumer verifies one signature per tree).
type Write struct {
	Guard  Guard
	Rest   *pgx.Batch
	Events []*events.Unsigned
}

type pending struct {
	w    Write
	ok   bool
	err  error
	done chan struct{}
}

var (
	groupWrites = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "billfn_pgbatch_group_writes", Help: "Writes committed per group commit (shared/pgbatch.Group), by group.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
	}, []string{"group"})
	groupSplits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "billfn_pgbatch_group_splits_total", Help: "Group commits that failed and ran their writes again one by one, by group.",
	}, []string{"group"})
)

// Collectors are the group commits' metrics.
func Collectors() []prometheus.Collector { return []prometheus.Collector{groupWrites, groupSplits} }

// NewGroup returns a group committing on pool; name labels its metrics.
// Its goroutines start with the first write and end with Close.
func NewGroup(pool *pgxpool.Pool, name string) *Group {
	return &Group{pool: pool, name: name, MaxWrites: 256, Workers: 1, in: make(chan *pending, 1024)}
}

// NewAsyncGroup is NewGroup whose transactions commit without waiting
// for their WAL to reach the disk (synchronous_commit off for them only):
// for writes whose loss in a crash of Postgres nobody outside it could
// notice, because a synchronous commit always follows them before any
// answer depends on them (capture-payment's asyncCommit).
func NewAsyncGroup(pool *pgxpool.Pool, name string) *Group {
	g := NewGroup(pool, name)
	g.async = true
	return g
}

// Do queues w, waits for the commit that holds it and reports whether its
// rest was written (always true without a guard). A caller whose ctx
// ends stops waiting, but its write may still commit: writes must be
// idempotent, as every retried request is.
func (g *Group) Do(ctx context.Context, w Write) (bool, error) {
	g.start.Do(g.run)
	p := &pending{w: w, done: make(chan struct{})}
	select {
	case g.in <- p:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case <-p.done:
		return p.ok, p.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Queued reports how many writes wait for a group to take them.
func (g *Group) Queued() int { return len(g.in) }

// Close stops the group's goroutines once the writes queued are done;
// call it after the last Do.
func (g *Group) Close() {
	g.start.Do(func() {}) // never started: nothing to stop
	if g.stop == nil {
		return
	}
	g.stop()
	g.wg.Wait()
}

func (g *Group) run() {
	ctx, stop := context.WithCancel(context.Background())
	g.stop = stop
	for range max(g.Workers, 1) {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.loop(ctx)
		}()
	}
}

func (g *Group) loop(ctx context.Context) {
	for {
		var first *pending
		select {
		case first = <-g.in:
		case <-ctx.Done():
			// Answer what is still queued before leaving.
			for {
				select {
				case p := <-g.in:
					g.commit([]*pending{p})
				default:
					return
				}
			}
		}
		group := []*pending{first}
	gather:
		for len(group) < g.MaxWrites {
			select {
			case p := <-g.in:
				group = append(group, p)
			default:
				break gather
			}
		}
		g.commit(group)
	}
}

// commit runs a group and answers its callers.
func (g *Group) commit(group []*pending) {
	defer func() {
		// A bug must cost one group its answer, not the process its life.
		if v := recover(); v != nil {
			slog.Error("group commit panicked", "group", g.name, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			for _, p := range group {
				p.ok, p.err = false, fmt.Errorf("group commit panicked: %v", v)
			}
		}
		for _, p := range group {
			close(p.done)
		}
	}()
	groupWrites.WithLabelValues(g.name).Observe(float64(len(group)))
	signEvents(group)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if run(ctx, g.pool, g.async, group) != nil && len(group) > 1 {
		// Nothing of the group committed: each write again, alone, so the
		// one that fails fails only its caller.
		groupSplits.WithLabelValues(g.name).Inc()
		for _, p := range group {
			run(ctx, g.pool, g.async, []*pending{p})
		}
	}
}

// run writes group as one transaction and sets each write's outcome; the
// error it returns (also every write's) means nothing was committed.
func run(ctx context.Context, pool *pgxpool.Pool, async bool, group []*pending) error {
	for _, p := range group {
		p.ok, p.err = false, nil // a write run again alone starts afresh
	}
	fail := func(err error) error {
		for _, p := range group {
			p.ok, p.err = false, err
		}
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fail(err)
	}
	defer conn.Release()

	guarded, rests := false, false
	for _, p := range group {
		guarded = guarded || p.w.Guard.SQL != ""
		rests = rests || (p.w.Rest != nil && p.w.Rest.Len() > 0)
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if async {
		b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	}
	if !guarded {
		// Nothing to decide: everything and COMMIT in one round trip.
		for _, p := range group {
			queueRest(b, p.w.Rest)
			p.ok = true
		}
		b.Queue("COMMIT")
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			Rollback(conn)
			return fail(err)
		}
		return nil
	}
	for _, p := range group {
		if p.w.Guard.SQL != "" {
			b.Queue(p.w.Guard.SQL, p.w.Guard.Args...)
		}
	}
	if !rests {
		b.Queue("COMMIT") // guards alone: what they wrote commits either way
	}
	br := conn.SendBatch(ctx, b)
	err = func() error {
		if _, err := br.Exec(); err != nil { // BEGIN
			return err
		}
		if async {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for _, p := range group {
			if p.w.Guard.SQL == "" {
				p.ok = true
				continue
			}
			if err := br.QueryRow().Scan(p.w.Guard.Dest...); err != nil {
				var pgErr interface{ SQLState() string }
				if errors.As(err, &pgErr) {
					return err // the statement failed: the transaction is aborted
				}
				// The row did not fit Dest: this write's mistake alone.
				p.ok, p.err = false, err
				continue
			}
			p.ok = p.w.Guard.Proceed()
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		Rollback(conn)
		return fail(err)
	}
	if !rests {
		return nil
	}
	b = &pgx.Batch{}
	for _, p := range group {
		if p.ok {
			queueRest(b, p.w.Rest)
		}
	}
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		Rollback(conn)
		return fail(err)
	}
	return nil
}

// signEvents signs the events of group's writes together (a write run
// again alone after a split keeps what they were signed with).
func signEvents(group []*pending) {
	var us []*events.Unsigned
	for _, p := range group {
		us = append(us, p.w.Events...)
	}
	events.SignTogether(us...)
}

func queueRest(b *pgx.Batch, rest *pgx.Batch) {
	if rest == nil {
		return
	}
	for _, q := range rest.QueuedQueries {
		b.Queue(q.SQL, q.Arguments...)
	}
}
