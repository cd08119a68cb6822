package main

import (
	"context"
	"sync"
	"time"

	"github.com/billfn/billfn/cmd/internal/gateway"
)

// logBook keeps the last lines of every function's replicas for the
// gateway's /system/logs, and hands new ones to followers.
type logBook struct {
	mu        sync.Mutex
	keep      int
	lines     map[string][]gateway.LogMessage // by function, oldest first
	followers map[*follower]struct{}
}

type follower struct {
	req gateway.LogRequest
	ch  chan gateway.LogMessage
}

func newLogBook(keep int) *logBook {
	return &logBook{keep: keep, lines: map[string][]gateway.LogMessage{}, followers: map[*follower]struct{}{}}
}

func (b *logBook) add(fn, instance, text string) {
	m := gateway.LogMessage{Name: fn, Namespace: gateway.Namespace, Instance: instance, Timestamp: time.Now().UTC(), Text: text}
	b.mu.Lock()
	defer b.mu.Unlock()
	l := append(b.lines[fn], m)
	if len(l) > b.keep {
		l = append(l[:0:0], l[len(l)-b.keep:]...)
	}
	b.lines[fn] = l
	for f := range b.followers {
		if f.wants(m) {
			select {
			case f.ch <- m:
			default: // a follower that cannot keep up loses lines, never stalls a function
			}
		}
	}
}

func (f *follower) wants(m gateway.LogMessage) bool {
	return m.Name == f.req.Name && (f.req.Instance == "" || f.req.Instance == m.Instance) &&
		(f.req.Since == nil || !m.Timestamp.Before(*f.req.Since))
}

// query returns the lines r asks for: the kept ones (since, the last
// tail), then with Follow the new ones until ctx ends.
func (b *logBook) query(ctx context.Context, r gateway.LogRequest) <-chan gateway.LogMessage {
	f := &follower{req: r}
	b.mu.Lock()
	var past []gateway.LogMessage
	for _, m := range b.lines[r.Name] {
		if f.wants(m) {
			past = append(past, m)
		}
	}
	if r.Tail > 0 && len(past) > r.Tail {
		past = past[len(past)-r.Tail:]
	}
	f.ch = make(chan gateway.LogMessage, len(past)+1024)
	for _, m := range past {
		f.ch <- m
	}
	if !r.Follow {
		b.mu.Unlock()
		close(f.ch)
		return f.ch
	}
	b.followers[f] = struct{}{}
	b.mu.Unlock()
	go func() {
		<-ctx.Done()
		b.mu.Lock()
		delete(b.followers, f)
		close(f.ch)
		b.mu.Unlock()
	}()
	return f.ch
}
