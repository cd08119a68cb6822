// Command handle-webhook is the front door for payment gateways: it
// verifies Stripe's and the sandbox's signed webhooks on their raw bodies,
// stores each delivery once, and emits it normalized as
// billfn.payment.gateway_updated through the outbox. See
// docs/handle-webhook.md.
//
// Inside: package webhooks holds the rules (signatures, normalization,
// what a delivery becomes), package store all SQL, package api the routes
// and event handlers; this file only wires them.
package main

import (
	"context"
	"time"

	"github.com/billfn/billfn/functions/handle-webhook/api"
	"github.com/billfn/billfn/functions/handle-webhook/webhooks"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
)

func main() {
	server.Main(webhooks.Name, func(ctx context.Context) (server.App, error) {
		var cfg api.Config
		if err := config.Load(&cfg); err != nil {
			return server.App{}, err
		}
		d, err := platform.Open(ctx, webhooks.Name)
		if err != nil {
			return server.App{}, err
		}
		a, err := api.New(d, cfg, time.Now)
		if err != nil {
			d.Close()
			return server.App{}, err
		}
		a.Start() // the outgoing webhooks' sender
		return d.App(a.Routes()), nil
	})
}
