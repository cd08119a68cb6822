package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/events"
)

func TestParseSMTPURL(t *testing.T) {
	for raw, want := range map[string]SMTPConfig{
		"smtp://127.0.0.1:1025?starttls=none":                   {Host: "127.0.0.1", Port: 1025, StartTLS: "none", Timeout: 15 * time.Second},
		"smtp://u%40x:p%3Ass@mail.example:587":                  {Host: "mail.example", Port: 587, Username: "u@x", Password: "p:ss", StartTLS: "required", Timeout: 15 * time.Second},
		"smtps://u:p@mail.example":                              {Host: "mail.example", Port: 465, Username: "u", Password: "p", ImplicitTLS: true, StartTLS: "required", Timeout: 15 * time.Second},
		"smtp://mail.example?starttls=opportunistic&timeout=3s": {Host: "mail.example", Port: 587, StartTLS: "opportunistic", Timeout: 3 * time.Second},
	} {
		got, err := ParseSMTPURL(raw)
		if err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", raw, got, err, want)
		}
	}
	for _, bad := range []string{"http://x", "smtp://", "smtp://x:0", "smtp://x?starttls=maybe", "smtps://x?starttls=none", "smtp://x?timeout=-1s"} {
		if _, err := ParseSMTPURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, err := ParseSMTPURL("smtp://u:secret@x:99999"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("a bad URL's error must not repeat the password: %v", err)
	}
}

func TestBackoffDoublesUpToSixHours(t *testing.T) {
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute}
	for i, w := range want {
		if got := Backoff(i + 1); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := Backoff(50); got != 6*time.Hour {
		t.Errorf("Backoff(50) = %s", got)
	}
}

// A temporary answer queues the email again with backoff, a permanent one
// (5xx) parks it as failed, and so do temporary ones past the maximum.
func TestRecordRetriesTemporaryAndParksPermanent(t *testing.T) {
	now := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	req := events.NotificationRequested{Kind: events.NotifyInvoicePaid, InvoiceID: "i"}
	n := New("id", "src", "ev", req, "a@example.com", "acme.example", now)
	n.Attempts = 1
	n.Record(Outcome{Code: 451, Response: "try later", Temporary: true}, false, now, 3)
	if n.Status != Queued || !n.NextAttemptAt.Equal(now.Add(time.Minute)) || *n.SMTPCode != 451 {
		t.Fatalf("after a 451: %+v", n)
	}
	n.Attempts = 3
	n.Record(Outcome{Code: 451, Temporary: true}, false, now, 3)
	if n.Status != Failed || *n.Reason != ReasonRetriesExhausted || n.NextAttemptAt != nil {
		t.Fatalf("after the last 451: %+v", n)
	}
	m := New("id2", "src", "ev2", req, "a@example.com", "acme.example", now)
	m.Attempts = 1
	m.Record(Outcome{Code: 550, Response: "no such user"}, false, now, 3)
	if m.Status != Failed || *m.Reason != ReasonPermanent {
		t.Fatalf("after a 550: %+v", m)
	}
	if _, err := Resend(m, "id3", "acme.example", now); err != nil {
		t.Fatalf("a failed email cannot be resent: %v", err)
	}
	if s := New("id4", "src", "ev4", req, "", "acme.example", now); s.Status != Suppressed || *s.Reason != ReasonNoEmail {
		t.Fatalf("no address: %+v", s)
	}
}

