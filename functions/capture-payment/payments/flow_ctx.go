package payments

import (
	"context"
	"time"
)

// detached is the context of work that must finish once started: a
// client's disconnect or the request deadline must not turn a gateway call
// that happened into a lost answer.
func detached(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}
