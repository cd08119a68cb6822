package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/problem"
)

// A refund is the merchant's act and the ledger goes first: before the
// gateway is asked, the refund's amount is reserved with a hold in
// process-transaction (POST /transfers with "pending": true, the
// function's service token and an Idempotency-Key derived from the refund
// id, so a retried refund finds its hold). If the account no longer holds
// the amount, the refund is refused and the gateway is never called. The
// gateway's answer resolves the hold through the outbox: success captures
// it (the money leaves the account for SYS-CLEARING), failure voids it.

// codeInsufficientFunds refuses a refund the ledger cannot cover.
const codeInsufficientFunds problem.Code = "insufficient_funds"

// codeRefundNotReservable refuses a refund the ledger refused for another
// reason (a frozen or closed account, for instance).
const codeRefundNotReservable problem.Code = "refund_not_reservable"

func init() {
	problem.Register(codeInsufficientFunds, http.StatusUnprocessableEntity, "Insufficient funds")
	problem.Register(codeRefundNotReservable, http.StatusConflict, "Refund cannot be reserved in the ledger")
}

// refundHoldTTL bounds a reservation whose refund never reaches the
// gateway (the client gave up after a failure): the hold expires and the
// account gets its funds back. A gateway answer after that is parked by
// process-transaction for an operator.
const refundHoldTTL = 24 * time.Hour

// Hold resolutions, consumed by process-transaction.
const (
	evHoldCapture = "billfn.hold.capture_requested"
	evHoldVoid    = "billfn.hold.void_requested"
)

// refundHold is the ledger side of a refund: from the payment's account
// (for the part of an invoice payment its invoice kept, from SYS-REVENUE,
// which received the settlement; see holdSource) to SYS-CLEARING, held.
func refundHold(p *payments.Payment, r *payments.Refund) transferRequest {
	ref := p.ID + ":" + kindRefund + ":" + strconv.Itoa(r.N)
	tr := transferRequest{Amount: r.Amount, Currency: string(p.Currency), ReferenceID: ref, Pending: true,
		Description: kindRefund + " of payment " + p.ID,
		Metadata:    map[string]string{"kind": kindRefund, "payment_id": p.ID, "gateway": p.GatewayName(), "refund_id": r.ID}}
	if inv := p.Invoice(); inv != "" {
		tr.Metadata["invoice_id"] = inv
	}
	if r.HoldSource != nil && *r.HoldSource == "revenue" {
		tr.FromAccountNumber = "SYS-REVENUE-" + string(p.Currency)
	} else {
		tr.FromAccountID = p.AccountID
	}
	tr.ToAccountNumber = "SYS-CLEARING-" + string(p.Currency)
	return tr
}

// holdRequest is refundHold with the hold's expiry.
type holdRequest struct {
	transferRequest
	ExpiresAt time.Time `json:"expires_at"`
}

// reserve places the refund's hold and returns its transfer id. A refusal
// by the ledger is a 4xx problem (insufficient_funds, or
// refund_not_reservable with the ledger's reason); anything else is an
// error the caller answers with a 503 and the client retries with the
// same Idempotency-Key.
func (s *service) reserve(ctx context.Context, p *payments.Payment, r *payments.Refund) (string, error) {
	base, token := s.cfg.Accounts.LedgerURL, s.cfg.Accounts.ServiceToken
	if base == "" || token == "" {
		return "", unavailable(fmt.Errorf("no LEDGER_URL or service token: refunds cannot be reserved"))
	}
	body, err := json.Marshal(holdRequest{refundHold(p, r), s.now().Add(refundHoldTTL).UTC()})
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
	req.Header.Set("Idempotency-Key", "refund-hold:"+r.ID)
	resp, err := http.DefaultClient.Do(req)
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
		if _, err := uuid.Parse(out.ID); err != nil || out.Status != "held" {
			return "", unavailable(fmt.Errorf("POST /transfers answered %s with %s", resp.Status, raw))
		}
		return out.ID, nil
	case out.Code == string(codeInsufficientFunds):
		return "", problem.New(codeInsufficientFunds, "the ledger no longer holds %d %s for this refund; nothing was refunded", r.Amount, p.Currency).
			With("amount", r.Amount)
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests &&
		resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden:
		return "", problem.New(codeRefundNotReservable, "the ledger refused the refund's reservation (%s): %s", out.Code, out.Detail).
			With("ledger_code", out.Code)
	}
	return "", unavailable(fmt.Errorf("POST /transfers: %s: %s", resp.Status, raw))
}

func unavailable(cause error) error {
	pe := problem.New(problem.Unavailable, "the ledger could not be reached to reserve the refund; retry with the same Idempotency-Key")
	pe.Err, pe.RetryAfter = cause, time.Second
	return pe
}

// resolveHold adds the event that captures (ok) or voids the refund's
// hold; its id is derived from the hold, so it is resolved once.
func (e *emitter) resolveHold(p *payments.Payment, r *payments.Refund, ok bool) {
	if r.LedgerHoldID == nil {
		return
	}
	typ, what := evHoldVoid, "void"
	if ok {
		typ, what = evHoldCapture, "capture"
	}
	id := uuid.NewSHA1(ledgerNS, []byte("hold:"+*r.LedgerHoldID+":"+what)).String()
	e.add(typ, r.ID, events.TopicTransaction, p.ID, map[string]any{"transfer_id": *r.LedgerHoldID, "amount": r.Amount}, id)
}
