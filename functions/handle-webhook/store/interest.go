package store

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/handle-webhook/outgoing"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
)

// EndpointsChanged is the channel a trigger on webhook_endpoints notifies,
// in the writing transaction, whenever an endpoint is added, removed,
// disabled, enabled or subscribes to other types (migration 00043).
const EndpointsChanged = "webhook_endpoints_changed"

// maxKnownRefs bounds the payment references a replica remembers; the
// set is cleared when full (a read each brings them back).
const maxKnownRefs = 50_000

// Interests is one replica's copy of what Interest reads: the enabled
// endpoints' event patterns, valid only while the listener (Listen) is
// connected and for at most MaxAge after they were loaded, and the
// payment references known to the map — which are never deleted nor
// changed, so a reference once read stays known for good.
type Interests struct {
	pool *pgxpool.Pool
	// MaxAge bounds how long the endpoints are used after they were loaded
	// (the listener reloads them at half of it); Retry is how long the
	// listener waits after a failure before it connects again; Start
	// waits Delay before the listener first connects. Set before Listen
	// or Start runs.
	MaxAge, Retry, Delay time.Duration

	mu     sync.Mutex
	subs   [][]string
	loaded time.Time // zero: no usable copy (listener down, or a change heard and not reloaded)
	gen    uint64    // drops so far: a load begun before a drop is not installed
	refs   map[[2]string]struct{}

	version atomic.Uint64 // loads of the endpoints so far
	pid     atomic.Uint32 // the listener's backend (0: not connected)

	stop     context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

func newInterests(pool *pgxpool.Pool) *Interests {
	return &Interests{pool: pool, MaxAge: 30 * time.Second, Retry: time.Second, refs: map[[2]string]struct{}{}}
}

// Version counts the loads of the endpoints installed so far. It moving
// past a value read after a change committed does not mean the copy holds
// the change: a load may begin before the change commits and be installed
// after the value was read (Wants tells).
func (c *Interests) Version() uint64 { return c.version.Load() }

// ListenerPID is the listener's PostgreSQL backend (0 when not connected).
func (c *Interests) ListenerPID() uint32 { return c.pid.Load() }

// Cached says whether the endpoints are answered without a read now.
func (c *Interests) Cached() bool {
	_, ok := c.subscribed()
	return ok
}

// Wants says whether an endpoint of the copy in use wants events of type
// typ, without a read; cached is false when no copy is in use (Interest
// and Enqueue read the endpoints then). A change committed is in the
// copy once Wants answers as the change says: unlike Version, which also
// moves with a load that began before the change and ended after.
func (c *Interests) Wants(typ string) (wants, cached bool) {
	subs, ok := c.subscribed()
	return ok && outgoing.AnyWants(subs, typ), ok
}

// subscribed is the cached endpoints' patterns, if usable.
func (c *Interests) subscribed() ([][]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded.IsZero() || time.Since(c.loaded) >= c.MaxAge {
		return nil, false
	}
	return c.subs, true
}

// generation is the drops so far, read before a load begins.
func (c *Interests) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// set installs endpoints loaded from a read begun at loaded, in
// generation gen; false when dropped since (the load may miss the change:
// load again).
func (c *Interests) set(subs [][]string, loaded time.Time, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return false
	}
	c.subs, c.loaded = subs, loaded
	c.version.Add(1)
	return true
}

// drop forgets the endpoints: a change committed (or may have, unheard).
// This replica's own writes drop them as soon as they commit, so it acts
// on them at once, before its listener hears them.
func (c *Interests) drop() {
	c.mu.Lock()
	c.subs, c.loaded = nil, time.Time{}
	c.gen++
	c.mu.Unlock()
}

// knows splits refs into those known here (true in known) and the rest,
// each once (false in known): a payment's events name the same object.
func (c *Interests) knows(refs []webhooks.PaymentRef, known map[[2]string]bool) (missing []webhooks.PaymentRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range refs {
		key := [2]string{r.Gateway, r.GatewayPaymentID}
		if _, seen := known[key]; seen {
			continue
		}
		_, ok := c.refs[key]
		known[key] = ok
		if !ok {
			missing = append(missing, r)
		}
	}
	return missing
}

// has says whether the replica knows the map holds key.
func (c *Interests) has(key [2]string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.refs[key]
	return ok
}

// learn remembers references read in the map.
func (c *Interests) learn(keys [][2]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if len(c.refs) >= maxKnownRefs {
			clear(c.refs)
		}
		c.refs[k] = struct{}{}
	}
}

// Start runs Listen, after Delay, until Close. Until the listener has
// loaded the endpoints, Interest reads them at each delivery.
func (c *Interests) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		t := time.NewTimer(c.Delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.Listen(ctx)
	}()
}

// Close stops the listener Start started and waits for it (before the
// pool closes).
func (c *Interests) Close() {
	c.stopOnce.Do(func() {
		if c.stop != nil {
			c.stop()
			<-c.done
		}
	})
}

// Listen keeps the endpoints' copy until ctx ends: on a connection of its
// own taken from the pool, LISTEN first, then load, so no change commits
// unheard between the two; each notification drops the copy and reloads
// it, and it is reloaded at MaxAge/2 anyway. Any error drops the copy —
// Interest then reads as without a cache — and the listener starts again
// after Retry.
func (c *Interests) Listen(ctx context.Context) {
	for {
		err := c.listen(ctx)
		c.pid.Store(0)
		c.drop()
		if ctx.Err() != nil {
			return
		}
		slog.WarnContext(ctx, "endpoint listener down: endpoints are read at each delivery until it is back",
			"err", err.Error(), "retry", c.Retry.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.Retry):
		}
	}
}

func (c *Interests) listen(ctx context.Context) error {
	pc, err := c.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// Out of the pool for good: a connection that listened never serves
	// queries again (and the pool may open another in its place).
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+EndpointsChanged); err != nil {
		return err
	}
	c.pid.Store(conn.PgConn().PID())
	for {
		start, gen := time.Now(), c.generation()
		rows, err := conn.Query(ctx, `SELECT events FROM webhook_endpoints WHERE NOT disabled`)
		if err != nil {
			return err
		}
		subs, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
		if err != nil {
			return err
		}
		if !c.set(subs, start, gen) {
			continue // dropped meanwhile: this load may predate the change
		}
		wctx, cancel := context.WithTimeout(ctx, c.MaxAge/2)
		_, err = conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			// A change committed: read, not this copy, until reloaded.
			c.drop()
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// MaxAge/2 without a change: reload all the same.
		default:
			return err
		}
	}
}
