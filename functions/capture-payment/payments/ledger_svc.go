package payments

import (
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
)

// A refund is the merchant's act and the ledger goes first: before the
// gateway is asked, the refund's amount is reserved with a hold in
// process-transaction (POST /transfers with "pending": true, the
// function's service token and an Idempotency-Key derived from the refund
// id, so a retried refund finds its hold). If the account no longer holds
// the amount, the refund is refused and the gateway is never called. The
// gateway's answer resolves the hold through the outbox: success captures
// it (the money leaves the account for SYS-CLEARING), failure voids it.

// CodeInsufficientFunds refuses a refund the ledger cannot cover.
const CodeInsufficientFunds apperr.Code = "insufficient_funds"

// CodeRefundNotReservable refuses a refund the ledger refused for another
// reason (a frozen or closed account, for instance).
const CodeRefundNotReservable apperr.Code = "refund_not_reservable"

// refundHoldTTL bounds a reservation whose refund never reaches the
// gateway (the client gave up after a failure): the hold expires and the
// account gets its funds back. A gateway answer after that is parked by
// process-transaction for an operator.
const refundHoldTTL = 24 * time.Hour

// refundHold is the ledger side of a refund: from the payment's account
// (for the part of an invoice payment its invoice kept, from SYS-REVENUE,
// which received the settlement; see holdSource) to SYS-CLEARING, held.
func refundHold(p *Payment, r *Refund) TransferRequest {
	ref := p.ID + ":" + KindRefund + ":" + strconv.Itoa(r.N)
	tr := TransferRequest{Amount: r.Amount, Currency: string(p.Currency), ReferenceID: ref, Pending: true,
		Description: KindRefund + " of payment " + p.ID,
		Metadata:    map[string]string{"kind": KindRefund, "payment_id": p.ID, "gateway": p.GatewayName(), "refund_id": r.ID}}
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

// Hold is a refund's reservation as POST /transfers takes it: refundHold
// with the hold's expiry.
type Hold struct {
	TransferRequest
	ExpiresAt time.Time `json:"expires_at"`
	// RefundID is the refund the hold is for (its Idempotency-Key).
	RefundID string `json:"-"`
}

// resolveHold adds the event that captures (ok) or voids the refund's
// hold; its id is derived from the hold, so it is resolved once.
func (e *emitter) resolveHold(p *Payment, r *Refund, ok bool) {
	if r.LedgerHoldID == nil {
		return
	}
	typ, what := events.TypeHoldVoidRequested, "void"
	if ok {
		typ, what = events.TypeHoldCaptureRequested, "capture"
	}
	id := uuid.NewSHA1(LedgerNS, []byte("hold:"+*r.LedgerHoldID+":"+what)).String()
	e.add(typ, r.ID, events.TopicTransaction, p.ID, map[string]any{"transfer_id": *r.LedgerHoldID, "amount": r.Amount}, id)
}
