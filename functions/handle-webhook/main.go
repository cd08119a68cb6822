// Command handle-webhook is the front door for payment gateways: it
// verifies Stripe's and the sandbox's signed webhooks on their raw bodies,
// stores each delivery once, and emits it normalized as
// billfn.payment.gateway_updated through the outbox. See
// docs/handle-webhook.md.
package main

import (
	"context"
	"time"

	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
)

func main() {
	server.Main(name, func(ctx context.Context) (server.App, error) {
		var cfg Config
		if err := config.Load(&cfg); err != nil {
			return server.App{}, err
		}
		d, err := platform.Open(ctx, name)
		if err != nil {
			return server.App{}, err
		}
		s, err := newService(d, cfg, time.Now)
		if err != nil {
			d.Close()
			return server.App{}, err
		}
		return d.App(s.routes()), nil
	})
}
