package gateway

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is one process (replica) of a function, as its provider
// reports it.
type Endpoint struct {
	Addr string // host:port the replica listens on
	// Generation changes whenever the process behind Addr is replaced, so
	// pooled connections to the old one are dropped. Nil: never.
	Generation func() uint64
	// Ready reports whether the replica takes calls (its health check
	// passed and it has not exited). Nil: always.
	Ready func() bool
}

// ReplicaSet is the set of replicas of one function: its provider Sets
// them as processes start, stop and move; the gateway sends each call to
// the ready replica with the fewest calls in flight (ties in turn).
type ReplicaSet struct {
	mu      sync.Mutex
	cur     atomic.Pointer[[]*replica]
	changed chan struct{} // closed (and replaced) on every Set and Poke
	next    atomic.Uint64
	wait    time.Duration // the upstream's header timeout (the gateway sets it)
	lastUse atomic.Int64  // Unix nanoseconds of the last call sent to a replica
	calls   atomic.Uint64 // calls sent to a replica, ever (the autoscaler's rate)
}

// Calls is the number of calls the gateway has sent to the set's
// replicas since it was made (a retry on another replica counts once).
func (rs *ReplicaSet) Calls() uint64 { return rs.calls.Load() }

// LastUsed is when the gateway last sent a call to one of the replicas
// (zero: never).
func (rs *ReplicaSet) LastUsed() time.Time {
	if n := rs.lastUse.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// replica is immutable once published; a Set that keeps a replica makes
// a new one sharing its pool and in-flight counter.
type replica struct {
	ep       Endpoint
	up       *upstream
	inflight *atomic.Int64
	calls    *atomic.Uint64 // calls it took, ever (gateway_replica_invocations_total)
}

// begin counts a call sent to r; the caller ends it with r.inflight.Add(-1).
func (rs *ReplicaSet) begin(r *replica) {
	r.inflight.Add(1)
	r.calls.Add(1)
	rs.calls.Add(1)
}

// moveTo counts a call that leaves from for to (a failover).
func (r *replica) moveTo(to *replica) {
	to.inflight.Add(1)
	to.calls.Add(1)
	r.inflight.Add(-1)
}

// gen is the generation of the process behind r now (0 without one).
func (r *replica) gen() uint64 {
	if r.ep.Generation == nil {
		return 0
	}
	return r.ep.Generation()
}

func (r *replica) ready() bool { return r.ep.Ready == nil || r.ep.Ready() }

// NewReplicaSet returns a set with the given endpoints.
func NewReplicaSet(eps ...Endpoint) *ReplicaSet {
	rs := &ReplicaSet{changed: make(chan struct{})}
	empty := []*replica{}
	rs.cur.Store(&empty)
	rs.Set(eps...)
	return rs
}

// Set replaces the replicas. A replica whose address and generation
// function stay keeps its connection pool and in-flight count.
func (rs *ReplicaSet) Set(eps ...Endpoint) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	old := *rs.cur.Load()
	next := make([]*replica, 0, len(eps))
	kept := map[*replica]bool{}
	for _, ep := range eps {
		var r *replica
		for _, o := range old {
			if o.ep.Addr == ep.Addr && !kept[o] {
				kept[o] = true
				r = &replica{ep: ep, up: o.up, inflight: o.inflight, calls: o.calls}
				r.up.mu.Lock()
				r.up.generation = ep.Generation
				r.up.mu.Unlock()
				break
			}
		}
		if r == nil {
			r = &replica{ep: ep, inflight: new(atomic.Int64), calls: new(atomic.Uint64), up: &upstream{
				addr: ep.Addr, dialer: &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second},
				maxIdle: 512, idleFor: time.Minute, headerWait: rs.wait, generation: ep.Generation,
			}}
		}
		next = append(next, r)
	}
	for _, o := range old {
		if !kept[o] {
			o.up.closeIdle()
		}
	}
	rs.cur.Store(&next)
	close(rs.changed)
	rs.changed = make(chan struct{})
}

