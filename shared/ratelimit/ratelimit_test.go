package ratelimit_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	goredis "github.com/redis/go-redis/v9"

	"github.com/billfn/billfn/shared/ratelimit"
	"github.com/billfn/billfn/shared/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestParseLimit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ratelimit.Limit
		bad  bool
	}{
		{in: "100/s:200", want: ratelimit.Limit{Rate: 100, Period: time.Second, Burst: 200}},
		{in: " 50/s ", want: ratelimit.Limit{Rate: 50, Period: time.Second, Burst: 50}},
		{in: "6000/m:100", want: ratelimit.Limit{Rate: 6000, Period: time.Minute, Burst: 100}},
		{in: "10/h:1", want: ratelimit.Limit{Rate: 10, Period: time.Hour, Burst: 1}},
		{in: "100", bad: true},
		{in: "100/d", bad: true},
		{in: "0/s", bad: true},
		{in: "-1/s:5", bad: true},
		{in: "10/s:0", bad: true},
		{in: "10/s:x", bad: true},
		{in: "", bad: true},
	} {
		got, err := ratelimit.ParseLimit(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseLimit(%q) = %+v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseLimit(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if back, _ := ratelimit.ParseLimit(got.String()); back != got {
			t.Errorf("String %q does not parse back", got.String())
		}
	}
}

// drain takes requests until one is denied and returns how many passed.
func drain(t *testing.T, lm *ratelimit.Limiter, key string, l ratelimit.Limit) (int, ratelimit.Result) {
	t.Helper()
	for i := 0; i < 10*l.Burst; i++ {
		res := lm.Allow(context.Background(), key, l)
		if !res.Allowed {
			return i, res
		}
		if res.Limit != l {
			t.Fatalf("result limit %+v", res.Limit)
		}
	}
	t.Fatalf("%s: never denied after %d requests", key, 10*l.Burst)
	return 0, ratelimit.Result{}
}

func TestAllowsTheBurstThenDenies(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	lm := ratelimit.New(rdb, prefix, 0)
	l := ratelimit.MustParse("1/m:5") // no refill within the test
	n, res := drain(t, lm, "alice", l)
	if n != 5 {
		t.Fatalf("%d passed, want the burst of 5", n)
	}
	if res.Local {
		t.Fatal("decided locally with Redis up")
	}
	if res.Remaining != 0 || res.Retry <= 0 || res.Retry > time.Minute || res.Reset <= 0 {
		t.Fatalf("denial %+v: want 0 remaining, a retry within the minute, a reset", res)
	}
	// Another key has its own bucket.
	if res := lm.Allow(context.Background(), "bob", l); !res.Allowed || res.Remaining != 4 {
		t.Fatalf("bob: %+v, want allowed with 4 remaining", res)
	}
	// The bucket is in Redis: a second limiter (another replica) sees it.
	if res := ratelimit.New(rdb, prefix, 0).Allow(context.Background(), "alice", l); res.Allowed {
		t.Fatalf("another replica let alice through: %+v", res)
	}
}

func TestRefillsAtTheRate(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	lm := ratelimit.New(rdb, prefix, 0)
	l := ratelimit.MustParse("20/s:2")
	if n, res := drain(t, lm, "k", l); n != 2 || res.Retry > 60*time.Millisecond {
		t.Fatalf("%d passed, retry %s; want 2 and about 50ms", n, res.Retry)
	}
	time.Sleep(60 * time.Millisecond)
	if res := lm.Allow(context.Background(), "k", l); !res.Allowed {
		t.Fatalf("not refilled after 60ms at 20/s: %+v", res)
	}
}

func TestRedisUnreachableFallsBackToTheLocalLimit(t *testing.T) {
	// A port nothing listens on.
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 20 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	lm := ratelimit.New(rdb, "billfn-test:", 0)
	before := testutil.ToFloat64(ratelimit.Collectors()[0])
	l := ratelimit.MustParse("1/m:3")
	start := time.Now()
	n, res := drain(t, lm, "alice", l)
	if n != 3 || !res.Local || res.Retry <= 0 {
		t.Fatalf("%d passed, denial %+v; want the same burst of 3, decided locally", n, res)
	}
	if res := lm.Allow(context.Background(), "bob", l); !res.Allowed || !res.Local || res.Remaining != 2 {
		t.Fatalf("bob: %+v; want his own local bucket", res)
	}
	// One failure opens the breaker: the rest do not wait for Redis.
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("5 decisions took %s with Redis down", el)
	}
	if got := testutil.ToFloat64(ratelimit.Collectors()[0]) - before; got != 5 {
		t.Fatalf("fallback counter rose by %v, want 5", got)
	}
}

func TestSlowRedisFallsBackWithinTheTimeout(t *testing.T) {
	// A "Redis" that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	slow := goredis.NewClient(&goredis.Options{Addr: ln.Addr().String(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { slow.Close() })
	lm := ratelimit.New(slow, "billfn-test:", 30*time.Millisecond)
	l := ratelimit.MustParse("1/m:2")
	start := time.Now()
	res := lm.Allow(context.Background(), "k", l)
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Fatalf("a decision waited %s for a hung Redis", el)
	}
	if !res.Allowed || !res.Local {
		t.Fatalf("with Redis hung: %+v; want a local decision", res)
	}
}
