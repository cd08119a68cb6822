package payments

import (
	"context"
	"strconv"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/events"
)

// eventPayment is p as the payment events carry it (events.Payment, where
// the payment's own id is payment_id, as every id in an event is named).
func eventPayment(p *Payment) events.Payment {
	out := events.Payment{PaymentID: p.ID, AccountID: p.AccountID, UserID: p.UserID, InvoiceID: p.InvoiceID,
		Amount: p.Amount, Currency: string(p.Currency), Status: string(p.Status), Gateway: p.Gateway,
		GatewayPaymentID: p.GatewayPaymentID, CaptureMethod: p.CaptureMethod, PaymentMethod: p.PaymentMethod,
		AmountCapturable: p.AmountCapturable, AmountCaptured: p.AmountCaptured, AmountRefunded: p.AmountRefunded,
		AmountRefundPending: p.AmountRefundPending, Attempts: p.Attempts, PendingOperation: p.PendingOperation,
		Description: p.Description, Metadata: p.Metadata, CancellationReason: p.CancellationReason,
		DisputedAt: p.DisputedAt, AuthorizedAt: p.AuthorizedAt, CapturedAt: p.CapturedAt, CanceledAt: p.CanceledAt,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if le := p.LastPaymentError; le != nil {
		out.LastPaymentError = &events.PaymentError{Code: le.Code, DeclineCode: le.DeclineCode, Reason: le.Reason,
			Message: le.Message, Attempt: le.Attempt, Gateway: le.Gateway}
	}
	if p.NextAction != nil {
		out.NextAction = &events.NextAction{Type: p.NextAction.Type}
	}
	return out
}

// eventRefund is r as the refund events carry it (events.Refund).
func eventRefund(r *Refund) events.Refund {
	return events.Refund{RefundID: r.ID, PaymentID: r.PaymentID, AccountID: r.AccountID, UserID: r.UserID,
		InvoiceID: r.InvoiceID, Amount: r.Amount, Currency: r.Currency, Gateway: r.Gateway,
		GatewayRefundID: r.GatewayRefundID, GatewayPaymentID: r.GatewayPaymentID, Status: r.Status, Reason: r.Reason,
		FailureReason: r.FailureReason, LedgerHoldID: r.LedgerHoldID, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
}

// emitter collects the outbox messages of one transaction.
type emitter struct {
	ctx  context.Context
	msgs []Message
	err  error
}

func (e *emitter) add(typ, subject, topic, key string, data any, id string) {
	if e.err != nil {
		return
	}
	ev, err := events.New(e.ctx, source, typ, subject, data)
	if err != nil {
		e.err = err
		return
	}
	if id != "" {
		ev.SetID(id)
	}
	e.msgs = append(e.msgs, Message{Topic: topic, Key: key, Event: ev})
}

// payment adds a payment event (key = the payment id).
func (e *emitter) payment(typ string, p *Payment, data any) {
	if data == nil {
		data = eventPayment(p)
	}
	e.add(typ, p.ID, events.TopicPayment, p.ID, data, "")
}

// flush writes the collected messages into the outbox inside tx.
func (e *emitter) flush(tx Tx) error {
	if e.err != nil {
		return e.err
	}
	err := tx.Emit(e.ctx, e.msgs)
	e.msgs = e.msgs[:0]
	return err
}

// changed adds the events and ledger postings of c, announcing the
// payment first if its creation has not been yet.
func (e *emitter) changed(p *Payment, c Change) {
	if !p.Announced {
		p.Announced = true
		e.payment(events.TypePaymentCreated, p, nil)
		c.Updated = false // the announcement shows it
	}
	if c.Authorized {
		e.payment(events.TypePaymentAuthorized, p, nil)
	}
	if c.Captured > 0 {
		e.payment(events.TypePaymentCaptured, p, events.PaymentCaptured{Payment: eventPayment(p), Amount: c.Captured, PaymentAmount: p.Amount})
		e.capturePostings(p, c.Captured)
	}
	if c.Failed {
		d := events.PaymentFailed{Payment: eventPayment(p), Attempt: p.Attempts}
		if le := p.LastPaymentError; le != nil {
			d.DeclineCode, d.FailureCode, d.FailureReason, d.FailureMessage = le.DeclineCode, le.Code, le.Reason, le.Message
			d.Attempt = le.Attempt
		}
		e.payment(events.TypePaymentFailed, p, d)
	}
	if c.Canceled {
		e.payment(events.TypePaymentCanceled, p, nil)
	}
	if c.Updated && !c.Authorized && c.Captured == 0 && !c.Failed && !c.Canceled {
		e.payment(events.TypePaymentUpdated, p, nil)
	}
}

// TransferRequest is process-transaction's transfer request (the data of
// billfn.transaction.requested).
type TransferRequest struct {
	FromAccountID     string            `json:"from_account_id,omitempty"`
	ToAccountID       string            `json:"to_account_id,omitempty"`
	FromAccountNumber string            `json:"from_account_number,omitempty"`
	ToAccountNumber   string            `json:"to_account_number,omitempty"`
	Amount            int64             `json:"amount"`
	Currency          string            `json:"currency"`
	Description       string            `json:"description"`
	ReferenceID       string            `json:"reference_id"`
	Metadata          map[string]string `json:"metadata"`
	Pending           bool              `json:"pending"`
}

// Posting kinds (metadata.kind): the contract's (events.TransferKinds),
// see docs/events.md "Payments in the ledger".
const (
	KindCapture    = events.KindPaymentCapture
	KindSettlement = events.KindInvoiceSettlement
	KindRefund     = events.KindRefund
	KindInvRefund  = events.KindInvoiceRefund
	// KindRefundReversal returns a refund that failed after it succeeded:
	// SYS-CLEARING → what the refund drew on (the account, or revenue).
	KindRefundReversal = events.KindRefundReversal
)

// LedgerNS namespaces the deterministic ids of ledger events.
var LedgerNS = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://billfn.dev/capture-payment/ledger"))

// posting adds one transaction.requested. Its reference is
// <payment id>:<kind>:<n> and its event id a UUIDv5 of that reference, so
// whatever retries happen, process-transaction posts it once.
func (e *emitter) posting(p *Payment, kind string, n int, from, to string, amount int64, refundID string) {
	ref := p.ID + ":" + kind + ":" + strconv.Itoa(n)
	tr := TransferRequest{Amount: amount, Currency: string(p.Currency), ReferenceID: ref, Description: kind + " of payment " + p.ID,
		Metadata: map[string]string{"kind": kind, "payment_id": p.ID, "gateway": p.GatewayName()}}
	if inv := p.Invoice(); inv != "" {
		tr.Metadata["invoice_id"] = inv
	}
	if refundID != "" {
		tr.Metadata["refund_id"] = refundID
	}
	clearing, revenue := "SYS-CLEARING-"+string(p.Currency), "SYS-REVENUE-"+string(p.Currency)
	account := func(role string) (id, number string) {
		switch role {
		case "clearing":
			return "", clearing
		case "revenue":
			return "", revenue
		}
		return p.AccountID, ""
	}
	tr.FromAccountID, tr.FromAccountNumber = account(from)
	tr.ToAccountID, tr.ToAccountNumber = account(to)
	e.add(events.TypeTransactionRequested, p.ID, events.TopicTransaction, p.ID, tr, uuid.NewSHA1(LedgerNS, []byte(ref)).String())
}

// capturePostings: clearing → account for the capture, and account →
// revenue when it pays an invoice. n is the payment's capture count.
func (e *emitter) capturePostings(p *Payment, amount int64) {
	e.posting(p, KindCapture, p.CaptureCount, "clearing", "account", amount, "")
	if p.InvoiceID != nil {
		e.posting(p, KindSettlement, p.CaptureCount, "account", "revenue", amount, "")
	}
}

// refundPostings: for an invoice payment, fromRevenue of the refund
// revenue → account first (what the invoice kept; the rest of the refund
// is the account's credit, HoldSource), then account → clearing. n is the
// refund's number on its payment.
func (e *emitter) refundPostings(p *Payment, r *Refund, fromRevenue int64) {
	if p.InvoiceID != nil && fromRevenue > 0 {
		e.posting(p, KindInvRefund, r.N, "revenue", "account", fromRevenue, r.ID)
	}
	e.posting(p, KindRefund, r.N, "account", "clearing", r.Amount, r.ID)
}

// Refund adds a refund event (key = the payment id).
func (e *emitter) refund(typ string, r *Refund) {
	e.add(typ, r.ID, events.TopicPayment, r.PaymentID, eventRefund(r), "")
}

// refundReversed adds the billfn.refund.failed of r, which had succeeded:
// marked reversed, for consumers that never saw r's own success (one
// taken out of a gateway's total).
func (e *emitter) refundReversed(r *Refund) {
	data := eventRefund(r)
	data.Reversed = true
	e.add(events.TypeRefundFailed, r.ID, events.TopicPayment, r.PaymentID, data, "")
}
