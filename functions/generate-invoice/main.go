// Command generate-invoice is billfn's billing function: invoices with
// exact taxes and discounts, gap-free numbering, PDF and HTML rendering,
// subscriptions with recurring billing, overdue tracking and dunning.
// docs/generate-invoice.md is its reference.
package main

import (
	"context"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/api"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
)

func main() {
	server.Main(api.FunctionName, func(ctx context.Context) (server.App, error) {
		cfg, err := api.LoadConfig()
		if err != nil {
			return server.App{}, err
		}
		d, err := platform.Open(ctx, api.FunctionName)
		if err != nil {
			return server.App{}, err
		}
		s := api.New(d, cfg, time.Now)
		// The customer's emails go out in the background (woken when one
		// is queued, every 30 s for retries); it stops with the server.
		sendCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		d.OnClose(func(context.Context) { stop() })
		s.StartSender(sendCtx, 30*time.Second)
		return d.App(s.Routes()), nil
	})
}
