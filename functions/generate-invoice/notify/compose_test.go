package notify

import (
	"testing"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// Every kind of email, written in Go since issue 20, is byte for byte what
// the templates wrote (testdata/*.golden were written by html/template and
// text/template), values that need escaping included.
func TestEmailsRenderAsTheTemplatesDid(t *testing.T) {
	hostile := `Tom & Jerry's "<Cheese>" +1`
	lines := []viewLine{{Description: "<script>alert('x')</script>", Quantity: "1.5", Amount: "€18.00"}, {Description: "Seats", Quantity: "3", Amount: "€13.50"}}
	inv := view{Company: "Acme & Co", Greeting: "Hello " + hostile + ",", Number: "INV-<1>", Total: "€31.50", AmountDue: "€31.50",
		AmountPaid: "€0.00", DueDate: "2026-04-09", IssueDate: "2026-03-10", Lines: lines, Memo: "Pay by <Friday> & thanks", Attached: true}
	cases := map[string]view{}
	for _, k := range []string{events.NotifyInvoiceFinalized, events.NotifyInvoicePaid, events.NotifyPaymentFailed, events.NotifyInvoiceOverdue, events.NotifyInvoiceReminder} {
		v := inv
		v.Kind = k
		cases[k] = v
	}
	renewal := inv
	renewal.Kind, renewal.Renewal, renewal.Period, renewal.NothingDue, renewal.IssueDate = events.NotifyInvoiceFinalized, true, "2026-03-01 – 2026-04-01", true, ""
	renewal.Memo, renewal.Attached = "", false
	cases["invoice_finalized-renewal-nothing-due"] = renewal
	bare := view{Kind: events.NotifyPaymentFailed, Company: "billfn", Greeting: "Hello,", Number: "DRAFT", Reason: `card_declined: "do not honor" <05>`, DueDate: "on receipt", Attempt: 2}
	cases["payment_failed-bare"] = bare
	reminder := bare
	reminder.Kind = events.NotifyInvoiceReminder
	cases["invoice_reminder-bare"] = reminder
	cases[events.NotifySubscriptionChanged] = view{Kind: events.NotifySubscriptionChanged, Company: "Acme", Greeting: "Hello,",
		Plan: "Pro <annual>", PlanPrice: "$290.00 per year", PreviousPlan: "Basic & Co", PreviousPrice: "$29.00 per month"}
	cases[events.NotifySubscriptionCanceled] = view{Kind: events.NotifySubscriptionCanceled, Company: "Acme", Greeting: "Hello,",
		Plan: "your plan", PlanPrice: "€120.00 every 3 months", EndedAt: "2026-03-31"}
	cases["subscription_canceled-no-end"] = view{Kind: events.NotifySubscriptionCanceled, Company: "Acme", Greeting: "Hello,", Plan: "Pro"}
	cases[KindEndpointDisabled] = view{Kind: KindEndpointDisabled, Company: "billfn", Greeting: "Hello,", Endpoint: &endpointView{
		ID: "we_1", URL: "https://merchant.example/hooks?a=1&b='2'", Reason: "failing for 3 days", DisabledAt: "2026-03-10T10:00:00Z",
		FailingSince: "2026-03-07T10:00:00Z", DeliveryID: "del_<1>", EventType: "billfn.invoice.paid", LastAnswer: "HTTP 500", Attempts: 12}}
	cases["unknown-kind"] = view{Kind: "something_else", Company: "Acme", Greeting: "Hello,"}
	for name, v := range cases {
		html, text := renderEmail(v)
		for file, got := range map[string]string{name + ".html.golden": html, name + ".txt.golden": text} {
			testenv.Golden(t, file, []byte(got))
		}
	}
}
