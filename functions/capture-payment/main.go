// Command capture-payment takes payments through several gateways (Stripe
// and the built-in sandbox): authorize, capture, cancel and refund, with
// Stripe PaymentIntent semantics. See docs/capture-payment.md.
package main

import (
	"context"
	"time"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/sandbox"
	"github.com/billfn/billfn/shared/server"
)

// name is the function's name: its events' source, its metrics' and logs' label.
const name = "capture-payment"

func main() {
	server.Main(name, func(ctx context.Context) (server.App, error) {
		var cfg Config
		if err := config.Load(&cfg); err != nil {
			return server.App{}, err
		}
		// A route to the sandbox needs SANDBOX_ENABLED=true: never by default on a cluster.
		if err := sandbox.RequireEnabled(cfg.Routes); err != nil {
			return server.App{}, err
		}
		d, err := platform.Open(ctx, name)
		if err != nil {
			return server.App{}, err
		}
		s, err := newService(ctx, d, cfg, time.Now)
		if err != nil {
			d.Close()
			return server.App{}, err
		}
		return d.App(s.api.Handler()), nil
	})
}
