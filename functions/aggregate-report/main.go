// Command aggregate-report is billfn's analytics function: it aggregates the
// events of every topic into rollups, serves reports (JSON or CSV), a
// dashboard, reconciliation and rebuilds. See docs/aggregate-report.md.
//
// Without arguments it serves; "aggregate-report rebuild|check …" is the
// report command instead (command.go). Inside: package rollup is the
// domain (pure Apply of events to rollups, Replay/Check), package store the
// report queries, snapshots and compaction, package api the routes, the
// dashboard and the event handler; this file only wires them.
package main

import (
	"context"
	"os"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/api"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
)

func main() {
	if len(os.Args) > 1 {
		runCommand()
	}
	server.Main("aggregate-report", func(ctx context.Context) (server.App, error) {
		d, err := platform.Open(ctx, "aggregate-report")
		if err != nil {
			return server.App{}, err
		}
		return d.App(api.New(d, time.Now).Routes()), nil
	})
}
