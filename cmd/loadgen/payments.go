package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/sandbox"
)

// The payment scenarios: a sandbox payment created, confirmed and captured
// in one request (pm_card_visa, automatic capture), and signed sandbox
// webhooks delivered to handle-webhook, as a gateway sends them.
func init() {
	register(Scenario{Name: "payments", Function: "capture-payment",
		Help: "POST /payments: create+confirm+capture through the sandbox gateway (pm_card_visa)", Setup: setupPayments})
	register(Scenario{Name: "webhooks", Function: "handle-webhook",
		Help: "POST /sandbox: signed payment_intent.succeeded webhooks (secret from -secrets or SANDBOX_WEBHOOK_SECRET)", Setup: setupWebhooks})
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

func setupWebhooks(ctx context.Context, c *Client, o Options) (Step, error) {
	secret, err := sandboxSecret(o)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, c *Client, worker, i int) error {
		pi := sandbox.PaymentIntent{ID: "pi_sbx_load_" + uuid.NewString(), Object: "payment_intent", Amount: 1050, AmountReceived: 1050,
			Currency: "usd", Status: "succeeded", Metadata: map[string]string{"billfn_payment_id": uuid.NewString()}}
		body, err := sandbox.NewEvent("evt_sbx_"+uuid.NewString(), "payment_intent.succeeded", time.Now(), pi)
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
