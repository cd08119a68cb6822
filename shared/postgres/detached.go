package postgres

import (
	"context"
	"time"
)

// DetachedTimeout bounds database work that Detached lets outlive its
// caller.
const DetachedTimeout = 10 * time.Second

// Detached is the context of database work that must complete once
// started, whoever goes away: a client that disconnects or a request
// deadline must not turn a write that committed into an error (the replay
// with the same Idempotency-Key then finds the committed result), nor roll
// back one half-way. It keeps ctx's values (request id, trace, the
// function's problem table) but not its cancellation or deadline, and
// gives the work DetachedTimeout. Call the CancelFunc when done.
func Detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return DetachedFor(ctx, DetachedTimeout)
}

// DetachedFor is Detached with its own bound d (a payment gateway's
// timeout, say); d <= 0 means DetachedTimeout.
func DetachedFor(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = DetachedTimeout
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}
