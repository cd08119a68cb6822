package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// The invoice scenarios create invoices of ten taxed lines and finalize them
// at once (auto_finalize): one at a time synchronously, or by the hundred
// through the batch endpoint, as generate-invoice's docs describe.
func init() {
	register(Scenario{Name: "invoices", Function: "generate-invoice",
		Help: "POST /invoices with auto_finalize: synchronous create+finalize of a 10-line invoice", Setup: setupInvoices})
	register(Scenario{Name: "invoices-batch", Function: "generate-invoice",
		Help: "POST /invoices/batch: -batch invoices of 10 lines per request, finalized (service role)", Setup: setupInvoiceBatch})
}

func taxRate(ctx context.Context, c *Client) (string, error) {
	body := []byte(`{"display_name":"VAT","jurisdiction":"GB","country":"GB","percentage":"20","inclusive":false}`)
	st, b, err := c.Call(ctx, "setup", "POST", "/tax-rates", c.Token(uuid.NewString(), auth.RoleAdmin), body, "Idempotency-Key", uuid.NewString())
	if err != nil || st != 201 {
		return "", fmt.Errorf("POST /tax-rates: %d %s %v", st, b, err)
	}
	var tr struct {
		ID string `json:"id"`
	}
	return tr.ID, json.Unmarshal(b, &tr)
}

// billedAccounts opens n ledger accounts in process-transaction behind
// o.Gateway, each of its own owner: an invoice or a payment names an account
// its caller owns (generate-invoice and capture-payment look it up).
func billedAccounts(ctx context.Context, c *Client, o Options, n int) ([]ledgerAccount, error) {
	if o.Gateway == "" {
		return nil, fmt.Errorf("the accounts it bills are opened in process-transaction: pass -gateway")
	}
	return openAccounts(ctx, c.at("process-transaction", o), n, 1000)
}

func invoiceBody(acct ledgerAccount, rate string, i int) map[string]any {
	lines := make([]map[string]any, 10)
	for k := range lines {
		lines[k] = map[string]any{"description": fmt.Sprintf("Item %d", k+1), "quantity": "2", "unit_amount": 1250 + k*10,
			"tax_rate_ids": []string{rate}}
	}
	return map[string]any{"account_id": acct.ID, "user_id": acct.owner, "currency": "USD",
		"customer":   map[string]any{"name": "Load Test", "email": "load@example.com"},
		"line_items": lines, "net_terms_days": 30, "auto_finalize": true, "metadata": map[string]any{"n": fmt.Sprint(i)}}
}

func setupInvoices(ctx context.Context, c *Client, o Options) (Step, error) {
	rate, err := taxRate(ctx, c)
	if err != nil {
		return nil, err
	}
	accts, err := billedAccounts(ctx, c, o, 64)
	if err != nil {
		return nil, err
	}
	// The merchant's backend invoices its customers (a service token), so
	// each invoice is e-mailed; one a customer made itself is not
	// (generate-invoice: customer_made_invoice).
	service := c.Token(uuid.NewString(), auth.RoleService)
	return func(ctx context.Context, c *Client, worker, i int) error {
		acct := accts[i%len(accts)]
		b, _ := json.Marshal(invoiceBody(acct, rate, i))
		st, out, err := c.Call(ctx, "POST /invoices", "POST", "/invoices", service, b, "Idempotency-Key", uuid.NewString())
		if err != nil {
			return err
		}
		if st != 201 {
			return fmt.Errorf("POST /invoices: %d %.300s", st, out)
		}
		return nil
	}, nil
}

func setupInvoiceBatch(ctx context.Context, c *Client, o Options) (Step, error) {
	rate, err := taxRate(ctx, c)
	if err != nil {
		return nil, err
	}
	accts, err := billedAccounts(ctx, c, o, 64)
	if err != nil {
		return nil, err
	}
	service := c.Token(uuid.NewString(), auth.RoleService)
	return func(ctx context.Context, c *Client, worker, i int) error {
		items := make([]map[string]any, o.Batch)
		for k := range items {
			items[k] = invoiceBody(accts[(i*o.Batch+k)%len(accts)], rate, i*o.Batch+k)
		}
		b, _ := json.Marshal(map[string]any{"invoices": items})
		st, out, err := c.Call(ctx, "POST /invoices/batch", "POST", "/invoices/batch", service, b, "Idempotency-Key", uuid.NewString())
		if err != nil {
			return err
		}
		if st != 201 {
			return fmt.Errorf("POST /invoices/batch: %d %.300s", st, out)
		}
		return nil
	}, nil
}
