package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/events"
)

// bidiControls are the characters that reorder the text after them until
// their paragraph ends: embeddings, overrides and isolates.
const bidiControls = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

// The customer's name, a line's description and a plan's name are text a
// merchant may take from its customer (a sign-up form). In an email they
// cannot change how the amounts beside them read: a right-to-left
// override in a description turned its line's amount round in the plain
// text part ("$12.50" showed as "05.21$") and in a plan's name the
// subject's price, and a line break in a description wrote a line of its
// own, such as a false "  Total: $0.01" among the invoice's lines.
func TestCustomerTextCannotReshapeTheAmountsOfAnEmail(t *testing.T) {
	inv := wireInvoice(t, 2)
	inv.Customer.Name = "Bob\r\nYour invoice is paid, nothing to do.\u202e"
	inv.Lines[0].Description = "Widget\u202e"
	inv.Lines[1].Description = "Gadget\n  Total: $0.01\n  - Gizmo\u2029\u2067x"
	e, err := Compose(wireNotification(inv), inv, Sender{From: "Acme <billing@acme.example>"})
	if err != nil {
		t.Fatal(err)
	}
	for part, body := range map[string]string{"text": e.Text, "HTML": e.HTML, "subject": e.Subject} {
		if i := strings.IndexAny(body, bidiControls+"\r\u2028\u2029\u0085"); i >= 0 {
			t.Errorf("the %s part holds the customer's control character %q: %q", part, body[i:i+utf8Len(body[i])], body)
		}
	}
	lines := strings.Split(e.Text, "\n")
	if lines[0] != "Hello Bob  Your invoice is paid, nothing to do.," {
		t.Errorf("greeting %q: the name is one line of the greeting", lines[0])
	}
	var totals, items int
	for _, l := range lines {
		if strings.HasPrefix(l, "  Total:") {
			totals++
		}
		if strings.HasPrefix(l, "  - ") {
			items++
		}
	}
	if totals != 1 || items != 2 || !strings.Contains(e.Text, "  - Gadget   Total: $0.01   - Gizmo x × 2: $30.24\n") {
		t.Errorf("the text part shows %d totals and %d lines, want the invoice's 1 and 2:\n%s", totals, items, e.Text)
	}

	sub := &invoicing.Subscription{ID: "sub", AccountID: "acct", Customer: invoicing.Customer{Name: "Ann", Email: "ann@example.com"}}
	pro := &events.Plan{Name: "Pro", Amount: 2900, Currency: "USD", Interval: "month", IntervalCount: 1}
	max := &events.Plan{Name: "Max\u202e", Amount: 1250, Currency: "USD", Interval: "month", IntervalCount: 1}
	req := events.NotificationRequested{Kind: events.NotifySubscriptionChanged, SubscriptionID: "sub", Plan: max, PreviousPlan: pro}
	n := New("0191", "src", "ev1", req, sub.Customer.Email, "acme.example", time.Date(2026, 5, 20, 12, 0, 0, 0, time.UTC))
	if e, err = ComposeSubscription(n, sub, Sender{From: "Acme <billing@acme.example>"}); err != nil {
		t.Fatal(err)
	}
	if want := "Your subscription changed: Pro → Max, $12.50 per month"; e.Subject != want {
		t.Errorf("subject %q, want %q", e.Subject, want)
	}
	for part, body := range map[string]string{"text": e.Text, "HTML": e.HTML} {
		if strings.ContainsAny(body, bidiControls) {
			t.Errorf("the %s part holds the plan's bidi control: %q", part, body)
		}
	}
}

func utf8Len(b byte) int {
	switch {
	case b >= 0xf0:
		return 4
	case b >= 0xe0:
		return 3
	case b >= 0xc0:
		return 2
	}
	return 1
}
