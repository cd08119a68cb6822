package main

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// The mixed scenario is a day of business through the gateway: of every
// 20 operations, 10 transfers, 3 invoices created and finalized, 4
// payments, 2 gateway webhooks and 1 balance read.
func init() {
	register(Scenario{Name: "mixed", Function: "process-transaction",
		Help: "a day of business through the gateway: transfers, invoices, payments, webhooks, reads", Setup: setupMixed})
}

// at returns a client for another function behind the same gateway.
func (c *Client) at(function string, o Options) *Client {
	return &Client{Base: o.Gateway + "/function/" + function, http: c.http, signer: c.signer, stats: c.stats}
}

func setupMixed(ctx context.Context, c *Client, o Options) (Step, error) {
	if o.Gateway == "" {
		return nil, fmt.Errorf("the mixed scenario needs -gateway")
	}
	ledger, billing, payments, webhooks := c.at("process-transaction", o), c.at("generate-invoice", o), c.at("capture-payment", o), c.at("handle-webhook", o)
	transfer, err := setupTransfers(ctx, ledger, o)
	if err != nil {
		return nil, err
	}
	invoice, err := setupInvoices(ctx, billing, o)
	if err != nil {
		return nil, err
	}
	pay, err := setupPayments(ctx, payments, o)
	if err != nil {
		return nil, err
	}
	hook, err := setupWebhooks(ctx, webhooks, o)
	if err != nil {
		return nil, err
	}
	accts, err := openAccounts(ctx, ledger, 8, 1000)
	if err != nil {
		return nil, err
	}
	admin := c.Token(uuid.NewString(), auth.RoleAdmin)
	return func(ctx context.Context, _ *Client, worker, i int) error {
		switch n := rand.New(rand.NewPCG(uint64(i), 7)).IntN(20); {
		case n < 10:
			return transfer(ctx, ledger, worker, i)
		case n < 13:
			return invoice(ctx, billing, worker, i)
		case n < 17:
			return pay(ctx, payments, worker, i)
		case n < 19:
			return hook(ctx, webhooks, worker, i)
		default:
			st, b, err := ledger.Call(ctx, "GET /accounts/{id}", "GET", "/accounts/"+accts[i%len(accts)].ID, admin, nil)
			if err != nil {
				return err
			}
			if st != 200 {
				return fmt.Errorf("GET /accounts/{id}: %d %.200s", st, b)
			}
			return nil
		}
	}, nil
}