// Poke wakes calls waiting for a ready replica: the provider calls it
// when a replica became ready.
func (rs *ReplicaSet) Poke() {
	rs.mu.Lock()
	close(rs.changed)
	rs.changed = make(chan struct{})
	rs.mu.Unlock()
}

// Len is the number of replicas (ready or not).
func (rs *ReplicaSet) Len() int { return len(*rs.cur.Load()) }

// Ready is the number of ready replicas.
func (rs *ReplicaSet) Ready() int {
	n := 0
	for _, r := range *rs.cur.Load() {
		if r.ready() {
			n++
		}
	}
	return n
}

// InFlight is the number of calls the gateway has in flight to the set.
func (rs *ReplicaSet) InFlight() int64 {
	var n int64
	for _, r := range *rs.cur.Load() {
		n += r.inflight.Load()
	}
	return n
}

func (rs *ReplicaSet) setWait(d time.Duration) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.wait == d {
		return
	}
	rs.wait = d
	for _, r := range *rs.cur.Load() {
		r.up.headerWait = d
	}
}

// pick returns the ready replica with the fewest calls in flight, other
// than skip; nil when there is none.
func (rs *ReplicaSet) pick(skip *replica) *replica {
	reps := *rs.cur.Load()
	n := len(reps)
	if n == 1 {
		if r := reps[0]; r != skip && r.ready() {
			rs.lastUse.Store(time.Now().UnixNano())
			return r
		}
		return nil
	}
	if n == 0 {
		return nil
	}
	start := int(rs.next.Add(1) % uint64(n))
	var best *replica
	var least int64
	for i := 0; i < n; i++ {
		r := reps[(start+i)%n]
		if r == skip || !r.ready() {
			continue
		}
		if f := r.inflight.Load(); best == nil || f < least {
			best, least = r, f
		}
	}
	if best != nil {
		rs.lastUse.Store(time.Now().UnixNano())
	}
	return best
}

// any returns some replica, ready or not (nil when there are none): a
// call that found none ready tries one and reports what happened.
func (rs *ReplicaSet) any() *replica {
	reps := *rs.cur.Load()
	if len(reps) == 0 {
		return nil
	}
	return reps[int(rs.next.Add(1)%uint64(len(reps)))]
}

// await waits until a replica is ready or ctx ends; nil then.
func (rs *ReplicaSet) await(ctx context.Context) *replica {
	for {
		rs.mu.Lock()
		ch := rs.changed
		rs.mu.Unlock()
		if r := rs.pick(nil); r != nil {
			return r
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-time.After(50 * time.Millisecond): // readiness is polled, not pushed
		}
	}
}

// failover returns the replica a call goes to after the replica it was
// sent to (from, whose process had generation gen) failed with the call
// in flight: another ready replica, or from itself once its process was
// replaced and is ready again; it waits for one until ctx ends (nil then).
// A Set rebuilds the replicas, so from is recognised by its pool.
func (rs *ReplicaSet) failover(ctx context.Context, from *replica, gen uint64) *replica {
	for {
		rs.mu.Lock()
		ch := rs.changed
		rs.mu.Unlock()
		var best *replica
		for _, r := range *rs.cur.Load() {
			if !r.ready() || (r.up == from.up && (r.ep.Generation == nil || r.gen() == gen)) {
				continue
			}
			if best == nil || r.inflight.Load() < best.inflight.Load() {
				best = r
			}
		}
		if best != nil {
			return best
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-time.After(50 * time.Millisecond): // readiness is polled, not pushed
		}
	}
}

// ReplicaStat is one replica's figures for the gateway's metrics.
type ReplicaStat struct {
	Addr     string
	Calls    uint64
	InFlight int64
}

// Stats lists the replicas with the calls each took and has in flight.
func (rs *ReplicaSet) Stats() []ReplicaStat {
	reps := *rs.cur.Load()
	out := make([]ReplicaStat, 0, len(reps))
	for _, r := range reps {
		out = append(out, ReplicaStat{Addr: r.ep.Addr, Calls: r.calls.Load(), InFlight: r.inflight.Load()})
	}
	return out
}

func (rs *ReplicaSet) closeIdle() {
	for _, r := range *rs.cur.Load() {
		r.up.closeIdle()
	}
}
