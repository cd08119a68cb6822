package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/billfn/billfn/functions/capture-payment/payments"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/config"
	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/readthrough"
	"github.com/billfn/billfn/shared/telemetry"
)

// InvoicesConfig configures the read-through of invoices: where
// generate-invoice answers and the service token to ask it with (the same
// secret as the accounts read-through).
type InvoicesConfig struct {
	InvoicesURL  string `envconfig:"INVOICES_URL" default:"http://gateway.openfaas:8080/function/generate-invoice"`
	ServiceToken string `envconfig:"SERVICE_TOKEN" secret:"service-token"`
}

type httpInvoices struct{ c *readthrough.Client }

func (h httpInvoices) Invoice(ctx context.Context, id string) (payments.InvoiceFacts, error) {
	var f payments.InvoiceFacts
	err := h.c.Get(ctx, "invoices", id, &f)
	return f, err
}

// Source returns the read-through cfg describes, or nil.
func (cfg InvoicesConfig) Source() payments.InvoiceSource {
	c := readthrough.New(cfg.InvoicesURL, cfg.ServiceToken)
	if c == nil {
		return nil
	}
	return httpInvoices{c}
}

// Ledger is process-transaction's POST /transfers, asked with the
// function's service token.
type Ledger struct {
	URL          string
	ServiceToken *config.Live // the service-token secret, followed when rotated
}

// Reserve places the refund's hold and returns its transfer id. A refusal
// by the ledger is a 4xx problem (insufficient_funds, or
// refund_not_reservable with the ledger's reason); anything else is an
// error the caller answers with a 503 and the client retries with the
// same Idempotency-Key.
func (l Ledger) Reserve(ctx context.Context, h payments.Hold) (string, error) {
	base, token := l.URL, l.ServiceToken.Value()
	if base == "" || token == "" {
		return "", unavailable(fmt.Errorf("no LEDGER_URL or service token: refunds cannot be reserved"))
	}
	body, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/transfers", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "refund-hold:"+h.RefundID)
	resp, err := tracedClient.Do(req)
	if err != nil {
		return "", unavailable(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", unavailable(err)
	}
	var out struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Code   string `json:"code"`
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(raw, &out)
	switch {
	case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
		if !ids.Valid(out.ID) || out.Status != "held" {
			return "", unavailable(fmt.Errorf("POST /transfers answered %s with %s", resp.Status, raw))
		}
		return out.ID, nil
	case out.Code == string(payments.CodeInsufficientFunds):
		return "", apperr.New(payments.CodeInsufficientFunds, "the ledger no longer holds %d %s for this refund; nothing was refunded", h.Amount, h.Currency).
			With("amount", h.Amount)
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests &&
		resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden:
		return "", apperr.New(payments.CodeRefundNotReservable, "the ledger refused the refund's reservation (%s): %s", out.Code, out.Detail).
			With("ledger_code", out.Code)
	}
	return "", unavailable(fmt.Errorf("POST /transfers: %s: %s", resp.Status, raw))
}

func unavailable(cause error) error {
	pe := apperr.New(apperr.Unavailable, "the ledger could not be reached to reserve the refund; retry with the same Idempotency-Key")
	pe.Err, pe.RetryAfter = cause, time.Second
	return pe
}

// tracedClient carries the payment's trace to process-transaction.
var tracedClient = &http.Client{Transport: telemetry.Transport(nil)}
