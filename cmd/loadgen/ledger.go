package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// The ledger scenarios open o.Accounts accounts (one customer each), fund
// them generously from SYS-EXTERNAL-USD, then move small random amounts
// between random pairs: a customer paying another, as on a busy day.

func init() {
	register(Scenario{Name: "transfers", Function: "process-transaction",
		Help: "POST /transfers: one synchronous transfer per request between random accounts", Setup: setupTransfers})
	register(Scenario{Name: "batch", Function: "process-transaction",
		Help: "POST /transfers/batch: -batch transfers per request", Setup: setupBatch})
}

type ledgerAccount struct {
	ID    string `json:"id"`
	owner string
}

func openAccounts(ctx context.Context, c *Client, n int, fund int64) ([]ledgerAccount, error) {
	admin := c.Token(uuid.NewString(), auth.RoleAdmin)
	out := make([]ledgerAccount, n)
	for i := range out {
		owner := uuid.NewString()
		body, _ := json.Marshal(map[string]any{"currency": "USD", "user_id": owner})
		st, b, err := c.Call(ctx, "setup", "POST", "/accounts", admin, body)
		if err != nil || st != 201 {
			return nil, fmt.Errorf("open account: %d %s %v", st, b, err)
		}
		if err := json.Unmarshal(b, &out[i]); err != nil {
			return nil, err
		}
		out[i].owner = owner
		body, _ = json.Marshal(map[string]any{"from_account_number": "SYS-EXTERNAL-USD", "to_account_id": out[i].ID,
			"amount": fund, "currency": "USD", "description": "loadgen funding"})
		st, b, err = c.Call(ctx, "setup", "POST", "/transfers", admin, body, "Idempotency-Key", uuid.NewString())
		if err != nil || st != 201 {
			return nil, fmt.Errorf("fund account: %d %s %v", st, b, err)
		}
	}
	return out, nil
}

func setupTransfers(ctx context.Context, c *Client, o Options) (Step, error) {
	accts, err := openAccounts(ctx, c, o.Accounts, 1_000_000_000)
	if err != nil {
		return nil, err
	}
	// Pre-sign every owner's token so the timed loop only sends requests.
	for _, a := range accts {
		c.Token(a.owner, auth.RoleCustomer)
	}
	return func(ctx context.Context, c *Client, worker, i int) error {
		rng := rand.New(rand.NewPCG(uint64(i), uint64(worker)))
		from := accts[rng.IntN(len(accts))]
		to := accts[rng.IntN(len(accts))]
		for to.ID == from.ID {
			to = accts[rng.IntN(len(accts))]
		}
		body := []byte(`{"from_account_id":"` + from.ID + `","to_account_id":"` + to.ID + `","amount":` +
			strconv.Itoa(rng.IntN(1000)+1) + `,"currency":"USD","description":"loadgen"}`)
		st, b, err := c.Call(ctx, "POST /transfers", "POST", "/transfers", c.Token(from.owner, auth.RoleCustomer), body,
			"Idempotency-Key", uuid.NewString())
		if err != nil {
			return err
		}
		if st != 201 {
			return fmt.Errorf("POST /transfers: %d %s", st, b)
		}
		return nil
	}, nil
}

func setupBatch(ctx context.Context, c *Client, o Options) (Step, error) {
	accts, err := openAccounts(ctx, c, o.Accounts, 1_000_000_000)
	if err != nil {
		return nil, err
	}
	admin := c.Token(uuid.NewString(), auth.RoleAdmin)
	// The client shares the machine's cores with the system it measures,
	// as pgbench does: it builds each body by appending and checks the
	// answer by counting, so that it spends a few µs per transfer instead of
	// a reflective encoding and decoding of every item (about half its CPU).
	ok := []byte(`"status":201`)
	return func(ctx context.Context, c *Client, worker, i int) error {
		rng := rand.New(rand.NewPCG(uint64(i), uint64(worker)))
		body := make([]byte, 0, 160*o.Batch+16)
		body = append(body, `{"transfers":[`...)
		for k := 0; k < o.Batch; k++ {
			from, to := accts[rng.IntN(len(accts))], accts[rng.IntN(len(accts))]
			for to.ID == from.ID {
				to = accts[rng.IntN(len(accts))]
			}
			if k > 0 {
				body = append(body, ',')
			}
			body = append(body, `{"from_account_id":"`...)
			body = append(body, from.ID...)
			body = append(body, `","to_account_id":"`...)
			body = append(body, to.ID...)
			body = append(body, `","amount":`...)
			body = strconv.AppendInt(body, int64(rng.IntN(1000)+1), 10)
			body = append(body, `,"currency":"USD"}`...)
		}
		body = append(body, "]}"...)
		st, b, err := c.Call(ctx, "POST /transfers/batch", "POST", "/transfers/batch", admin, body, "Idempotency-Key", uuid.NewString())
		if err != nil {
			return err
		}
		if st != 200 {
			return fmt.Errorf("POST /transfers/batch: %d %.300s", st, b)
		}
		if bytes.Count(b, ok) == o.Batch {
			return nil
		}
		// Not every item was created: say which status came back.
		var out struct {
			Results []struct {
				Status int `json:"status"`
			} `json:"results"`
		}
		if err := json.Unmarshal(b, &out); err != nil || len(out.Results) != o.Batch {
			return fmt.Errorf("batch answer: %v (%d results)", err, len(out.Results))
		}
		for _, r := range out.Results {
			if r.Status != 201 {
				return fmt.Errorf("batch item %d", r.Status)
			}
		}
		return fmt.Errorf("batch answer: %d of %d items say %s", bytes.Count(b, ok), o.Batch, ok)
	}, nil
}
