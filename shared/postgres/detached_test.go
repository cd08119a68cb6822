package postgres

import (
	"context"
	"errors"
	"testing"
	"time"
)

type key struct{}

func TestDetachedOutlivesItsCallerButNotForever(t *testing.T) {
	parent, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "req-1"), time.Hour)
	ctx, done := Detached(parent)
	defer done()
	cancel() // the client went away
	if err := ctx.Err(); err != nil {
		t.Fatalf("a detached context ended with its caller: %v", err)
	}
	if ctx.Value(key{}) != "req-1" {
		t.Fatal("a detached context lost its caller's values")
	}
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) > DetachedTimeout || time.Until(dl) < DetachedTimeout-time.Second {
		t.Fatalf("deadline in %v, want about %v", time.Until(dl), DetachedTimeout)
	}
	short, done2 := DetachedFor(parent, 10*time.Millisecond)
	defer done2()
	select {
	case <-short.Done():
		if !errors.Is(short.Err(), context.DeadlineExceeded) {
			t.Fatalf("err %v", short.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DetachedFor never ended")
	}
	if _, done3 := DetachedFor(parent, 0); done3 == nil {
		t.Fatal("no cancel func")
	}
}
