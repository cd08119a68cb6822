// Command aggregate-report is billfn's analytics function: it aggregates the
// events of every topic into rollups, serves reports (JSON or CSV), a
// dashboard, reconciliation and rebuilds. See docs/aggregate-report.md.
package main

import (
	"context"
	"time"

	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
)

func main() {
	server.Main("aggregate-report", func(ctx context.Context) (server.App, error) {
		d, err := platform.Open(ctx, "aggregate-report")
		if err != nil {
			return server.App{}, err
		}
		return d.App(newService(d, time.Now).routes()), nil
	})
}