// Amounts follow the invoice's currency and its customer's locale.
func TestComposeFormatsForTheCustomersLocale(t *testing.T) {
	num := "INV-2026-000042"
	fin := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	due := "2026-04-09"
	inv := &invoicing.Invoice{ID: "inv", Number: &num, Currency: "EUR", Total: 123456, AmountDue: 123456, Status: invoicing.StatusOpen,
		FinalizedAt: &fin, Customer: invoicing.Customer{Name: "Käthe", Email: "k@example.de", Locale: "de-DE"},
		Lines: []invoicing.Line{{Description: "Beratung", Quantity: 1_000_000, Total: 123456}}}
	req := events.NotificationRequested{Kind: events.NotifyInvoiceFinalized, InvoiceID: "inv", AmountDue: 123456, Currency: "EUR", DueDate: &due}
	n := New("0190", "src", "ev", req, "k@example.de", "acme.example", fin)
	e, err := Compose(n, inv, Sender{From: "Acme <billing@acme.example>"})
	if err != nil {
		t.Fatal(err)
	}
	const amount = "1.234,56\u00a0€"
	if !strings.Contains(e.Subject, amount) || !strings.Contains(e.Text, amount) || !strings.Contains(e.HTML, amount) {
		t.Fatalf("want %q in subject %q and both parts:\n%s", amount, e.Subject, e.Text)
	}
	if e.MessageID != "0190@acme.example" || !strings.HasPrefix(e.ListUnsubscribe, "<mailto:billing@acme.example?subject=") ||
		len(e.Attachments) != 1 || e.Attachments[0].Name != num+".pdf" {
		t.Fatalf("email %+v", e)
	}
	inv.Customer.Locale = ""
	inv.Currency = "JPY"
	inv.Total, req.AmountDue = 3000, 3000
	n.Data = req
	if e, _ = Compose(n, inv, Sender{From: "Acme <billing@acme.example>"}); !strings.Contains(e.Subject, "¥3,000") {
		t.Fatalf("JPY in en: %q", e.Subject)
	}
}

// A subscription's notices: the plans as the request recorded them, in
// the subscription customer's locale, HTML escaping what the customer
// wrote; no PDF.
func TestComposeSubscriptionNotices(t *testing.T) {
	at := time.Date(2026, 5, 20, 12, 0, 0, 0, time.UTC)
	sub := &invoicing.Subscription{ID: "sub", AccountID: "acct", Customer: invoicing.Customer{Name: "Käthe <K>", Email: "k@example.de", Locale: "de-DE"}}
	pro := &events.Plan{Name: "Pro", Amount: 2900, Currency: "EUR", Interval: "month", IntervalCount: 1}
	max := &events.Plan{Name: "Max", Amount: 12000, Currency: "EUR", Interval: "month", IntervalCount: 3}
	from := Sender{From: "Acme <billing@acme.example>"}
	req := events.NotificationRequested{Kind: events.NotifySubscriptionChanged, SubscriptionID: "sub", Plan: max, PreviousPlan: pro}
	n := New("0191", "src", "ev1", req, "k@example.de", "acme.example", at)
	if n.InvoiceID != nil || n.SubscriptionID == nil || n.Status != Queued {
		t.Fatalf("notification %+v", n)
	}
	e, err := ComposeSubscription(n, sub, from)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Your subscription changed: Pro → Max, 120,00\u00a0€ every 3 months"; e.Subject != want {
		t.Fatalf("subject %q, want %q", e.Subject, want)
	}
	if !strings.Contains(e.Text, "from Pro (29,00\u00a0€ per month) to Max") || !strings.Contains(e.HTML, "Hello Käthe &lt;K&gt;,") ||
		len(e.Attachments) != 0 || e.MessageID != "0191@acme.example" {
		t.Fatalf("email %+v", e)
	}
	if _, err := Compose(n, &invoicing.Invoice{}, from); err == nil {
		t.Fatal("Compose wrote a subscription's notice as an invoice's")
	}

	req = events.NotificationRequested{Kind: events.NotifySubscriptionCanceled, SubscriptionID: "sub", Plan: max, EndedAt: &at}
	n = New("0192", "src", "ev2", req, "k@example.de", "acme.example", at)
	if e, err = ComposeSubscription(n, sub, from); err != nil || e.Subject != "Your Max subscription ended on 2026-05-20" ||
		!strings.Contains(e.Text, "ended on 2026-05-20") {
		t.Fatalf("canceled: %v %+v", err, e)
	}
}
