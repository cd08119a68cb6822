package redis_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	goredis "github.com/redis/go-redis/v9"

	"github.com/billfn/billfn/shared/redis"
	"github.com/billfn/billfn/shared/testenv"
)

type balance struct {
	Amount int64 `json:"amount"`
}

func TestGetOrLoadCachesUntilInvalidated(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	c := redis.NewCache(rdb, prefix, "balances")
	ctx := context.Background()
	var loads atomic.Int32
	value := int64(100)
	load := func(context.Context) (balance, error) { loads.Add(1); return balance{value}, nil }

	for i := 0; i < 3; i++ {
		got, err := redis.GetOrLoad(ctx, c, "acct-1", time.Minute, load)
		if err != nil || got.Amount != 100 {
			t.Fatalf("read %d = %+v, %v", i, got, err)
		}
	}
	if loads.Load() != 1 {
		t.Fatalf("loader ran %d times for 3 reads, want 1", loads.Load())
	}
	value = 250
	c.Invalidate(ctx, "acct-1")
	got, err := redis.GetOrLoad(ctx, c, "acct-1", time.Minute, load)
	if err != nil || got.Amount != 250 {
		t.Fatalf("after invalidation got %+v, %v; want the new value", got, err)
	}
	if ttl := rdb.PTTL(ctx, c.Key("acct-1")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("TTL = %v, want (0, 1m]", ttl)
	}
}

