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
}

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
				r = &replica{ep: ep, up: o.up, inflight: o.inflight}
				r.up.mu.Lock()
				r.up.generation = ep.Generation
				r.up.mu.Unlock()
				break
			}
		}
		if r == nil {
			r = &replica{ep: ep, inflight: new(atomic.Int64), up: &upstream{
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

func (rs *ReplicaSet) closeIdle() {
	for _, r := range *rs.cur.Load() {
		r.up.closeIdle()
	}
}
