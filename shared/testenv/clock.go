package testenv

import (
	"sync"
	"time"
)

// Clock is the injected time of a test: it stands still until the test
// moves it, or follows the wall clock once FollowWallClock is called (a
// benchmark whose rate-limit windows must move). Safe for concurrent use;
// hand its Now to the code under test.
type Clock struct {
	mu   sync.Mutex
	t    time.Time
	wall bool
}

// NewClock is a clock standing at t (in UTC).
func NewClock(t time.Time) *Clock { return &Clock{t: t.UTC()} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wall {
		return time.Now()
	}
	return c.t
}

// Set moves the clock to t (in UTC).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t.UTC()
	c.mu.Unlock()
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// FollowWallClock makes Now the wall clock from now on.
func (c *Clock) FollowWallClock() {
	c.mu.Lock()
	c.wall = true
	c.mu.Unlock()
}
