package notify

import (
	"fmt"
	"strings"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/htmlesc"
)

// The emails are written in Go: until issue 20 they were html/template and
// text/template, which link the template engine (see shared/htmlesc). Each
// email is the same as the templates wrote it (testdata/*.golden, written
// by them): what the HTML part shows is escaped, the plain text part is
// the values as they are.

// renderEmail writes v's email: its HTML part and its plain text part.
func renderEmail(v view) (html, text string) {
	return emailHTML(v), emailText(v)
}

const (
	// bigHTML is the style of an email's headline figure.
	bigHTML = `<p style="font-size:24px;font-weight:bold;margin:16px 0;">`
	// payOverdueHTML and payOverdueText close an overdue invoice's notices.
	payOverdueHTML = "<p>Please pay it as soon as you can. If you have paid already, thank you, and please ignore this email.</p>\n"
	payOverdueText = "Please pay it as soon as you can. If you have paid already, thank you, and\nplease ignore this email."
)

func emailHTML(v view) string {
	var w htmlesc.Builder
	about := "your subscription"
	switch {
	case v.Number != "":
		about = "invoice " + v.Number
	case v.Endpoint != nil:
		about = "webhook endpoint disabled"
	}
	w.Printf(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s · %s</title>
</head>
<body style="margin:0;padding:0;background:#f4f5f7;font-family:Helvetica,Arial,sans-serif;color:#1f2933;">
<table role="presentation" width="100%%" cellpadding="0" cellspacing="0" style="background:#f4f5f7;padding:24px 0;">
<tr><td align="center">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" style="background:#ffffff;border-radius:6px;padding:32px;">
<tr><td style="font-size:20px;font-weight:bold;padding-bottom:16px;">%s</td></tr>
<tr><td style="font-size:15px;line-height:1.5;">
<p>%s</p>
`, v.Company, about, v.Company, v.Greeting)
	switch v.Kind {
	case events.NotifyInvoiceFinalized:
		invoiceFinalizedHTML(&w, v)
	case events.NotifyInvoicePaid:
		w.Printf("\n<p>Thank you: we received your payment for invoice <strong>%s</strong>.</p>\n", v.Number)
		w.Printf(bigHTML+"%s paid</p>\n", v.AmountPaid)
		w.Raw("<p>This invoice is paid in full. Keep this email as your receipt.</p>\n")
	case events.NotifyPaymentFailed:
		w.Printf("\n<p>We could not collect the payment for invoice <strong>%s</strong>.</p>\n<p>Reason: %s</p>\n", v.Number, v.Reason)
		w.Printf(bigHTML+"%s still due by %s</p>\n", v.AmountDue, v.DueDate)
		w.Raw("<p><strong>What you can do:</strong> check that your card or bank details are up to date and that the account has enough funds, " +
			"or pay the invoice another way. We will try again automatically.</p>\n")
	case events.NotifyInvoiceOverdue:
		w.Printf("\n<p>Invoice <strong>%s</strong> was due on %s and is not paid yet.</p>\n", v.Number, v.DueDate)
		w.Printf(bigHTML+"%s overdue</p>\n", v.AmountDue)
		w.Raw(payOverdueHTML)
	case events.NotifyInvoiceReminder:
		w.Printf("\n<p>This is reminder %v about invoice <strong>%s</strong>, due on %s.</p>\n", v.Attempt, v.Number, v.DueDate)
		w.Printf(bigHTML+"%s overdue</p>\n", v.AmountDue)
		w.Raw(payOverdueHTML)
	case events.NotifySubscriptionChanged:
		w.Printf("\n<p>Your subscription changed from <strong>%s</strong> (%s) to <strong>%s</strong>.</p>\n", v.PreviousPlan, v.PreviousPrice, v.Plan)
		w.Printf(bigHTML+"%s</p>\n", v.PlanPrice)
		w.Raw("<p>A change in the middle of a period is prorated: the difference appears on an invoice, which you will receive by email.</p>\n")
	case events.NotifySubscriptionCanceled:
		w.Printf("\n<p>Your <strong>%s</strong> subscription (%s) %s.</p>\n", v.Plan, v.PlanPrice, endedText(v))
		w.Raw("<p>You will not be billed for it again. Invoices issued before stay due.</p>\n")
	case KindEndpointDisabled:
		if v.Endpoint != nil {
			endpointDisabledHTML(&w, v.Endpoint)
		}
		w.Raw("\n")
	}
	w.Raw("\n")
	if len(v.Lines) > 0 {
		linesHTML(&w, v)
	}
	w.Raw("\n")
	if v.Memo != "" {
		w.Printf(`<p style="color:#52606d;">%s</p>`, v.Memo)
	}
	w.Raw("\n")
	if v.Attached {
		w.Raw(`<p style="color:#52606d;">The invoice is attached as a PDF.</p>`)
	}
	about = "this email is about your account's billing."
	if v.Endpoint != nil {
		about = "this email is about your billfn integration's webhooks."
	}
	w.Printf("\n</td></tr>\n"+`<tr><td style="font-size:12px;color:#7b8794;padding-top:24px;border-top:1px solid #eef1f4;">%s · `, v.Company)
	w.Raw(about + "</td></tr>\n</table>\n</td></tr>\n</table>\n</body>\n</html>\n")
	return w.String()
}

func invoiceFinalizedHTML(w *htmlesc.Builder, v view) {
	w.Raw("\n<p>")
	if v.Renewal {
		w.Raw("Your subscription renewed")
		if v.Period != "" {
			w.Printf(" for %s", v.Period)
		}
		w.Raw(". ")
	}
	w.Printf("%s has issued invoice <strong>%s</strong>", v.Company, v.Number)
	if v.IssueDate != "" {
		w.Printf(" on %s", v.IssueDate)
	}
	w.Raw(".</p>\n")
	if v.NothingDue {
		w.Printf("<p>Total <strong>%s</strong>. Nothing is left to pay.</p>\n", v.Total)
	} else {
		w.Printf(bigHTML+"%s due by %s</p>", v.AmountDue, v.DueDate)
	}
	w.Raw("\n")
}

func endpointDisabledHTML(w *htmlesc.Builder, e *endpointView) {
	w.Printf("\n<p>Your webhook endpoint <strong>%s</strong> has been disabled: billfn stopped sending it events.</p>\n", e.URL)
	w.Printf(`<p style="font-size:18px;font-weight:bold;margin:16px 0;">%s</p>`+"\n", e.Reason)
	w.Raw(`<table role="presentation" cellpadding="4" cellspacing="0" style="font-size:14px;margin:16px 0;">` + "\n")
	row := `<tr><td style="color:#52606d;">%s</td><td>%s</td></tr>` + "\n"
	w.Printf(row, "Endpoint", e.ID)
	w.Printf(row, "Disabled at", e.DisabledAt)
	w.Printf(row, "Failing since", fmt.Sprintf("%s (%d attempts of delivery %s, %s)", e.FailingSince, e.Attempts, e.DeliveryID, e.EventType))
	w.Printf(row, "Last answer", e.LastAnswer)
	w.Raw("</table>\n")
	w.Printf(`<p>Events for this endpoint are kept while it is disabled. Once it answers again, enable it (<code>PATCH /endpoints/%s</code> with <code>{"disabled": false}</code>) `+
		"and the held deliveries are sent, in order; or retry one (<code>POST /deliveries/{id}/retry</code>).</p>\n", e.ID)
}

func linesHTML(w *htmlesc.Builder, v view) {
	w.Raw("\n" + `<table role="presentation" width="100%" cellpadding="6" cellspacing="0" style="border-collapse:collapse;margin:16px 0;font-size:14px;">` + "\n")
	w.Printf(`<tr style="border-bottom:1px solid #d9dee3;color:#52606d;"><th align="left">Invoice %s`, v.Number)
	if v.Period != "" {
		w.Printf(" · %s", v.Period)
	}
	w.Raw(`</th><th align="right">Qty</th><th align="right">Amount</th></tr>` + "\n")
	for _, l := range v.Lines {
		w.Printf(`<tr style="border-bottom:1px solid #eef1f4;"><td>%s</td><td align="right">%s</td><td align="right">%s</td></tr>`+"\n", l.Description, l.Quantity, l.Amount)
	}
	w.Printf(`<tr><td colspan="2" align="right"><strong>Total</strong></td><td align="right"><strong>%s</strong></td></tr>`+"\n</table>\n", v.Total)
}

// endedText says when a canceled subscription ended, for both parts.
func endedText(v view) string {
	if v.EndedAt != "" {
		return "ended on " + v.EndedAt
	}
	return "has ended"
}

func emailText(v view) string {
	var w strings.Builder
	w.WriteString(v.Greeting + "\n")
	switch v.Kind {
	case events.NotifyInvoiceFinalized:
		w.WriteString("\n")
		if v.Renewal {
			w.WriteString("Your subscription renewed")
			if v.Period != "" {
				w.WriteString(" for " + v.Period)
			}
			w.WriteString(". ")
		}
		w.WriteString(v.Company + " has issued invoice " + v.Number)
		if v.IssueDate != "" {
			w.WriteString(" on " + v.IssueDate)
		}
		w.WriteString(".\n")
		if v.NothingDue {
			fmt.Fprintf(&w, "Total: %s. Nothing is left to pay.", v.Total)
		} else {
			fmt.Fprintf(&w, "Total: %s\nAmount due: %s, by %s.", v.Total, v.AmountDue, v.DueDate)
		}
	case events.NotifyInvoicePaid:
		fmt.Fprintf(&w, "\nThank you: we received your payment for invoice %s.\n\nAmount paid: %s\nInvoice total: %s\n", v.Number, v.AmountPaid, v.Total)
		w.WriteString("This invoice is paid in full. Keep this email as your receipt.")
	case events.NotifyPaymentFailed:
		fmt.Fprintf(&w, "\nWe could not collect the payment for invoice %s.\nReason: %s\n\nAmount still due: %s, by %s.\n", v.Number, v.Reason, v.AmountDue, v.DueDate)
		w.WriteString("What you can do: check that your card or bank details are up to date and\n" +
			"that the account has enough funds, or pay the invoice another way. We will\ntry again automatically.")
	case events.NotifyInvoiceOverdue:
		fmt.Fprintf(&w, "\nInvoice %s was due on %s and is not paid yet.\n\nAmount due: %s\n", v.Number, v.DueDate, v.AmountDue)
		w.WriteString(payOverdueText)
	case events.NotifyInvoiceReminder:
		fmt.Fprintf(&w, "\nThis is reminder %d about invoice %s, due on %s.\n\nAmount due: %s\n", v.Attempt, v.Number, v.DueDate, v.AmountDue)
		w.WriteString(payOverdueText)
	case events.NotifySubscriptionChanged:
		fmt.Fprintf(&w, "\nYour subscription changed from %s (%s) to %s.\n\nFrom now on: %s\n", v.PreviousPlan, v.PreviousPrice, v.Plan, v.PlanPrice)
		w.WriteString("A change in the middle of a period is prorated: the difference appears on\nan invoice, which you will receive by email.")
	case events.NotifySubscriptionCanceled:
		fmt.Fprintf(&w, "\nYour %s subscription (%s) %s.\n\n", v.Plan, v.PlanPrice, endedText(v))
		w.WriteString("You will not be billed for it again. Invoices issued before stay due.")
	case KindEndpointDisabled:
		if e := v.Endpoint; e != nil {
			fmt.Fprintf(&w, "\nYour webhook endpoint %s has been disabled: billfn stopped sending it events.\n\n", e.URL)
			fmt.Fprintf(&w, "Reason: %s\nEndpoint: %s\nDisabled at: %s\n", e.Reason, e.ID, e.DisabledAt)
			fmt.Fprintf(&w, "Failing since: %s (%d attempts of delivery %s, %s)\nLast answer: %s\n\n", e.FailingSince, e.Attempts, e.DeliveryID, e.EventType, e.LastAnswer)
			fmt.Fprintf(&w, "Events for this endpoint are kept while it is disabled. Once it answers\n"+
				"again, enable it (PATCH /endpoints/%s {\"disabled\": false}) and the\n"+
				"held deliveries are sent, in order; or retry one (POST /deliveries/{id}/retry).", e.ID)
		}
	}
	w.WriteString("\n")
	if len(v.Lines) > 0 {
		w.WriteString("\nInvoice " + v.Number)
		if v.Period != "" {
			w.WriteString(" (" + v.Period + ")")
		}
		w.WriteString(":\n")
		for _, l := range v.Lines {
			fmt.Fprintf(&w, "  - %s × %s: %s\n", l.Description, l.Quantity, l.Amount)
		}
		w.WriteString("  Total: " + v.Total + "\n")
	}
	if v.Memo != "" {
		w.WriteString("\n" + v.Memo + "\n")
	}
	if v.Attached {
		w.WriteString("\nThe invoice is attached as a PDF.\n")
	}
	w.WriteString("\n" + v.Company + "\n")
	return w.String()
}
