package rollup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	jsoniter "github.com/json-iterator/go"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/money"
)

// Aggregator applies events to state and effects.
type Aggregator struct {
	State   *State
	Effects *Effects
}

// permanent marks an event that can never be applied (it is parked).
func permanent(ev Event, format string, args ...any) error {
	return events.Permanent(fmt.Errorf("%s %s (%s): %s", ev.Type, ev.ID, ev.Source, fmt.Sprintf(format, args...)))
}

// dataJSON decodes event data as encoding/json does (same rules for
// unknown members, duplicates, numbers), in a third of the time: the hot
// path decodes every event's data once. It is already a dependency of the
// CloudEvents SDK. Unlike encoding/json it matches member names exactly:
// read case-insensitively, {"amount":5,"Amount":7} is 7 as received but 5
// as report_events' jsonb gives it back (members reordered), so a replay
// would disagree with streaming.
var dataJSON = jsoniter.Config{EscapeHTML: true, SortMapKeys: true, ValidateJsonRawMessage: true, CaseSensitive: true}.Froze()

func decode(ev Event, v any) error {
	if dataJSON.Unmarshal(ev.Data, v) == nil {
		return nil
	}
	// The rare failure goes through encoding/json itself: its verdict
	// decides and its message (no raw bytes quoted) is the one parked.
	if err := json.Unmarshal(ev.Data, v); err != nil {
		return permanent(ev, "data: %v", err)
	}
	return nil
}

// canonicalID returns the canonical form of a UUID, or "" when s is not one.
func canonicalID(s string) string {
	if s == "" {
		return ""
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return ""
	}
	return id.String()
}

func requireID(ev Event, field, s string) (string, error) {
	if id := canonicalID(s); id != "" {
		return id, nil
	}
	return "", permanent(ev, "%s %q is not a UUID", field, s)
}

func currency(ev Event, s string) (string, error) {
	c, err := money.ParseCurrency(s)
	if err != nil {
		return "", permanent(ev, "currency %q: %v", s, err)
	}
	return string(c), nil
}

