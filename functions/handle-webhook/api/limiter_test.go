package api

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/billfn/billfn/shared/testenv"
)

// gate holds every Redis command until opened, counting them.
type gate struct {
	open     chan struct{}
	inFlight atomic.Int64
	commands atomic.Int64
}

func (g *gate) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (g *gate) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}
func (g *gate) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		g.commands.Add(1)
		g.inFlight.Add(1)
		<-g.open
		return next(ctx, cmd)
	}
}

// Concurrent deliveries from one address share their Redis round trip:
// those that arrive while a count is in flight are counted together by the
// next one (INCRBY their number), each given its own place in the window,
// so the limit is exactly as strict as one INCR each (issue 20: the limit
// was one Redis round trip per webhook, an eighth of handle-webhook's CPU
// and Redis's own). 40 deliveries, a limit of 10: 10 pass, in at most two
// counts (and the script's first load).
func TestConcurrentDeliveriesShareTheirRateLimitCount(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	g := &gate{open: make(chan struct{})}
	rdb.AddHook(g)
	now := time.Unix(1_800_000_000, 0)
	l := &limiter{rdb: rdb, prefix: prefix, limit: 10, now: func() time.Time { return now }}
	const n = 40
	var (
		wg      sync.WaitGroup
		allowed atomic.Int64
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.allow(context.Background(), "192.0.2.1") {
				allowed.Add(1)
			}
		}()
	}
	// Open the gate once every delivery waits: on Redis (each its own
	// command) or on the count in flight.
	for g.inFlight.Load()+int64(l.waiting()) < n {
		time.Sleep(time.Millisecond)
	}
	close(g.open)
	wg.Wait()
	if a := allowed.Load(); a != 10 {
		t.Fatalf("%d of %d deliveries allowed, want the limit, 10", a, n)
	}
	if c := g.commands.Load(); c > 3 {
		t.Fatalf("%d Redis commands for %d concurrent deliveries, want at most 3", c, n)
	}
	// Alone, a delivery is counted at once, and the 41st is refused.
	if l.allow(context.Background(), "192.0.2.1") {
		t.Fatal("the 41st delivery of the second was allowed")
	}
	if !l.allow(context.Background(), net.IPv4(192, 0, 2, 2).String()) {
		t.Fatal("another address was refused")
	}
}
