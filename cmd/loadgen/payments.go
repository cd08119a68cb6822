package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/sandbox"
)

// The payment scenarios: a sandbox payment created, confirmed and captured
// in one request (pm_card_visa, automatic capture), and signed sandbox
// webhooks delivered to handle-webhook, as a gateway sends them: each a
// fresh payment_intent.succeeded (new event id) about one of a pool of real
// sandbox payments created in the untimed setup, which capture-payment
// matches to its payment (metadata billfn_payment_id, the intent id) and
// does not park.
func init() {
	register(Scenario{Name: "payments", Function: "capture-payment",
		Help: "POST /payments: create+confirm+capture through the sandbox gateway (pm_card_visa)", Setup: setupPayments})
	register(Scenario{Name: "webhooks", Function: "handle-webhook",
		Help: "POST /sandbox: signed payment_intent.succeeded webhooks (fresh event ids) about 256 real sandbox payments made in setup, round robin (needs -gateway; secret from -secrets or SANDBOX_WEBHOOK_SECRET)", Setup: setupWebhooks})
}

func setupPayments(ctx context.Context, c *Client, o Options) (Step, error) {
	accts, err := billedAccounts(ctx, c, o, 64)
	if err != nil {
		return nil, err
	}
	for _, a := range accts {
		c.Token(a.owner, auth.RoleCustomer)
	}
	return func(ctx context.Context, c *Client, worker, i int) error {
		acct := accts[i%len(accts)]
		body, _ := json.Marshal(map[string]any{"account_id": acct.ID, "amount": 1000 + i%5000, "currency": "USD",
			"payment_method": "pm_card_visa", "confirm": true, "description": "loadgen"})
		st, out, err := c.Call(ctx, "POST /payments", "POST", "/payments", c.Token(acct.owner, auth.RoleCustomer), body, "Idempotency-Key", uuid.NewString())
		if err != nil {
			return err
		}
		if st != 201 || !strings.Contains(string(out), `"status":"succeeded"`) {
			return fmt.Errorf("POST /payments: %d %.300s", st, out)
		}
		return nil
	}, nil
}

// sandboxSecret is the local stack's sandbox webhook secret.
func sandboxSecret(o Options) ([]byte, error) {
	if v := os.Getenv("SANDBOX_WEBHOOK_SECRET"); v != "" {
		return []byte(strings.Split(v, ",")[0]), nil
	}
	b, err := os.ReadFile(filepath.Join(o.SecretsDir, "sandbox-webhook-secret"))
	if err != nil {
		return nil, fmt.Errorf("the sandbox webhook secret: set SANDBOX_WEBHOOK_SECRET or -secrets (%v)", err)
	}
	return []byte(strings.Split(strings.TrimSpace(string(b)), ",")[0]), nil
}

// hookPayments is how many real sandbox payments the webhooks scenario
// confirms, round robin.
const hookPayments = 256

// hookPayment is what a gateway webhook about a payment carries: billfn's
// payment id (metadata billfn_payment_id), the intent's id, its amount and
// currency.
type hookPayment struct {
	ID, Intent, Currency string
	Amount               int64
}

// webhookPool creates n real sandbox payments through capture-payment
// (confirmed and captured at once, pm_card_visa), as setupPayments does.
func webhookPool(ctx context.Context, c *Client, o Options, n int) ([]hookPayment, error) {
	accts, err := billedAccounts(ctx, c, o, 64)
	if err != nil {
		return nil, err
	}
	for _, a := range accts {
		c.Token(a.owner, auth.RoleCustomer)
	}
	pool := make([]hookPayment, n)
	errs := make(chan error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				acct := accts[i%len(accts)]
				body, _ := json.Marshal(map[string]any{"account_id": acct.ID, "amount": 1000 + i%5000, "currency": "USD",
					"payment_method": "pm_card_visa", "confirm": true, "description": "loadgen webhooks"})
				st, out, err := c.Call(ctx, "POST /payments", "POST", "/payments", c.Token(acct.owner, auth.RoleCustomer), body, "Idempotency-Key", uuid.NewString())
				if err != nil {
					errs <- err
					continue
				}
				var p struct {
					ID               string  `json:"id"`
					Amount           int64   `json:"amount"`
					Currency         string  `json:"currency"`
					Status           string  `json:"status"`
					Gateway          *string `json:"gateway"`
					GatewayPaymentID *string `json:"gateway_payment_id"`
				}
				if st != 201 || json.Unmarshal(out, &p) != nil || p.Status != "succeeded" || p.GatewayPaymentID == nil ||
					p.Gateway == nil || *p.Gateway != "sandbox" {
					errs <- fmt.Errorf("POST /payments: %d %.300s", st, out)
					continue
				}
				pool[i] = hookPayment{ID: p.ID, Intent: *p.GatewayPaymentID, Currency: strings.ToLower(p.Currency), Amount: p.Amount}
			}
		}()
	}
	for i := range pool {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("the webhooks' payments: %w", err)
	}
	return pool, nil
}

// setupWebhooks confirms, in its untimed part, a pool of real sandbox
// payments; each step then delivers a fresh signed payment_intent.succeeded
// (a new event id, as a gateway retrying or confirming sends) about one of
// them, round robin, with its real intent id, amount and currency, so that
// capture-payment matches every event to its payment and parks none.
func setupWebhooks(ctx context.Context, c *Client, o Options) (Step, error) {
	secret, err := sandboxSecret(o)
	if err != nil {
		return nil, err
	}
	if o.Gateway == "" {
		return nil, fmt.Errorf("the webhooks' payments are created in capture-payment: pass -gateway")
	}
	pool, err := webhookPool(ctx, c.at("capture-payment", o), o, hookPayments)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, c *Client, worker, i int) error {
		p := pool[i%len(pool)]
		pi := sandbox.PaymentIntent{ID: p.Intent, Object: "payment_intent", Amount: p.Amount, AmountReceived: p.Amount,
			Currency: p.Currency, Status: "succeeded", CaptureMethod: "automatic", Metadata: map[string]string{sandbox.MetadataPaymentID: p.ID}}
		body, err := sandbox.NewEvent("evt_sbx_load_"+strings.ReplaceAll(uuid.NewString(), "-", ""), "payment_intent.succeeded", time.Now(), pi)
		if err != nil {
			return err
		}
		st, out, err := c.Call(ctx, "POST /sandbox", "POST", "/sandbox", "", body,
			sandbox.SignatureHeader, sandbox.Sign(secret, time.Now(), body))
		if err != nil {
			return err
		}
		if st != 200 {
			return fmt.Errorf("POST /sandbox: %d %.300s", st, out)
		}
		return nil
	}, nil
}