func nonNegative(ev Event, field string, v int64) error {
	if v < 0 {
		return permanent(ev, "%s %d is negative", field, v)
	}
	return nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func gatewayName(s string) string {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "" {
		return "unknown"
	}
	return s
}

// Apply applies one event. Unknown types are ignored.
func (a *Aggregator) Apply(ev Event) error {
	switch ev.Type {
	case TransferPosted, TransferRejected:
		return a.transfer(ev)
	case HoldCreated, HoldCaptured, HoldVoided, HoldExpired:
		return a.hold(ev)
	case AccountCreated, AccountUpdated:
		return a.account(ev)
	case InvoiceCreated, InvoiceFinalized, InvoicePaid, InvoiceVoided, InvoiceOverdue, InvoiceUncollectible:
		return a.invoice(ev)
	case SubscriptionCreated, SubscriptionUpdated, SubscriptionCanceled:
		return a.subscription(ev)
	case PaymentCreated, PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentCanceled:
		return a.payment(ev)
	case RefundSucceeded, RefundFailed:
		return a.refund(ev)
	case GatewayUpdated:
		return a.gatewayUpdate(ev)
	case PaymentDisputed:
		return a.paymentDisputed(ev)
	case PaymentUnapplied:
		return a.unapplied(ev)
	}
	return nil
}

type transferData struct {
	ID             string          `json:"id"`
	FromAccountID  string          `json:"from_account_id"`
	ToAccountID    string          `json:"to_account_id"`
	Amount         int64           `json:"amount"`
	Currency       string          `json:"currency"`
	Status         string          `json:"status"`
	RejectReason   *string         `json:"reject_reason"`
	CapturedAmount int64           `json:"captured_amount"`
	Metadata       json.RawMessage `json:"metadata"`
}

// metadata reads the string members billfn puts in transfer metadata; any
// other shape is ignored (metadata is free-form JSON).
func metadata(raw json.RawMessage) map[string]string {
	var m map[string]any
	if len(raw) == 0 || !bytes.Contains(raw, []byte(`"kind"`)) || dataJSON.Unmarshal(raw, &m) != nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

// reconKinds maps the ledger's metadata.kind to the cash it moves at a
// gateway; invoice_settlement and invoice_refund move money inside billfn.
var reconKinds = map[string]string{events.KindPaymentCapture: "capture", events.KindRefund: "refund",
	events.KindRefundReversal: "refund_reversal"}

func (a *Aggregator) transfer(ev Event) error {
	var d transferData
	if err := decode(ev, &d); err != nil {
		return err
	}
	from := canonicalID(d.FromAccountID)
	if ev.Type == TransferRejected {
		// A rejected request may be malformed itself (amount_invalid,
		// unknown currency): count it, with the volume it claimed when
		// that is meaningful.
		reason := str(d.RejectReason)
		if reason == "" {
			reason = "unknown"
		}
		cur, amount := NoCurrency, int64(0)
		if c, err := money.ParseCurrency(d.Currency); err == nil {
			cur = string(c)
			amount = max(d.Amount, 0)
		}
		if err := a.Effects.add(ev.Time, cur, MTransferRejected, reason, from, 1, amount, everywhere); err != nil {
			return permanent(ev, "%v", err)
		}
		if cur != NoCurrency {
			a.ledgerRecon(ev, d, cur, amount, "rejected")
		}
		return nil
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	if err := nonNegative(ev, "amount", d.Amount); err != nil {
		return err
	}
	if from == "" {
		return permanent(ev, "from_account_id %q is not a UUID", d.FromAccountID)
	}
	to, err := requireID(ev, "to_account_id", d.ToAccountID)
	if err != nil {
		return err
	}
	if err := a.Effects.add(ev.Time, cur, MTransferPosted, "", from, 1, d.Amount, everywhere); err != nil {
		return permanent(ev, "%v", err)
	}
	if err := a.Effects.add(ev.Time, cur, MTransferReceived, "", to, 1, d.Amount, accountOnly); err != nil {
		return permanent(ev, "%v", err)
	}
	a.ledgerRecon(ev, d, cur, d.Amount, "posted")
	return nil
}

func (a *Aggregator) ledgerRecon(ev Event, d transferData, cur string, amount int64, status string) {
	md := metadata(d.Metadata)
	kind, ok := reconKinds[md["kind"]]
	if !ok {
		return
	}
	if a.Effects.Keep != nil && !a.Effects.Keep(ev.Time) {
		return
	}
	// A capture credits the payer's account, a refund's reversal gives back
	// to what the refund drew on; a refund debits it.
	account := canonicalID(d.ToAccountID)
	if kind == "refund" {
		account = canonicalID(d.FromAccountID)
	}
	ref := d.ID
	if ref == "" {
		ref = ev.Subject
	}
	a.Effects.Recon = append(a.Effects.Recon, ReconRow{
		Source: ev.Source, EventID: ev.ID, Side: "ledger", Kind: kind, PaymentID: md["payment_id"],
		AccountID: account, Gateway: gatewayName(md["gateway"]), Currency: cur, Amount: amount,
		Status: status, Ref: ref, At: ev.Time,
	})
}

func (a *Aggregator) hold(ev Event) error {
	var d transferData
	if err := decode(ev, &d); err != nil {
		return err
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	metric, amount := MHoldCreated, d.Amount
	switch ev.Type {
	case HoldCaptured:
		metric, amount = MHoldCaptured, d.CapturedAmount
	case HoldVoided:
		metric = MHoldVoided
	case HoldExpired:
		metric = MHoldExpired
	}
	if err := nonNegative(ev, "amount", amount); err != nil {
		return err
	}
	if err := a.Effects.add(ev.Time, cur, metric, "", canonicalID(d.FromAccountID), 1, amount, everywhere); err != nil {
		return permanent(ev, "%v", err)
	}
	if ev.Type == HoldCaptured && amount > 0 {
		// A refund is a hold placed before the gateway is asked and
		// captured after it answered: the capture is its ledger side.
		a.ledgerRecon(ev, d, cur, amount, "posted")
	}
	return nil
}

type accountData struct {
	ID            string `json:"id"`
	UserID        string `json:"user_id"`
	AccountNumber string `json:"account_number"` // process-transaction's Account
	Number        string `json:"number"`         // accepted too
	Currency      string `json:"currency"`
	Status        string `json:"status"`
}

func (a *Aggregator) account(ev Event) error {
	var d accountData
	if err := decode(ev, &d); err != nil {
		return err
	}
	if d.ID == "" {
		d.ID = ev.Subject
	}
	id, err := requireID(ev, "id", d.ID)
	if err != nil {
		return err
	}
	user, err := requireID(ev, "user_id", d.UserID)
	if err != nil {
		return err
	}
	cur := ""
	if c, err := money.ParseCurrency(d.Currency); err == nil {
		cur = string(c)
	}
	if ev.Type == AccountCreated && cur != "" {
		if err := a.Effects.add(ev.Time, cur, MAccountCreated, "", id, 1, 0, everywhere); err != nil {
			return permanent(ev, "%v", err)
		}
	}
	a.Effects.touch(ev.Time)
	s := a.State
	old := s.Accounts[id]
	if old != nil && ev.Time.Before(old.UpdatedAt) {
		return nil // an older version arriving late
	}
	number := d.AccountNumber
	if number == "" {
		number = d.Number
	}
	s.Accounts[id] = &Account{UserID: user, Number: number, Currency: cur, Status: d.Status, UpdatedAt: ev.Time}
	s.dirtyAccounts[id] = true
	return nil
}

type invoiceData struct {
	InvoiceID   string     `json:"invoice_id"`
	AccountID   string     `json:"account_id"`
	Currency    string     `json:"currency"`
	Total       int64      `json:"total"`
	AmountPaid  int64      `json:"amount_paid"`
	AmountDue   int64      `json:"amount_due"`
	Status      string     `json:"status"`
	DueDate     *string    `json:"due_date"`
	FinalizedAt *time.Time `json:"finalized_at"`
	PaidAt      *time.Time `json:"paid_at"`
}

var invoiceMetrics = map[string]string{
	InvoiceCreated: MInvoiceCreated, InvoiceFinalized: MInvoiceFinalized, InvoicePaid: MInvoicePaid,
	InvoiceVoided: MInvoiceVoided, InvoiceOverdue: MInvoiceOverdue, InvoiceUncollectible: MInvoiceUncollectible,
}

func parseDate(s string) (time.Time, bool) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return DayStart(t), true
	}
	return time.Time{}, false
}

func (a *Aggregator) invoice(ev Event) error {
	var d invoiceData
	if err := decode(ev, &d); err != nil {
		return err
	}
	if d.InvoiceID == "" {
		d.InvoiceID = ev.Subject
	}
	id, err := requireID(ev, "invoice_id", d.InvoiceID)
	if err != nil {
		return err
	}
	account, err := requireID(ev, "account_id", d.AccountID)
	if err != nil {
		return err
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	for f, v := range map[string]int64{"total": d.Total, "amount_due": d.AmountDue, "amount_paid": d.AmountPaid} {
		if err := nonNegative(ev, f, v); err != nil {
			return err
		}
	}
	var due time.Time
	if d.DueDate != nil && *d.DueDate != "" {
		var ok bool
		if due, ok = parseDate(*d.DueDate); !ok {
			return permanent(ev, "due_date %q is not a date", *d.DueDate)
		}
	}
	metric := invoiceMetrics[ev.Type]
	amount := d.Total
	if ev.Type == InvoiceOverdue || ev.Type == InvoiceUncollectible {
		amount = d.AmountDue
	}
	if err := a.Effects.add(ev.Time, cur, metric, "", account, 1, amount, everywhere); err != nil {
		return permanent(ev, "%v", err)
	}

	s := a.State
	inv := s.Invoices[id]
	if inv == nil {
		inv = &Invoice{}
		s.Invoices[id] = inv
	}
	if !ev.Time.Before(inv.UpdatedAt) {
		inv.AccountID, inv.Currency, inv.Total, inv.DueDate, inv.Status, inv.UpdatedAt =
			account, cur, d.Total, due, d.Status, ev.Time
	}
	finalized := ev.Time
	if d.FinalizedAt != nil && !d.FinalizedAt.IsZero() {
		finalized = Micro(*d.FinalizedAt)
	}
	switch ev.Type {
	case InvoiceFinalized:
		// The finalized event's amount_due is the receivable; it wins over
		// one guessed from a later event that arrived first.
		if inv.FinalizedAt.IsZero() || !inv.FinalizedAt.Before(finalized) {
			inv.FinalizedAt, inv.AmountDue = finalized, d.AmountDue
		}
	case InvoiceOverdue, InvoiceUncollectible, InvoicePaid:
		if inv.FinalizedAt.IsZero() {
			inv.FinalizedAt, inv.AmountDue = finalized, d.AmountDue+d.AmountPaid
			if ev.Type == InvoicePaid {
				inv.AmountDue = d.Total
			}
		}
	}
	switch ev.Type {
	case InvoicePaid, InvoiceVoided, InvoiceUncollectible:
		closed := ev.Time
		if ev.Type == InvoicePaid && d.PaidAt != nil && !d.PaidAt.IsZero() {
			closed = Micro(*d.PaidAt)
		}
		if inv.ClosedAt.IsZero() || closed.Before(inv.ClosedAt) {
			inv.ClosedAt = closed
		}
	}
	s.dirtyInvoices[id] = true
	return nil
}

type subscriptionData struct {
	SubscriptionID string `json:"subscription_id"`
	AccountID      string `json:"account_id"`
	Status         string `json:"status"`
	MRR            int64  `json:"mrr"`
	Currency       string `json:"currency"`
	Plan           struct {
		Currency string `json:"currency"`
	} `json:"plan"`
}

// paying says which subscription statuses count towards MRR (a trial does not).
var paying = map[string]bool{"active": true, "past_due": true}

func (a *Aggregator) subscription(ev Event) error {
	var d subscriptionData
	if err := decode(ev, &d); err != nil {
		return err
	}
	if d.SubscriptionID == "" {
		d.SubscriptionID = ev.Subject
	}
	id, err := requireID(ev, "subscription_id", d.SubscriptionID)
	if err != nil {
		return err
	}
	account, err := requireID(ev, "account_id", d.AccountID)
	if err != nil {
		return err
	}
	if d.Currency == "" {
		d.Currency = d.Plan.Currency
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	if err := nonNegative(ev, "mrr", d.MRR); err != nil {
		return err
	}
	add := func(c, metric string, count, amount int64) error {
		if err := a.Effects.add(ev.Time, c, metric, "", account, count, amount, everywhere); err != nil {
			return permanent(ev, "%v", err)
		}
		return nil
	}
	switch ev.Type {
	case SubscriptionCreated:
		if err := add(cur, MSubscriptionCreated, 1, 0); err != nil {
			return err
		}
	case SubscriptionCanceled:
		if err := add(cur, MSubscriptionCanceled, 1, 0); err != nil {
			return err
		}
		d.Status = "canceled"
	}
	a.Effects.touch(ev.Time)

	s := a.State
	sub := s.Subscriptions[id]
	if sub != nil && ev.Time.Before(sub.UpdatedAt) {
		return nil // older than what is known: no movement
	}
	effective := int64(0)
	if paying[d.Status] {
		effective = d.MRR
	}
	old, hadMRR := int64(0), false
	if sub != nil {
		old, hadMRR = sub.MRR, sub.HadMRR
		if sub.Currency != cur && old > 0 {
			// A switch of currency churns the old MRR and starts anew.
			if err := add(sub.Currency, MMRRChurned, 1, old); err != nil {
				return err
			}
			old = 0
		}
	}
	switch {
	case old == 0 && effective > 0 && hadMRR:
		err = add(cur, MMRRReactivation, 1, effective)
	case old == 0 && effective > 0:
		err = add(cur, MMRRNew, 1, effective)
	case old > 0 && effective == 0:
		err = add(cur, MMRRChurned, 1, old)
	case effective > old:
		err = add(cur, MMRRExpansion, 1, effective-old)
	case effective < old:
		err = add(cur, MMRRContraction, 1, old-effective)
	}
	if err != nil {
		return err
	}
	s.Subscriptions[id] = &Subscription{AccountID: account, Currency: cur, MRR: effective, Status: d.Status,
		HadMRR: hadMRR || effective > 0, UpdatedAt: ev.Time}
	s.dirtySubscriptions[id] = true
	return nil
}

type paymentData struct {
	PaymentID        string  `json:"payment_id"`
	AccountID        string  `json:"account_id"`
	InvoiceID        *string `json:"invoice_id"`
	Amount           int64   `json:"amount"`
	Currency         string  `json:"currency"`
	Gateway          string  `json:"gateway"`
	AmountCapturable int64   `json:"amount_capturable"`
	AmountCaptured   int64   `json:"amount_captured"`
	DeclineCode      *string `json:"decline_code"`
	FailureReason    *string `json:"failure_reason"`
}

func (a *Aggregator) payment(ev Event) error {
	var d paymentData
	if err := decode(ev, &d); err != nil {
		return err
	}
	if d.PaymentID == "" {
		d.PaymentID = ev.Subject
	}
	id, err := requireID(ev, "payment_id", d.PaymentID)
	if err != nil {
		return err
	}
	account, err := requireID(ev, "account_id", d.AccountID)
	if err != nil {
		return err
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	if err := nonNegative(ev, "amount", d.Amount); err != nil {
		return err
	}
	gw := gatewayName(d.Gateway)
	add := func(metric, dim string, amount int64) error {
		if err := a.Effects.add(ev.Time, cur, metric, dim, account, 1, amount, everywhere); err != nil {
			return permanent(ev, "%v", err)
		}
		return nil
	}
	switch ev.Type {
	case PaymentCreated:
		err = add(MPaymentCreated, gw, d.Amount)
	case PaymentAuthorized:
		amount := d.AmountCapturable
		if amount <= 0 {
			amount = d.Amount
		}
		err = add(MPaymentAuthorized, gw, amount)
	case PaymentCaptured:
		// amount is this capture; amount_captured the total so far, so
		// the first capture of a payment is the one where they agree.
		if err = add(MPaymentCaptured, gw, d.Amount); err == nil && (d.AmountCaptured == d.Amount || d.AmountCaptured == 0) {
			err = add(MPaymentSucceeded, gw, d.Amount)
		}
		if err == nil && (a.Effects.Keep == nil || a.Effects.Keep(ev.Time)) {
			a.Effects.Recon = append(a.Effects.Recon, ReconRow{
				Source: ev.Source, EventID: ev.ID, Side: "gateway", Kind: "capture", PaymentID: id,
				AccountID: account, Gateway: gw, Currency: cur, Amount: d.Amount, Status: "succeeded", Ref: ev.ID, At: ev.Time,
			})
			if inv := canonicalID(str(d.InvoiceID)); inv != "" {
				a.Effects.InvoicePayments = append(a.Effects.InvoicePayments, InvoicePayment{
					Source: ev.Source, EventID: ev.ID, InvoiceID: inv, At: ev.Time, Amount: d.Amount,
				})
			}
		}
	case PaymentFailed:
		code := str(d.DeclineCode)
		if code == "" {
			code = str(d.FailureReason)
		}
		if code == "" {
			code = "unknown"
		}
		if err = add(MPaymentFailed, gw, d.Amount); err == nil {
			err = add(MPaymentDecline, gw+"|"+code, d.Amount)
		}
	case PaymentCanceled:
		err = add(MPaymentCanceled, gw, d.Amount)
	}
	if err != nil {
		return err
	}
	p := Payment{AccountID: account, Gateway: gw, Currency: cur}
	if old := a.State.Payments[id]; old == nil || *old != p {
		a.State.Payments[id] = &p
		a.State.dirtyPayments[id] = true
	}
	return nil
}

type refundData struct {
	RefundID  string `json:"refund_id"`
	PaymentID string `json:"payment_id"`
	AccountID string `json:"account_id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Gateway   string `json:"gateway"`
	Reversed  bool   `json:"reversed"`
}

func (a *Aggregator) refund(ev Event) error {
	var d refundData
	if err := decode(ev, &d); err != nil {
		return err
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	if err := nonNegative(ev, "amount", d.Amount); err != nil {
		return err
	}
	payment := canonicalID(d.PaymentID)
	account := canonicalID(d.AccountID)
	gw := gatewayName(d.Gateway)
	if p := a.State.Payments[payment]; p != nil {
		if account == "" {
			account = p.AccountID
		}
		if d.Gateway == "" {
			gw = p.Gateway
		}
	}
	rid := d.RefundID
	add := func(metric string, at time.Time, count, amount int64) error {
		if err := a.Effects.add(at, cur, metric, gw, account, count, amount, everywhere); err != nil {
			return permanent(ev, "%v", err)
		}
		return nil
	}
	// reversed counts the money of a refund that failed after it
	// succeeded as come back, at the failure (at, by the event src/id),
	// with its gateway-side reconciliation entry: the ledger's
	// refund_reversal posting answers it.
	reversed := func(at time.Time, src, id string) error {
		if err := add(MRefundReversed, at, 1, d.Amount); err != nil {
			return err
		}
		if a.Effects.Keep == nil || a.Effects.Keep(at) {
			a.Effects.Recon = append(a.Effects.Recon, ReconRow{
				Source: src, EventID: id, Side: "gateway", Kind: "refund_reversal", PaymentID: payment,
				AccountID: account, Gateway: gw, Currency: cur, Amount: d.Amount, Status: "reversed", Ref: rid, At: at,
			})
		}
		return nil
	}
	var st *Refund
	if rid != "" {
		if st = a.State.Refunds[rid]; st == nil {
			st = &Refund{PaymentID: payment}
			a.State.Refunds[rid] = st
		}
	}
	switch {
	case ev.Type == RefundSucceeded:
		if err := add(MRefundSucceeded, ev.Time, 1, d.Amount); err != nil {
			return err
		}
		if a.Effects.Keep == nil || a.Effects.Keep(ev.Time) {
			ref := rid
			if ref == "" {
				ref = ev.ID
			}
			a.Effects.Recon = append(a.Effects.Recon, ReconRow{
				Source: ev.Source, EventID: ev.ID, Side: "gateway", Kind: "refund", PaymentID: payment,
				AccountID: account, Gateway: gw, Currency: cur, Amount: d.Amount, Status: "succeeded", Ref: ref, At: ev.Time,
			})
		}
		if st == nil || !st.SucceededAt.IsZero() {
			return nil
		}
		st.SucceededAt = ev.Time
		a.State.dirtyRefunds[rid] = true
		if !st.FailedAt.IsZero() {
			// Its failure arrived first and was counted as a refund that
			// failed outright; it reversed this success.
			if err := add(MRefundFailed, st.FailedAt, -1, -d.Amount); err != nil {
				return err
			}
			return reversed(st.FailedAt, st.FailedSource, st.FailedID)
		}
	case st != nil && !st.SucceededAt.IsZero() && st.FailedAt.IsZero():
		// capture-payment's reverseRefund: the refund had succeeded.
		st.FailedAt, st.FailedSource, st.FailedID = ev.Time, ev.Source, ev.ID
		a.State.dirtyRefunds[rid] = true
		return reversed(ev.Time, ev.Source, ev.ID)
	case st != nil && d.Reversed && st.FailedAt.IsZero():
		// The refund's owner says it had succeeded, though its success
		// came under another id (a refund capture-payment took out of a
		// gateway's running total, announced as part of that total's
		// refund) or comes later: its money came back. A success of this
		// id delivered later is counted, and it nets against this.
		st.FailedAt, st.FailedSource, st.FailedID = ev.Time, ev.Source, ev.ID
		st.SucceededAt = ev.Time
		a.State.dirtyRefunds[rid] = true
		return reversed(ev.Time, ev.Source, ev.ID)
	default:
		if err := add(MRefundFailed, ev.Time, 1, d.Amount); err != nil {
			return err
		}
		if st != nil && st.FailedAt.IsZero() {
			st.FailedAt, st.FailedSource, st.FailedID = ev.Time, ev.Source, ev.ID
			a.State.dirtyRefunds[rid] = true
		}
	}
	return nil
}

type gatewayUpdateData struct {
	Gateway          string  `json:"gateway"`
	ObjectType       string  `json:"object_type"`
	GatewayObjectID  string  `json:"gateway_object_id"`
	GatewayPaymentID string  `json:"gateway_payment_id"`
	PaymentID        *string `json:"payment_id"`
	Status           string  `json:"status"`
	Amount           int64   `json:"amount"`
	Currency         string  `json:"currency"`
}

// disputeKey names a dispute: by its payment when known (handle-webhook's
// gateway_updated and capture-payment's payment.disputed both report the
// same dispute, and each must count once), else by the gateway's objects.
func disputeKey(gw, objectType, objectID, gatewayPaymentID, paymentID string) DisputeKey {
	switch {
	case canonicalID(paymentID) != "":
		return DisputeKey{gw, "payment:" + canonicalID(paymentID)}
	case objectType == "dispute" && objectID != "":
		return DisputeKey{gw, objectID}
	case gatewayPaymentID != "":
		return DisputeKey{gw, "gateway_payment:" + gatewayPaymentID}
	}
	return DisputeKey{gw, "object:" + objectID}
}

// gatewayUpdate counts disputes reported by handle-webhook.
func (a *Aggregator) gatewayUpdate(ev Event) error {
	var d gatewayUpdateData
	if err := decode(ev, &d); err != nil {
		return err
	}
	if d.ObjectType != "dispute" && d.Status != "disputed" {
		return nil
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	if err := nonNegative(ev, "amount", d.Amount); err != nil {
		return err
	}
	gw := gatewayName(d.Gateway)
	key := disputeKey(gw, d.ObjectType, d.GatewayObjectID, d.GatewayPaymentID, str(d.PaymentID))
	return a.dispute(ev, key, cur, canonicalID(str(d.PaymentID)), "", d.Amount)
}

// paymentDisputed counts disputes reported by capture-payment.
func (a *Aggregator) paymentDisputed(ev Event) error {
	var d paymentData
	if err := decode(ev, &d); err != nil {
		return err
	}
	if d.PaymentID == "" {
		d.PaymentID = ev.Subject
	}
	id, err := requireID(ev, "payment_id", d.PaymentID)
	if err != nil {
		return err
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	amount := d.AmountCaptured
	if amount <= 0 {
		amount = d.Amount
	}
	if err := nonNegative(ev, "amount", amount); err != nil {
		return err
	}
	return a.dispute(ev, disputeKey(gatewayName(d.Gateway), "", "", "", id), cur, id, canonicalID(d.AccountID), amount)
}

// dispute counts a dispute at its first sighting.
func (a *Aggregator) dispute(ev Event, key DisputeKey, cur, payment, account string, amount int64) error {
	if a.State.Disputes[key] != nil {
		return nil
	}
	if p := a.State.Payments[payment]; p != nil && account == "" {
		account = p.AccountID
	}
	if err := a.Effects.add(ev.Time, cur, MDisputeOpened, key.Gateway, account, 1, amount, everywhere); err != nil {
		return permanent(ev, "%v", err)
	}
	a.State.Disputes[key] = &Dispute{PaymentID: payment, Currency: cur, Amount: amount, OpenedAt: ev.Time}
	a.State.dirtyDisputes[key] = true
	return nil
}

type unappliedData struct {
	PaymentID     string `json:"payment_id"`
	InvoiceID     string `json:"invoice_id"`
	AccountID     string `json:"account_id"`
	UserID        string `json:"user_id"`
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	Reason        string `json:"reason"`
	InvoiceStatus string `json:"invoice_status"`
}

// unapplied counts money a payment brought that its invoice did not need,
// by reason, for the account it was credited to, and keeps a row of it for
// the reconciliation. Only generate-invoice decides what an invoice needs:
// the same type from any other source is refused (parked), never counted.
func (a *Aggregator) unapplied(ev Event) error {
	if ev.Source != UnappliedSource {
		return permanent(ev, "only %s reports unapplied payments", UnappliedSource)
	}
	var d unappliedData
	if err := decode(ev, &d); err != nil {
		return err
	}
	if d.PaymentID == "" {
		d.PaymentID = ev.Subject
	}
	payment, err := requireID(ev, "payment_id", d.PaymentID)
	if err != nil {
		return err
	}
	invoice, err := requireID(ev, "invoice_id", d.InvoiceID)
	if err != nil {
		return err
	}
	account, err := requireID(ev, "account_id", d.AccountID)
	if err != nil {
		return err
	}
	cur, err := currency(ev, d.Currency)
	if err != nil {
		return err
	}
	if err := nonNegative(ev, "amount", d.Amount); err != nil {
		return err
	}
	// A reason this version does not know yet is still money: counted
	// under its own name.
	reason := strings.TrimSpace(strings.ToLower(d.Reason))
	if reason == "" {
		reason = "unknown"
	}
	if err := a.Effects.add(ev.Time, cur, MPaymentUnapplied, reason, account, 1, d.Amount, everywhere); err != nil {
		return permanent(ev, "%v", err)
	}
	if a.Effects.Keep == nil || a.Effects.Keep(ev.Time) {
		a.Effects.Unapplied = append(a.Effects.Unapplied, UnappliedRow{
			Source: ev.Source, EventID: ev.ID, PaymentID: payment, InvoiceID: invoice, AccountID: account,
			UserID: canonicalID(d.UserID), Currency: cur, Amount: d.Amount, Reason: reason,
			InvoiceStatus: d.InvoiceStatus, At: ev.Time,
		})
	}
	return nil
}
