// Command process-transaction is billfn's double-entry ledger function:
// accounts, transfers, holds and history over HTTP, transfer requests from
// Kafka, and a group commit that applies many transfers per transaction.
//
// Inside: ledger/ holds the rules (the posting rule, holds, errors with
// stable codes), store/ all SQL and the group commit, api/ the routes,
// HTTP and event handlers and the code → status table. This file only
// wires them.
package main

import (
	"context"
	"time"

	"github.com/billfn/billfn/functions/process-transaction/api"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/server"
)

// Config is process-transaction's own configuration.
type Config struct {
	// GroupWindow lets the committer wait this long for more transfers
	// before committing a group (0: commit whatever is waiting at once).
	GroupWindow config.Duration `envconfig:"GROUP_COMMIT_WINDOW" default:"0s"`
	GroupMax    int             `envconfig:"GROUP_COMMIT_MAX" default:"2000"`
	Committers  int             `envconfig:"GROUP_COMMITTERS" default:"1"`
	// AccountsPerCustomer bounds the accounts a customer opens itself
	// (0: no bound).
	AccountsPerCustomer int `envconfig:"ACCOUNTS_PER_CUSTOMER_MAX" default:"1000"`
}

func main() {
	server.Main("process-transaction", func(ctx context.Context) (server.App, error) {
		var cfg Config
		if err := config.Load(&cfg); err != nil {
			return server.App{}, err
		}
		d, err := platform.Open(ctx, "process-transaction")
		if err != nil {
			return server.App{}, err
		}
		s := api.New(d, time.Now)
		s.AccountsPerCustomer = cfg.AccountsPerCustomer
		c := s.Committer()
		c.Window, c.MaxOps, c.Workers = cfg.GroupWindow.D(), cfg.GroupMax, cfg.Committers
		s.Start()
		return d.App(s.Handler()), nil
	})
}
