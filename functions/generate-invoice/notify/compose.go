package notify

import (
	"bytes"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/render"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/money"
)

// Sender is who the emails are from.
type Sender struct {
	// From is the From address ("Acme Billing <billing@acme.example>").
	From string
}

// Address parses From.
func (s Sender) Address() (*mail.Address, error) {
	a, err := mail.ParseAddress(s.From)
	if err != nil {
		return nil, fmt.Errorf("EMAIL_FROM %q is not an address: %w", s.From, err)
	}
	return a, nil
}

// Domain is the From address's domain: the right side of every Message-ID.
func (s Sender) Domain() string {
	a, err := s.Address()
	if err != nil {
		return "billfn.invalid"
	}
	_, d, _ := strings.Cut(a.Address, "@")
	return d
}

// Name is the sender's display name ("billfn" when it has none).
func (s Sender) Name() string {
	if a, err := s.Address(); err == nil && a.Name != "" {
		return a.Name
	}
	return "billfn"
}

// Email is one composed email, ready for SMTP.
type Email struct {
	From, To, Subject string
	Text, HTML        string
	MessageID         string // without angle brackets
	ListUnsubscribe   string // the header's value
	Attachments       []Attachment
}

// Attachment is a file sent with an email.
type Attachment struct {
	Name, ContentType string
	Data              []byte
}

// view is what an email shows (email.go writes it).
type view struct {
	Kind, Company, Greeting, Number string
	Total, AmountDue, AmountPaid    string
	DueDate, IssueDate              string
	Reason                          string
	Attempt                         int
	Lines                           []viewLine
	Memo                            string
	Attached, NothingDue, Renewal   bool
	Period                          string
	// A subscription's notice: its plan (the new one, or the one that
	// ended), the plan before a change, and when it ended.
	Plan, PlanPrice             string
	PreviousPlan, PreviousPrice string
	EndedAt                     string
	// An operator's notice of a disabled webhook endpoint.
	Endpoint *endpointView
}

type endpointView struct {
	ID, URL, Reason, DisabledAt, FailingSince, DeliveryID, EventType, LastAnswer string
	Attempts                                                                     int
}

type viewLine struct{ Description, Quantity, Amount string }

// Subject says what the email is.
func Subject(kind string, inv *invoicing.Invoice, req events.NotificationRequested, company string) string {
	loc := inv.Customer.Locale
	num := number(inv)
	due := render.FormatMoneyIn(req.AmountDue, inv.Currency, loc, false)
	switch kind {
	case events.NotifyInvoiceFinalized:
		if inv.Status == invoicing.StatusPaid || req.AmountDue == 0 {
			return fmt.Sprintf("Invoice %s from %s (nothing to pay)", num, company)
		}
		if inv.BillingReason == invoicing.ReasonSubscriptionCycle {
			return fmt.Sprintf("Your subscription renewed: invoice %s, %s due %s", num, due, dueDate(req))
		}
		return fmt.Sprintf("Invoice %s from %s: %s due %s", num, company, due, dueDate(req))
	case events.NotifyInvoicePaid:
		return fmt.Sprintf("Receipt for invoice %s: %s paid", num, render.FormatMoneyIn(inv.Total, inv.Currency, loc, false))
	case events.NotifyPaymentFailed:
		return fmt.Sprintf("Payment failed for invoice %s: %s still due", num, due)
	case events.NotifyInvoiceOverdue:
		return fmt.Sprintf("Invoice %s is overdue: %s was due %s", num, due, dueDate(req))
	case events.NotifyInvoiceReminder:
		return fmt.Sprintf("Reminder %d: invoice %s is overdue, %s due", req.Attempt, num, due)
	}
	return fmt.Sprintf("About invoice %s", num)
}

func number(inv *invoicing.Invoice) string {
	if inv.Number != nil {
		return *inv.Number
	}
	return "DRAFT"
}

func dueDate(req events.NotificationRequested) string {
	if req.DueDate != nil {
		return *req.DueDate
	}
	return "on receipt"
}