func TestLoaderErrorsReachTheCallerAndAreNotCached(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	c := redis.NewCache(rdb, prefix, "x")
	boom := errors.New("not found")
	_, err := redis.GetOrLoad(context.Background(), c, "k", time.Minute, func(context.Context) (balance, error) { return balance{}, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the loader's error", err)
	}
	if n := rdb.Exists(context.Background(), c.Key("k")).Val(); n != 0 {
		t.Fatal("a failed load was cached")
	}
}

// Fifty readers in each of ten "processes" (caches on separate clients) ask
// for a cold key at once; the loader must run about once, not 500 times.
func TestStampedeRunsTheLoaderOnce(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	var loads atomic.Int32
	load := func(context.Context) (balance, error) {
		loads.Add(1)
		time.Sleep(10 * time.Millisecond)
		return balance{7}, nil
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for p := 0; p < 10; p++ {
		client := goredis.NewClient(&goredis.Options{Addr: rdb.Options().Addr})
		defer client.Close()
		c := redis.NewCache(client, prefix, "stampede")
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if v, err := redis.GetOrLoad(context.Background(), c, "hot", time.Minute, load); err != nil || v.Amount != 7 {
					t.Errorf("got %+v, %v", v, err)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	if n := loads.Load(); n > 2 {
		t.Fatalf("loader ran %d times for 500 concurrent cold reads across 10 processes, want 1 (at most 2)", n)
	}
}

// A reader that loaded the old value before a write committed must not put
// it back into Redis after the write invalidated the key.
func TestSlowLoaderCannotResurrectAnInvalidatedValue(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	c := redis.NewCache(rdb, prefix, "race")
	ctx := context.Background()
	loaded := make(chan struct{})
	release := make(chan struct{})
	done := make(chan balance)
	go func() {
		v, _ := redis.GetOrLoad(ctx, c, "k", time.Minute, func(context.Context) (balance, error) {
			close(loaded)
			<-release
			return balance{1}, nil // the value as of before the write
		})
		done <- v
	}()
	<-loaded
	c.Invalidate(ctx, "k") // the write commits and invalidates meanwhile
	close(release)
	<-done
	if err := rdb.Get(ctx, c.Key("k")).Err(); !errors.Is(err, goredis.Nil) {
		t.Fatalf("the stale value was cached after the invalidation (GET err = %v)", err)
	}
	got, _ := redis.GetOrLoad(ctx, c, "k", time.Minute, func(context.Context) (balance, error) { return balance{2}, nil })
	if got.Amount != 2 {
		t.Fatalf("next read = %d, want the fresh value 2", got.Amount)
	}
}

// With Redis unreachable, reads are served by the loader (no error), and an
// invalidation made during the outage is applied before the cache is used
// again, so no stale value is ever served.
func TestRedisOutageFallsBackAndNeverServesStale(t *testing.T) {
	real, prefix := testenv.Redis(t)
	proxy := testenv.NewProxy(t, real.Options().Addr)
	rdb, err := redis.Open("redis://" + proxy.Addr() + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	c := redis.NewCache(rdb, prefix, "outage")
	ctx := context.Background()
	value := int64(1)
	load := func(context.Context) (balance, error) { return balance{value}, nil }
	if v, _ := redis.GetOrLoad(ctx, c, "k", time.Minute, load); v.Amount != 1 {
		t.Fatalf("warm-up read = %d", v.Amount)
	}

	fallbacks := testutil.ToFloat64(redis.FallbacksFor("outage"))
	proxy.Cut()
	value = 2
	c.Invalidate(ctx, "k") // cannot reach Redis: remembered
	if c.Pending() != 1 {
		t.Fatalf("pending invalidations = %d, want 1", c.Pending())
	}
	for i := 0; i < 5; i++ {
		v, err := redis.GetOrLoad(ctx, c, "k", time.Minute, load)
		if err != nil || v.Amount != 2 {
			t.Fatalf("read during outage = %d, %v; want 2 from the loader, no error", v.Amount, err)
		}
	}
	if got := testutil.ToFloat64(redis.FallbacksFor("outage")) - fallbacks; got < 5 {
		t.Fatalf("fallback counter rose by %v, want >= 5", got)
	}

	proxy.Restore()
	deadline := time.Now().Add(5 * time.Second)
	for c.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if c.Pending() != 0 {
		t.Fatal("the remembered invalidation was never applied after Redis came back")
	}
	if err := real.Get(ctx, c.Key("k")).Err(); !errors.Is(err, goredis.Nil) {
		t.Fatalf("the stale value survived the outage in Redis (GET err = %v)", err)
	}
	time.Sleep(1100 * time.Millisecond) // breaker closes
	if v, _ := redis.GetOrLoad(ctx, c, "k", time.Minute, load); v.Amount != 2 {
		t.Fatalf("after recovery read = %d, want 2", v.Amount)
	}
}

// sent counts what a client sends Redis: round trips, and the commands in
// them (a MULTI/EXEC pipeline counts its MULTI and EXEC).
type sent struct {
	mu    sync.Mutex
	trips int
	cmds  []string
}

func (s *sent) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (s *sent) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		s.add(cmd)
		return next(ctx, cmd)
	}
}

func (s *sent) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		s.add(cmds...)
		return next(ctx, cmds)
	}
}

func (s *sent) add(cmds ...goredis.Cmder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trips++
	for _, c := range cmds {
		s.cmds = append(s.cmds, c.Name())
	}
}

func (s *sent) reset() (trips int, cmds []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	trips, cmds = s.trips, s.cmds
	s.trips, s.cmds = 0, nil
	return trips, cmds
}

// An invalidation is one command in one round trip, whatever the number of
// keys (a group commit's accounts, or an outage's backlog of thousands),
// and does what the MULTI/EXEC before it did: every key deleted, every
// generation bumped (an existing one incremented, a missing one created)
// and living a minute, nothing else touched.
func TestInvalidationIsOneCommandThatDeletesAndBumpsGenerations(t *testing.T) {
	real, prefix := testenv.Redis(t)
	ctx := context.Background()
	count := &sent{}
	rdb := goredis.NewClient(&goredis.Options{Addr: real.Options().Addr})
	defer rdb.Close()
	rdb.AddHook(count)
	c := redis.NewCache(rdb, prefix, "inv")
	other := redis.NewCache(rdb, prefix, "other")
	c.Invalidate(ctx, "warm-up") // Redis learns the script (EVALSHA fails once, EVAL follows)

	for _, n := range []int{1, 3, 10_000} {
		keys := make([]string, n)
		if _, err := real.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i := range keys {
				keys[i] = fmt.Sprintf("k%d-%d", n, i)
				p.Set(ctx, c.Key(keys[i]), "cached", time.Minute)
			}
			p.Set(ctx, c.Key(keys[0])+":gen", 41, 0) // invalidated before: incremented, and given the minute
			p.Set(ctx, other.Key(keys[0]), "cached", time.Minute)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		count.reset()
		c.Invalidate(ctx, keys...)
		trips, cmds := count.reset()
		if trips != 1 || len(cmds) != 1 {
			t.Fatalf("invalidating %d keys sent %d round trips, %d commands %v; want 1 and 1", n, trips, len(cmds), head(cmds))
		}
		if c.Pending() != 0 {
			t.Fatalf("invalidating %d keys failed: %d pending", n, c.Pending())
		}
		var (
			exists []*goredis.IntCmd
			gens   []*goredis.StringCmd
			ttls   []*goredis.DurationCmd
		)
		if _, err := real.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range keys {
				exists = append(exists, p.Exists(ctx, c.Key(k)))
				gens = append(gens, p.Get(ctx, c.Key(k)+":gen"))
				ttls = append(ttls, p.PTTL(ctx, c.Key(k)+":gen"))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			want := "1"
			if i == 0 {
				want = "42"
			}
			if exists[i].Val() != 0 || gens[i].Val() != want || ttls[i].Val() <= 0 || ttls[i].Val() > time.Minute {
				t.Fatalf("after invalidating %d keys, %s: exists %d, generation %q (want %q), its TTL %v (want (0, 1m])",
					n, k, exists[i].Val(), gens[i].Val(), want, ttls[i].Val())
			}
		}
		if real.Get(ctx, other.Key(keys[0])).Val() != "cached" {
			t.Fatalf("invalidating %d keys of one cache deleted another cache's key", n)
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 8)] }
