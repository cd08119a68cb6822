// Package notify is generate-invoice's customer email: the delivery log's
// notification (queued, sent, failed, suppressed), the composition of each
// kind of email in Go (email.go: an HTML and a plain-text part,
// amounts in the invoice's currency and the customer's locale, the invoice
// PDF attached where it matters) and its delivery through SMTP
// (github.com/wneessen/go-mail), with the server's answer classified as
// temporary (4xx, or no answer: retried) or permanent (5xx: parked).
//
// It knows nothing of HTTP routes nor SQL: the api package wires it, the
// store package keeps the log.
package notify

import (
	"encoding/json"
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
)

// Statuses of a notification in the delivery log.
const (
	Queued     = "queued"     // waiting for its next attempt (next_attempt_at)
	Sent       = "sent"       // the SMTP server accepted it
	Failed     = "failed"     // parked: a permanent (5xx) answer; a resend queues a new one
	Suppressed = "suppressed" // not sent, on purpose (reason)
)

// Reasons a notification is suppressed or failed.
const (
	ReasonNoEmail          = "no_email"               // the invoice's customer has no email address
	ReasonUnknownKind      = "unknown_kind"           // a kind this version cannot write
	ReasonPermanent        = "smtp_permanent_failure" // a 5xx answer
	ReasonRetriesExhausted = "smtp_retries_exhausted" // EMAIL_MAX_ATTEMPTS temporary failures
	ReasonRejected         = "message_rejected"       // the email could not be composed or built (an address the server would refuse)
	ReasonNoOperator       = "no_operator_email"      // EMAIL_OPERATOR is not set: the merchant's operator has no address
	ReasonCustomerMade     = "customer_made_invoice"  // the invoice's customer made it: its address is the customer's word, not the merchant's
)

// KindEndpointDisabled is the operator's notice of a webhook endpoint
// handle-webhook disabled (billfn.webhook_endpoint.disabled): to the
// merchant's operator (EMAIL_OPERATOR), not to a customer.
const KindEndpointDisabled = "webhook_endpoint_disabled"

// Kinds this version writes (events.Notify…).
var Kinds = map[string]bool{
	events.NotifyInvoiceFinalized:     true,
	events.NotifyInvoicePaid:          true,
	events.NotifyPaymentFailed:        true,
	events.NotifyInvoiceOverdue:       true,
	events.NotifyInvoiceReminder:      true,
	events.NotifySubscriptionChanged:  true,
	events.NotifySubscriptionCanceled: true,
}

// AboutSubscription reports whether a kind is about a subscription (it
// names no invoice).
func AboutSubscription(kind string) bool {
	return kind == events.NotifySubscriptionChanged || kind == events.NotifySubscriptionCanceled
}

// CodeNotResendable: a resend of a notification that was suppressed (no
// address to send to) or is still queued.
const CodeNotResendable apperr.Code = "notification_not_resendable"

// Notification is one email of the delivery log, as GET /notifications
// shows it.
type Notification struct {
	Object         string                       `json:"object"`
	ID             string                       `json:"id"`
	Kind           string                       `json:"kind"`
	InvoiceID      *string                      `json:"invoice_id"`          // the invoice it is about, or
	SubscriptionID *string                      `json:"subscription_id"`     // the subscription (subscription_changed, subscription_canceled)
	EndpointID     *string                      `json:"webhook_endpoint_id"` // the webhook endpoint (webhook_endpoint_disabled)
	AccountID      string                       `json:"account_id"`
	UserID         string                       `json:"user_id"`
	Recipient      string                       `json:"recipient"`
	Status         string                       `json:"status"`
	Reason         *string                      `json:"reason"`
	Subject        string                       `json:"subject"`
	MessageID      string                       `json:"message_id"`
	Attempts       int                          `json:"attempts"`
	NextAttemptAt  *time.Time                   `json:"next_attempt_at"`
	SMTPCode       *int                         `json:"smtp_code"`
	SMTPResponse   *string                      `json:"smtp_response"`
	ResendOf       *string                      `json:"resend_of"`
	Data           events.NotificationRequested `json:"data"`
	// Endpoint is the data of an operator's notice (webhook_endpoint_disabled),
	// stored as the row's data instead of Data.
	Endpoint    *events.WebhookEndpointDisabled `json:"webhook_endpoint,omitempty"`
	EventSource string                          `json:"-"`
	EventID     string                          `json:"-"`
	CreatedAt   time.Time                       `json:"created_at"`
	UpdatedAt   time.Time                       `json:"updated_at"`
	SentAt      *time.Time                      `json:"sent_at"`
}

// About names what the notification is about, for logs:
// "invoice <id>" or "subscription <id>".
func (n *Notification) About() string {
	switch {
	case n.InvoiceID != nil:
		return "invoice " + *n.InvoiceID
	case n.SubscriptionID != nil:
		return "subscription " + *n.SubscriptionID
	case n.EndpointID != nil:
		return "webhook endpoint " + *n.EndpointID
	}
	return ""
}

