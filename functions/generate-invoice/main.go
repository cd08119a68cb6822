// Command generate-invoice is billfn's billing function: invoices with
// exact taxes and discounts, gap-free numbering, PDF and HTML rendering,
// subscriptions with recurring billing, overdue tracking and dunning.
// docs/generate-invoice.md is its reference.
package main

import (
	"context"
	"time"

	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
)

func main() {
	server.Main(functionName, func(ctx context.Context) (server.App, error) {
		cfg, err := LoadConfig()
		if err != nil {
			return server.App{}, err
		}
		d, err := platform.Open(ctx, functionName)
		if err != nil {
			return server.App{}, err
		}
		return d.App(newService(d, cfg, time.Now).routes()), nil
	})
}