// attaches reports whether a kind carries the invoice PDF: the invoice
// itself and the reminders that ask for its payment.
func attaches(kind string) bool {
	return kind == events.NotifyInvoiceFinalized || kind == events.NotifyInvoiceOverdue || kind == events.NotifyInvoiceReminder
}

// Compose writes n's email about inv (the invoice as it is now, with its
// lines): subject, plain text and HTML (email.go), the PDF of the
// invoice attached for the kinds that ask for payment.
func Compose(n *Notification, inv *invoicing.Invoice, from Sender) (*Email, error) {
	if !Kinds[n.Kind] || AboutSubscription(n.Kind) {
		return nil, fmt.Errorf("notification kind %q has no email", n.Kind)
	}
	req := n.Data
	loc := inv.Customer.Locale
	company := from.Name()
	v := view{Kind: n.Kind, Company: company, Greeting: greeting(inv), Number: number(inv),
		Total:      render.FormatMoneyIn(inv.Total, inv.Currency, loc, false),
		AmountDue:  render.FormatMoneyIn(req.AmountDue, inv.Currency, loc, false),
		AmountPaid: render.FormatMoneyIn(max(req.AmountPaid, inv.AmountPaid), inv.Currency, loc, false),
		DueDate:    dueDate(req), Reason: oneLine(req.Reason), Attempt: req.Attempt, Memo: inv.Memo, Attached: attaches(n.Kind),
		NothingDue: req.AmountDue == 0, Renewal: inv.BillingReason == invoicing.ReasonSubscriptionCycle}
	if inv.FinalizedAt != nil {
		v.IssueDate = inv.FinalizedAt.UTC().Format(time.DateOnly)
	}
	if inv.PeriodStart != nil && inv.PeriodEnd != nil {
		v.Period = inv.PeriodStart.UTC().Format(time.DateOnly) + " – " + inv.PeriodEnd.UTC().Format(time.DateOnly)
	}
	for _, l := range inv.Lines {
		v.Lines = append(v.Lines, viewLine{Description: oneLine(l.Description), Quantity: l.Quantity.String(),
			Amount: render.FormatMoneyIn(l.Total, inv.Currency, loc, false)})
	}
	e, err := build(n, v, Subject(n.Kind, inv, req, company), from)
	if err != nil {
		return nil, err
	}
	if v.Attached {
		var pdf bytes.Buffer
		if err := render.PDF(&pdf, inv); err != nil {
			return nil, fmt.Errorf("the invoice PDF: %w", err)
		}
		e.Attachments = append(e.Attachments, Attachment{Name: number(inv) + ".pdf", ContentType: "application/pdf", Data: pdf.Bytes()})
	}
	return e, nil
}

func greeting(inv *invoicing.Invoice) string { return greet(inv.Customer) }

func greet(c invoicing.Customer) string {
	if n := strings.TrimSpace(oneLine(c.Name)); n != "" {
		return "Hello " + n + ","
	}
	return "Hello,"
}

// PlanPrice writes what a plan bills, in the customer's locale: "$29.00
// per month", "€120.00 every 3 months".
func PlanPrice(p *events.Plan, locale string) string {
	if p == nil {
		return ""
	}
	amount := render.FormatMoneyIn(p.Amount, money.Currency(p.Currency), locale, false)
	if p.IntervalCount <= 1 {
		return amount + " per " + p.Interval
	}
	return fmt.Sprintf("%s every %d %ss", amount, p.IntervalCount, p.Interval)
}

func planName(p *events.Plan) string {
	if p == nil || strings.TrimSpace(oneLine(p.Name)) == "" {
		return "your plan"
	}
	return oneLine(p.Name)
}

// oneLine is text a merchant may have taken from its customer (a name, a
// line's description, a plan's name) as an email shows it, on the line of
// an amount: its line breaks and other control characters become spaces
// (a description's "\n  Total: $0.01" wrote a line of its own among the
// invoice's lines), and the bidi embeddings, overrides and isolates go,
// which reorder the text after them to the end of its line: the amount
// of an invoice line in the plain text part, the price in a subject
// ("$12.50" read "05.21$"). Right-to-left letters stay; they reorder
// only themselves.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
			return -1
		case unicode.IsControl(r), r == '\u2028', r == '\u2029':
			return ' '
		}
		return r
	}, s)
}