// DataJSON is the request's data as stored: the endpoint's notice for an
// operator's notice.
func (n *Notification) DataJSON() []byte {
	var v any = n.Data
	if n.Endpoint != nil {
		v = n.Endpoint
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // a plain struct always encodes
	}
	return b
}

// New is the log's row for a requested notification: queued for now, or
// suppressed with its reason when it cannot be sent (no address, a kind
// this version does not write). recipient is the invoice's (or the
// subscription's) customer email.
func New(id, source, eventID string, req events.NotificationRequested, recipient, domain string, now time.Time) *Notification {
	n := &Notification{Object: "notification", ID: id, Kind: req.Kind, AccountID: req.AccountID,
		UserID: req.UserID, Recipient: recipient, Data: req, EventSource: source, EventID: eventID,
		MessageID: id + "@" + domain, CreatedAt: now, UpdatedAt: now}
	if req.InvoiceID != "" {
		n.InvoiceID = &req.InvoiceID
	}
	if req.SubscriptionID != "" {
		n.SubscriptionID = &req.SubscriptionID
	}
	switch {
	case !Kinds[req.Kind]:
		n.suppress(ReasonUnknownKind)
	case recipient == "":
		n.suppress(ReasonNoEmail)
	default:
		n.Status, n.NextAttemptAt = Queued, &now
	}
	return n
}

// NewEndpointDisabled is the log's row for a billfn.webhook_endpoint.disabled:
// the operator's notice, queued for now to operator (EMAIL_OPERATOR), or
// suppressed when no operator address is configured. It is about the
// endpoint, no account nor customer.
func NewEndpointDisabled(id, source, eventID string, d events.WebhookEndpointDisabled, operator, domain string, now time.Time) *Notification {
	n := &Notification{Object: "notification", ID: id, Kind: KindEndpointDisabled, EndpointID: &d.EndpointID, Recipient: operator,
		Data: events.NotificationRequested{Kind: KindEndpointDisabled}, Endpoint: &d, EventSource: source, EventID: eventID,
		MessageID: id + "@" + domain, Subject: EndpointDisabledSubject(d), CreatedAt: now, UpdatedAt: now}
	if operator == "" {
		n.suppress(ReasonNoOperator)
	} else {
		n.Status, n.NextAttemptAt = Queued, &now
	}
	return n
}

// Withhold suppresses a notification New queued, with reason.
func (n *Notification) Withhold(reason string) {
	if n.Status == Queued {
		n.suppress(reason)
	}
}

func (n *Notification) suppress(reason string) {
	n.Status, n.Reason, n.NextAttemptAt = Suppressed, &reason, nil
}

// Resend is a new notification sending n again (POST
// /notifications/{id}/resend), to the same recipient, with its own
// Message-ID. Only a sent or failed notification can be sent again.
func Resend(n *Notification, id, domain string, now time.Time) (*Notification, error) {
	if n.Status != Sent && n.Status != Failed {
		return nil, apperr.New(CodeNotResendable, "notification %s is %s; only a sent or failed one can be sent again", n.ID, n.Status)
	}
	var r *Notification
	if n.Endpoint != nil {
		r = NewEndpointDisabled(id, "billfn.resend", id, *n.Endpoint, n.Recipient, domain, now)
	} else {
		r = New(id, "billfn.resend", id, n.Data, n.Recipient, domain, now)
	}
	r.ResendOf = &n.ID
	return r, nil
}

// Backoff is the wait before attempt n+1 after a temporary failure of
// attempt n (n ≥ 1): 1 min, 2, 4, … doubling, at most 6 h.
func Backoff(n int) time.Duration {
	d := time.Minute
	for i := 1; i < n && d < 6*time.Hour; i++ {
		d *= 2
	}
	return min(d, 6*time.Hour)
}

// Outcome is what an attempt's SMTP exchange said.
type Outcome struct {
	Code      int    // the server's reply code (250 when accepted; 0 without an answer)
	Response  string // the server's reply text, or the error
	Temporary bool   // worth retrying: a 4xx reply, or no reply at all (connection refused, timeout)
}

// Record applies an attempt's outcome: sent, queued again with backoff
// (temporary), or failed (permanent). maxAttempts bounds the retries of
// temporary failures (then it is failed too).
func (n *Notification) Record(o Outcome, sent bool, now time.Time, maxAttempts int) {
	n.UpdatedAt = now
	code, resp := o.Code, truncate(o.Response, 1000)
	n.SMTPCode, n.SMTPResponse = &code, &resp
	switch {
	case sent:
		n.Status, n.SentAt, n.NextAttemptAt, n.Reason = Sent, &now, nil, nil
	case o.Temporary && n.Attempts < maxAttempts:
		next := now.Add(Backoff(n.Attempts))
		n.Status, n.NextAttemptAt = Queued, &next
	default:
		reason := ReasonPermanent
		switch {
		case o.Temporary:
			reason = ReasonRetriesExhausted
		case o.Code == 0:
			reason = ReasonRejected // never reached a server: it could not be built
		}
		n.Status, n.NextAttemptAt, n.Reason = Failed, nil, &reason
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
