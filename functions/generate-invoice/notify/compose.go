package notify

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"net/mail"
	"net/url"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/render"
	"github.com/billfn/billfn/shared/events"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var (
	htmlTmpl = htmltemplate.Must(htmltemplate.New("email.html.tmpl").ParseFS(templateFS, "templates/email.html.tmpl"))
	textTmpl = texttemplate.Must(texttemplate.New("email.txt.tmpl").ParseFS(templateFS, "templates/email.txt.tmpl"))
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

// view is what the templates see.
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
// lines): subject, plain text and HTML from the templates, the PDF of the
// invoice attached for the kinds that ask for payment.
func Compose(n *Notification, inv *invoicing.Invoice, from Sender) (*Email, error) {
	if !Kinds[n.Kind] {
		return nil, fmt.Errorf("notification kind %q has no template", n.Kind)
	}
	req := n.Data
	loc := inv.Customer.Locale
	company := from.Name()
	v := view{Kind: n.Kind, Company: company, Greeting: greeting(inv), Number: number(inv),
		Total:      render.FormatMoneyIn(inv.Total, inv.Currency, loc, false),
		AmountDue:  render.FormatMoneyIn(req.AmountDue, inv.Currency, loc, false),
		AmountPaid: render.FormatMoneyIn(max(req.AmountPaid, inv.AmountPaid), inv.Currency, loc, false),
		DueDate:    dueDate(req), Reason: req.Reason, Attempt: req.Attempt, Memo: inv.Memo, Attached: attaches(n.Kind),
		NothingDue: req.AmountDue == 0, Renewal: inv.BillingReason == invoicing.ReasonSubscriptionCycle}
	if inv.FinalizedAt != nil {
		v.IssueDate = inv.FinalizedAt.UTC().Format(time.DateOnly)
	}
	if inv.PeriodStart != nil && inv.PeriodEnd != nil {
		v.Period = inv.PeriodStart.UTC().Format(time.DateOnly) + " – " + inv.PeriodEnd.UTC().Format(time.DateOnly)
	}
	for _, l := range inv.Lines {
		v.Lines = append(v.Lines, viewLine{Description: l.Description, Quantity: l.Quantity.String(),
			Amount: render.FormatMoneyIn(l.Total, inv.Currency, loc, false)})
	}
	var html, text bytes.Buffer
	if err := htmlTmpl.Execute(&html, v); err != nil {
		return nil, err
	}
	if err := textTmpl.Execute(&text, v); err != nil {
		return nil, err
	}
	addr, err := from.Address()
	if err != nil {
		return nil, err
	}
	e := &Email{From: from.From, To: n.Recipient, Subject: Subject(n.Kind, inv, req, company),
		Text: text.String(), HTML: html.String(), MessageID: n.MessageID,
		// Billing emails are transactional, but a reader's client still
		// offers "unsubscribe": it writes to the sender, who decides.
		ListUnsubscribe: "<mailto:" + addr.Address + "?subject=" + url.PathEscape("unsubscribe "+n.AccountID) + ">"}
	if v.Attached {
		var pdf bytes.Buffer
		if err := render.PDF(&pdf, inv); err != nil {
			return nil, fmt.Errorf("the invoice PDF: %w", err)
		}
		e.Attachments = append(e.Attachments, Attachment{Name: number(inv) + ".pdf", ContentType: "application/pdf", Data: pdf.Bytes()})
	}
	return e, nil
}

func greeting(inv *invoicing.Invoice) string {
	if n := strings.TrimSpace(inv.Customer.Name); n != "" {
		return "Hello " + n + ","
	}
	return "Hello,"
}