// endedOn is the date a canceled subscription ended.
func endedOn(req events.NotificationRequested) string {
	if req.EndedAt == nil {
		return ""
	}
	return req.EndedAt.UTC().Format(time.DateOnly)
}

// SubscriptionSubject says what a subscription's email is.
func SubscriptionSubject(kind string, sub *invoicing.Subscription, req events.NotificationRequested) string {
	loc := sub.Customer.Locale
	switch kind {
	case events.NotifySubscriptionChanged:
		return fmt.Sprintf("Your subscription changed: %s → %s, %s", planName(req.PreviousPlan), planName(req.Plan), PlanPrice(req.Plan, loc))
	case events.NotifySubscriptionCanceled:
		if d := endedOn(req); d != "" {
			return fmt.Sprintf("Your %s subscription ended on %s", planName(req.Plan), d)
		}
		return fmt.Sprintf("Your %s subscription ended", planName(req.Plan))
	}
	return "About your subscription"
}

// ComposeSubscription writes n's email about sub (a subscription's
// notice: subscription_changed, subscription_canceled) from the request's
// data (the plans as they were at the change) and the subscription's
// customer: subject, plain text and HTML (email.go).
func ComposeSubscription(n *Notification, sub *invoicing.Subscription, from Sender) (*Email, error) {
	if !Kinds[n.Kind] || !AboutSubscription(n.Kind) {
		return nil, fmt.Errorf("notification kind %q is not about a subscription", n.Kind)
	}
	req := n.Data
	loc := sub.Customer.Locale
	v := view{Kind: n.Kind, Company: from.Name(), Greeting: greet(sub.Customer),
		Plan: planName(req.Plan), PlanPrice: PlanPrice(req.Plan, loc),
		PreviousPlan: planName(req.PreviousPlan), PreviousPrice: PlanPrice(req.PreviousPlan, loc), EndedAt: endedOn(req)}
	return build(n, v, SubscriptionSubject(n.Kind, sub, req), from)
}

// build writes v's email, its HTML and plain text parts.
func build(n *Notification, v view, subject string, from Sender) (*Email, error) {
	html, text := renderEmail(v)
	addr, err := from.Address()
	if err != nil {
		return nil, err
	}
	return &Email{From: from.From, To: n.Recipient, Subject: subject,
		Text: text, HTML: html, MessageID: n.MessageID,
		// Billing emails are transactional, but a reader's client still
		// offers "unsubscribe": it writes to the sender, who decides.
		ListUnsubscribe: "<mailto:" + addr.Address + "?subject=" + url.PathEscape("unsubscribe "+n.AccountID) + ">"}, nil
}

// EndpointDisabledSubject says what an operator's notice is.
func EndpointDisabledSubject(d events.WebhookEndpointDisabled) string {
	return "Webhook endpoint disabled: " + d.URL
}

// ComposeEndpointDisabled writes the operator's notice n of a webhook
// endpoint disabled (billfn.webhook_endpoint.disabled): which endpoint,
// why, since when it failed, and how to turn it back on.
func ComposeEndpointDisabled(n *Notification, from Sender) (*Email, error) {
	if n.Endpoint == nil {
		return nil, fmt.Errorf("notification %s (%s) carries no endpoint", n.ID, n.Kind)
	}
	d := n.Endpoint
	last := "no answer"
	switch {
	case d.LastStatus != nil:
		last = fmt.Sprintf("HTTP %d", *d.LastStatus)
	case d.LastError != nil:
		last = *d.LastError
	}
	v := view{Kind: n.Kind, Company: from.Name(), Greeting: "Hello,", Endpoint: &endpointView{ID: d.EndpointID, URL: d.URL,
		Reason: d.Reason, DisabledAt: d.DisabledAt.UTC().Format(time.RFC3339), FailingSince: d.FailingSince.UTC().Format(time.RFC3339),
		DeliveryID: d.DeliveryID, EventType: d.EventType, LastAnswer: last, Attempts: d.Attempts}}
	return build(n, v, EndpointDisabledSubject(*d), from)
}
