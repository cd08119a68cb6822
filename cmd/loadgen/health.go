package main

import (
	"context"
	"fmt"
)

// The health scenario calls a function's GET /_/health: the cheapest
// request there is, so it measures the HTTP path itself — run it direct
// and through the gateway to see what the gateway hop costs.
func init() {
	register(Scenario{Name: "health", Function: "process-transaction",
		Help: "GET /_/health: the platform's own cost (direct vs through the gateway)", Setup: setupHealth})
}

func setupHealth(ctx context.Context, c *Client, o Options) (Step, error) {
	return func(ctx context.Context, c *Client, worker, i int) error {
		st, _, err := c.Call(ctx, "GET /_/health", "GET", "/_/health", "", nil)
		if err != nil {
			return err
		}
		if st != 200 {
			return fmt.Errorf("GET /_/health: %d", st)
		}
		return nil
	}, nil
}
