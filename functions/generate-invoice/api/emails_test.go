package api

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/mailpit"
	"github.com/billfn/billfn/shared/testenv"
)

// mailRig is a rig whose SMTP_URL is a private Mailpit.
func mailRig(t *testing.T) (*rig, *testenv.Mailpit) {
	t.Helper()
	mp := testenv.StartMailpit(t)
	cfg := DefaultConfig()
	cfg.Email.SMTPURL = mp.SMTPURL()
	cfg.Email.From = "Acme Billing <billing@acme.example>"
	return newRigWith(t, cfg), mp
}

// notificationEvents are the billfn.notification.requested events
// published about invoice id, of kind ("" for all).
func (g *rig) notificationEvents(id, kind string) []events.Event {
	g.t.Helper()
	var out []events.Event
	for _, ev := range g.events(id) {
		if ev.Type() != events.TypeNotificationRequested {
			continue
		}
		var n events.NotificationRequested
		if err := events.Decode(ev, &n); err != nil {
			g.t.Fatal(err)
		}
		if kind == "" || n.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// inbox lists what Mailpit holds for addr.
func inbox(t *testing.T, mp *testenv.Mailpit, addr string) []mailpit.Summary {
	t.Helper()
	ms, err := mp.Messages(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	var out []mailpit.Summary
	for _, m := range ms {
		for _, to := range m.To {
			if strings.EqualFold(to.Address, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

func (g *rig) notifications(query string) []notify.Notification {
	g.t.Helper()
	rec := g.asAdmin("GET", "/notifications?"+query, nil)
	must(g.t, rec, 200)
	return decode[httpx.List[notify.Notification]](g.t, rec).Data
}

// An invoice finalized with auto_finalize reaches its customer's mailbox
// once: the right total in the subject, the text and the HTML part, the
// PDF attached (a PDF holding the invoice number), Message-ID and
// List-Unsubscribe; a redelivered event, and even an event whose dedupe
// record is lost, send nothing twice.
func TestFinalizedInvoiceReachesTheCustomersMailboxOnce(t *testing.T) {
	g, mp := mailRig(t)
	addr := "ada-" + uuid.NewString()[:8] + "@example.com"
	body := invoiceBody(uuid.NewString(), uuid.NewString(),
		map[string]any{"description": "Punched cards", "quantity": "3", "unit_amount": 123456})
	body["auto_finalize"] = true
	body["customer"].(map[string]any)["email"] = addr
	inv := g.createInvoice("", body)
	if inv.Number == nil || inv.Total != 370368 {
		t.Fatalf("invoice %+v", inv)
	}
	evs := g.notificationEvents(inv.ID, events.NotifyInvoiceFinalized)
	if len(evs) != 1 {
		t.Fatalf("%d invoice_finalized notifications requested", len(evs))
	}
	if res := g.deliver(evs...); res.Processed != 1 {
		t.Fatalf("delivery: %+v", res)
	}
	g.tick() // the sender runs on the tick (and in the background in production)

	got := inbox(t, mp, addr)
	if len(got) != 1 {
		t.Fatalf("%d emails to %s, want 1: %+v", len(got), addr, got)
	}
	const total = "$3,703.68"
	if s := got[0].Subject; !strings.Contains(s, *inv.Number) || !strings.Contains(s, total) {
		t.Fatalf("subject %q: want the number %s and the total %s", s, *inv.Number, total)
	}
	msg, err := mp.Message(t.Context(), got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, total) || !strings.Contains(msg.Text, "Punched cards") || !strings.Contains(msg.Text, "Ada Lovelace") {
		t.Fatalf("text part:\n%s", msg.Text)
	}
	if !strings.Contains(msg.HTML, total) || !strings.Contains(msg.HTML, "<table") {
		t.Fatalf("HTML part:\n%s", msg.HTML)
	}
	if msg.From.Address != "billing@acme.example" {
		t.Fatalf("from %+v", msg.From)
	}
	if len(msg.Attachments) != 1 || msg.Attachments[0].ContentType != "application/pdf" || msg.Attachments[0].FileName != *inv.Number+".pdf" {
		t.Fatalf("attachments %+v", msg.Attachments)
	}
	pdf, err := mp.Part(t.Context(), msg.ID, msg.Attachments[0].PartID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF")) {
		t.Fatalf("the attachment is no PDF: %q", pdf[:min(len(pdf), 16)])
	}
	if text := pdfText(t, pdf); !strings.Contains(text, *inv.Number) || !strings.Contains(text, total) {
		t.Fatalf("the PDF's text lacks %s or %s:\n%s", *inv.Number, total, text)
	}

	// The log: one row, sent at the first attempt, with the server's answer
	// and the Message-ID the message carries.
	log := g.notifications("invoice_id=" + inv.ID)
	if len(log) != 1 {
		t.Fatalf("%d notifications logged", len(log))
	}
	n := log[0]
	if n.Status != notify.Sent || n.Attempts != 1 || n.SMTPCode == nil || *n.SMTPCode != 250 || n.Recipient != addr ||
		n.Kind != events.NotifyInvoiceFinalized || n.SentAt == nil || n.Subject != got[0].Subject {
		t.Fatalf("notification %+v", n)
	}
	if msg.MessageID != n.MessageID || !strings.HasSuffix(n.MessageID, "@acme.example") {
		t.Fatalf("Message-ID %q, logged %q", msg.MessageID, n.MessageID)
	}
	h, err := mp.Headers(t.Context(), msg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if lu := h["List-Unsubscribe"]; len(lu) != 1 || !strings.HasPrefix(lu[0], "<mailto:billing@acme.example?") {
		t.Fatalf("List-Unsubscribe %v", lu)
	}

	// Redelivered: a duplicate for the receiver, nothing sent.
	if res := g.deliver(evs...); res.Duplicates != 1 {
		t.Fatalf("redelivery: %+v", res)
	}
	// Even with its dedupe record lost, the log's own key holds.
	if _, err := g.d.Pool.Exec(t.Context(), `DELETE FROM processed_events WHERE consumer = $1 AND id = $2`, FunctionName, evs[0].ID()); err != nil {
		t.Fatal(err)
	}
	if res := g.deliver(evs...); res.Processed != 1 {
		t.Fatalf("redelivery without dedupe record: %+v", res)
	}
	g.clock.Advance(time.Hour)
	g.tick()
	if got := inbox(t, mp, addr); len(got) != 1 {
		t.Fatalf("%d emails after redeliveries, want 1", len(got))
	}
	if log := g.notifications("invoice_id=" + inv.ID); len(log) != 1 {
		t.Fatalf("%d notifications after redeliveries", len(log))
	}
}

// Mailpit stopped: the email stays queued and is retried with backoff;
// Mailpit back: it is delivered, once.
func TestSMTPOutageDelaysTheEmailAndLosesNothing(t *testing.T) {
	g, mp := mailRig(t)
	addr := "grace-" + uuid.NewString()[:8] + "@example.com"
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	body["customer"].(map[string]any)["email"] = addr
	inv := g.createInvoice("", body)

	mp.Stop()
	g.deliver(g.notificationEvents(inv.ID, events.NotifyInvoiceFinalized)...)
	g.tick()
	n := g.notifications("invoice_id=" + inv.ID)[0]
	if n.Status != notify.Queued || n.Attempts != 1 || n.SMTPCode == nil || *n.SMTPCode != 0 || n.SMTPResponse == nil ||
		n.NextAttemptAt == nil || !n.NextAttemptAt.Equal(g.clock.Now().Add(time.Minute)) {
		t.Fatalf("after a refused connection: %+v", n)
	}
	// Not before its time; then the second attempt fails too, and waits
	// twice as long.
	g.tick()
	if n := g.notifications("invoice_id=" + inv.ID)[0]; n.Attempts != 1 {
		t.Fatalf("retried before its backoff: %+v", n)
	}
	g.clock.Advance(time.Minute)
	g.tick()
	n = g.notifications("invoice_id=" + inv.ID)[0]
	if n.Status != notify.Queued || n.Attempts != 2 || !n.NextAttemptAt.Equal(g.clock.Now().Add(2*time.Minute)) {
		t.Fatalf("after the second refused connection: %+v", n)
	}
	if got := g.notifications("status=queued&invoice_id=" + inv.ID); len(got) != 1 {
		t.Fatalf("status filter: %d queued", len(got))
	}

	mp.Start()
	g.clock.Advance(2 * time.Minute)
	g.tick()
	g.tick()
	n = g.notifications("invoice_id=" + inv.ID)[0]
	if n.Status != notify.Sent || n.Attempts != 3 {
		t.Fatalf("after Mailpit came back: %+v", n)
	}
	if got := inbox(t, mp, addr); len(got) != 1 || !strings.Contains(got[0].Subject, *inv.Number) {
		t.Fatalf("emails to %s: %+v", addr, got)
	}
}

// An invoice paid: a receipt with the amount paid; resending it (an
// admin, with an Idempotency-Key) sends a second message, once per key.
func TestPaidInvoiceSendsAReceiptThatAnAdminCanResend(t *testing.T) {
	g, mp := mailRig(t)
	addr := "kat-" + uuid.NewString()[:8] + "@example.com"
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	body["customer"].(map[string]any)["email"] = addr
	inv := g.createInvoice("", body)
	must(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/pay", map[string]any{"reference": "wire 42"}), 200)
	receipts := g.notificationEvents(inv.ID, events.NotifyInvoicePaid)
	if len(receipts) != 1 {
		t.Fatalf("%d receipts requested", len(receipts))
	}
	g.deliver(receipts...)
	g.tick()
	got := inbox(t, mp, addr)
	if len(got) != 1 || !strings.HasPrefix(got[0].Subject, "Receipt for invoice "+*inv.Number) || !strings.Contains(got[0].Subject, "$21.00") {
		t.Fatalf("emails: %+v", got)
	}
	msg, err := mp.Message(t.Context(), got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "paid in full") || len(msg.Attachments) != 0 {
		t.Fatalf("receipt: %d attachments\n%s", len(msg.Attachments), msg.Text)
	}

	orig := g.notifications("status=sent&invoice_id=" + inv.ID)[0]
	// A resend takes no member: {"to": another address} was ignored and
	// the receipt resent to the customer (202); it is a 400, and nothing
	// is queued (one resend below makes two e-mails, not three).
	problemOf(t, g.call(call{method: "POST", path: "/notifications/" + orig.ID + "/resend", body: map[string]any{"to": "other@example.com"},
		sub: g.admin, role: auth.RoleAdmin}), 400, "bad_request")
	key := uuid.NewString()
	resend := func() notify.Notification {
		rec := g.call(call{method: "POST", path: "/notifications/" + orig.ID + "/resend", sub: g.admin, role: auth.RoleAdmin, key: key})
		must(t, rec, 202)
		return decode[notify.Notification](t, rec)
	}
	r1, r2 := resend(), resend()
	if r1.ID != r2.ID || r1.ResendOf == nil || *r1.ResendOf != orig.ID || r1.Status != notify.Queued || r1.MessageID == orig.MessageID {
		t.Fatalf("resend %+v, replay %+v", r1, r2)
	}
	g.tick()
	if got := inbox(t, mp, addr); len(got) != 2 {
		t.Fatalf("%d emails after one resend, want 2", len(got))
	}
	// Customers may not read the log nor resend.
	problemOf(t, g.asCustomer(inv.UserID, "GET", "/notifications/"+orig.ID, nil), 403, "forbidden")
}

// An invoice whose customer has no email address: the notification is
// logged as suppressed with the reason, nothing is sent, and it cannot be
// resent.
func TestNotificationWithoutAnAddressIsSuppressedWithTheReason(t *testing.T) {
	g, mp := mailRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	delete(body["customer"].(map[string]any), "email")
	inv := g.createInvoice("", body)
	g.deliver(g.notificationEvents(inv.ID, "")...)
	g.tick()
	log := g.notifications("invoice_id=" + inv.ID)
	if len(log) != 1 || log[0].Status != notify.Suppressed || log[0].Reason == nil || *log[0].Reason != notify.ReasonNoEmail || log[0].Attempts != 0 {
		t.Fatalf("log %+v", log)
	}
	rec := g.asAdmin("GET", "/notifications/"+log[0].ID, nil)
	must(t, rec, 200)
	problemOf(t, g.asAdmin("POST", "/notifications/"+log[0].ID+"/resend", nil), 422, string(notify.CodeNotResendable))
	problemOf(t, g.asAdmin("GET", "/notifications/"+uuid.NewString(), nil), 404, "not_found")
	problemOf(t, g.asAdmin("GET", "/notifications?status=lost", nil), 422, "validation_failed")
	if ms, err := mp.Messages(t.Context(), ""); err != nil || len(ms) != 0 {
		t.Fatalf("Mailpit holds %d messages (%v)", len(ms), err)
	}
}

// The log is a keyset list, newest first.
func TestNotificationsListIsKeysetPaged(t *testing.T) {
	g, _ := mailRig(t)
	var invs []invoicing.Invoice
	for range 3 {
		body := invoiceBody(uuid.NewString(), uuid.NewString())
		body["auto_finalize"] = true
		inv := g.createInvoice("", body)
		g.deliver(g.notificationEvents(inv.ID, "")...)
		invs = append(invs, inv)
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		rec := g.asAdmin("GET", "/notifications?limit=1&status=queued&cursor="+cursor, nil)
		must(t, rec, 200)
		page := decode[httpx.List[notify.Notification]](t, rec)
		for _, n := range page.Data {
			seen[*n.InvoiceID] = true
		}
		if !page.HasMore {
			break
		}
		cursor = page.NextCursor
		if pages > 1000 {
			t.Fatal("endless pages")
		}
	}
	for _, inv := range invs {
		if !seen[inv.ID] {
			t.Fatalf("invoice %s's notification not listed", inv.ID)
		}
	}
}

// A permanent answer (550) parks the email as failed with the server's
// answer; a temporary one (451) queues it again; an admin resends the
// failed one once the server accepts again.
func TestPermanentSMTPFailureParksTheEmailForAResend(t *testing.T) {
	g, mp := mailRig(t)
	addr := "lin-" + uuid.NewString()[:8] + "@example.com"
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	body["customer"].(map[string]any)["email"] = addr
	inv := g.createInvoice("", body)
	if err := mp.Chaos(t.Context(), 550, 100); err != nil {
		t.Fatal(err)
	}
	g.deliver(g.notificationEvents(inv.ID, "")...)
	g.tick()
	n := g.notifications("invoice_id=" + inv.ID)[0]
	if n.Status != notify.Failed || n.SMTPCode == nil || *n.SMTPCode != 550 || n.Reason == nil || *n.Reason != notify.ReasonPermanent ||
		n.NextAttemptAt != nil || n.Attempts != 1 {
		t.Fatalf("after a 550: %+v", n)
	}
	g.clock.Advance(time.Hour)
	g.tick()
	if again := g.notifications("invoice_id=" + inv.ID)[0]; again.Attempts != 1 {
		t.Fatalf("a parked email was tried again: %+v", again)
	}

	// A 451 is temporary: the resend is queued again, then delivered.
	if err := mp.Chaos(t.Context(), 451, 100); err != nil {
		t.Fatal(err)
	}
	rec := g.asAdmin("POST", "/notifications/"+n.ID+"/resend", nil)
	must(t, rec, 202)
	r := decode[notify.Notification](t, rec)
	g.tick()
	got := decode[notify.Notification](t, g.asAdmin("GET", "/notifications/"+r.ID, nil))
	if got.Status != notify.Queued || got.SMTPCode == nil || *got.SMTPCode != 451 || got.Attempts != 1 {
		t.Fatalf("resend after a 451: %+v", got)
	}
	if err := mp.Chaos(t.Context(), 451, 0); err != nil {
		t.Fatal(err)
	}
	g.clock.Advance(time.Minute)
	g.tick()
	if got := decode[notify.Notification](t, g.asAdmin("GET", "/notifications/"+r.ID, nil)); got.Status != notify.Sent || got.Attempts != 2 {
		t.Fatalf("resend once the server accepts: %+v", got)
	}
	if got := inbox(t, mp, addr); len(got) != 1 {
		t.Fatalf("%d emails, want the resent one", len(got))
	}
}

// A failed payment of an open invoice tells the customer why and what to
// do; the invoice stays due.
func TestFailedPaymentTellsTheCustomerWhatToDo(t *testing.T) {
	g, mp := mailRig(t)
	addr := "joan-" + uuid.NewString()[:8] + "@example.com"
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	body["customer"].(map[string]any)["email"] = addr
	inv := g.createInvoice("", body)
	g.deliver(event(t, "capture-payment", events.TypePaymentFailed, "p1", payment{PaymentID: "p1", InvoiceID: &inv.ID,
		Currency: "USD", DeclineCode: "card_declined", FailureReason: "insufficient funds"}))
	notices := g.notificationEvents(inv.ID, events.NotifyPaymentFailed)
	if len(notices) != 1 {
		t.Fatalf("%d payment_failed notices", len(notices))
	}
	g.deliver(notices...)
	g.tick()
	got := inbox(t, mp, addr)
	if len(got) != 1 || !strings.HasPrefix(got[0].Subject, "Payment failed for invoice "+*inv.Number) || !strings.Contains(got[0].Subject, "$21.00") {
		t.Fatalf("emails: %+v", got)
	}
	msg, err := mp.Message(t.Context(), got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "insufficient funds") || !strings.Contains(msg.Text, "What you can do") || !strings.Contains(msg.HTML, "What you can do") {
		t.Fatalf("notice:\n%s", msg.Text)
	}
}

// The tick prunes the email log: a notification done with (sent, failed,
// suppressed) goes EMAIL_LOG_RETENTION (a year) after its last change; a
// resend outlives the email it sent again; a queued one stays.
func TestEmailLogIsPrunedAfterTheRetention(t *testing.T) {
	g, mp := mailRig(t)
	t0 := g.clock.Now()
	send := func() invoicing.Invoice {
		body := invoiceBody(uuid.NewString(), uuid.NewString())
		body["auto_finalize"] = true
		body["customer"].(map[string]any)["email"] = "ret-" + uuid.NewString()[:8] + "@example.com"
		inv := g.createInvoice("", body)
		g.deliver(g.notificationEvents(inv.ID, "")...)
		g.tick()
		return inv
	}
	first := send()
	orig := g.notifications("invoice_id=" + first.ID)[0]
	g.clock.Advance(10 * 24 * time.Hour)
	must(t, g.asAdmin("POST", "/notifications/"+orig.ID+"/resend", nil), 202)
	g.tick()
	mp.Stop()
	second := send() // stays queued while Mailpit is away
	statuses := func(inv invoicing.Invoice) string {
		var s []string
		for _, n := range g.notifications("invoice_id=" + inv.ID) {
			s = append(s, n.Status)
		}
		return strings.Join(s, ",")
	}
	if a, b := statuses(first), statuses(second); a != "sent,sent" || b != "queued" {
		t.Fatalf("before: %s / %s", a, b)
	}

	g.clock.Set(t0.Add(365*24*time.Hour - time.Minute))
	g.tick()
	if a := statuses(first); a != "sent,sent" {
		t.Fatalf("pruned before a year: %s", a)
	}
	g.clock.Set(t0.Add(365*24*time.Hour + time.Minute))
	g.tick()
	log := g.notifications("invoice_id=" + first.ID)
	if len(log) != 1 || log[0].ID == orig.ID || log[0].ResendOf != nil || statuses(second) != "queued" {
		t.Fatalf("a year on: %+v; second %s", log, statuses(second))
	}
	problemOf(t, g.asAdmin("GET", "/notifications/"+orig.ID, nil), 404, "not_found")
	g.clock.Advance(10 * 24 * time.Hour)
	g.tick()
	if a, b := statuses(first), statuses(second); a != "" || b != "queued" {
		t.Fatalf("a year after the resend: %q / %q", a, b)
	}
}

// Notifications delivered as one batch are logged together (the invoices
// read in one statement) and sent by one pass (the claim's invoices read
// in one round trip): each customer gets one email, about their own
// invoice; a request naming no invoice is parked alone.
func TestBatchedNotificationsSendEachCustomerTheirOwnInvoice(t *testing.T) {
	g, mp := mailRig(t)
	tag := "batch-" + uuid.NewString()[:8]
	type sent struct{ addr, number, total, line string }
	var want []sent
	var evs []events.Event
	for i, amount := range []int{1111, 2222, 3333} {
		addr := fmt.Sprintf("%s-%d@example.com", tag, i)
		line := fmt.Sprintf("Widget %d", i)
		body := invoiceBody(uuid.NewString(), uuid.NewString(), map[string]any{"description": line, "quantity": "1", "unit_amount": amount})
		body["auto_finalize"] = true
		body["customer"].(map[string]any)["email"] = addr
		inv := g.createInvoice("", body)
		want = append(want, sent{addr, *inv.Number, fmt.Sprintf("$%d.%02d", amount/100, amount%100), line})
		evs = append(evs, g.notificationEvents(inv.ID, events.NotifyInvoiceFinalized)...)
	}
	ghost := event(t, events.Source(FunctionName), events.TypeNotificationRequested, uuid.NewString(),
		events.NotificationRequested{Kind: events.NotifyInvoiceFinalized, InvoiceID: uuid.NewString(), AmountDue: 100})
	if res := g.deliver(evs[0], ghost, evs[1], evs[2]); res.Processed != 3 || res.Parked != 1 {
		t.Fatalf("batch delivery: %+v", res)
	}
	g.tick()
	for _, w := range want {
		got := inbox(t, mp, w.addr)
		if len(got) != 1 {
			t.Fatalf("%d emails to %s, want 1", len(got), w.addr)
		}
		msg, err := mp.Message(t.Context(), got[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(msg.Subject, w.number) || !strings.Contains(msg.Subject, w.total) || !strings.Contains(msg.Text, w.line) {
			t.Fatalf("email to %s: subject %q, text:\n%s\nwant %s, %s, %s", w.addr, msg.Subject, msg.Text, w.number, w.total, w.line)
		}
	}
}

// A customer writes its invoice's customer snapshot, the address
// included: the merchant's SMTP server sent, From the merchant, whatever
// the customer wrote (name, memo, lines) to any address it named. An
// invoice its customer made is not e-mailed: its notifications are logged
// suppressed (customer_made_invoice); the merchant's invoices are, to the
// address the merchant wrote.
func TestACustomerCannotMailAStrangerFromTheMerchant(t *testing.T) {
	g, mp := mailRig(t)
	mallory := uuid.NewString()
	stranger := "stranger-" + uuid.NewString()[:8] + "@elsewhere.example"
	body := invoiceBody(mallory, g.account(mallory, "USD"),
		map[string]any{"description": "Your account is suspended: sign in at https://evil.example/acme to restore it", "quantity": "1", "unit_amount": 0})
	body["auto_finalize"] = true
	body["customer"] = map[string]any{"name": "Acme security team", "email": stranger}
	body["memo"] = "Urgent: verify your card at https://evil.example/acme within 24 hours."
	rec := g.asCustomer(mallory, "POST", "/invoices", body)
	must(t, rec, 201)
	inv := decode[invoicing.Invoice](t, rec)
	g.deliver(g.notificationEvents(inv.ID, events.NotifyInvoiceFinalized)...)
	g.tick()
	if got := inbox(t, mp, stranger); len(got) != 0 {
		t.Errorf("a customer had the merchant mail %s %d message(s), the first %q", stranger, len(got), got[0].Subject)
	}
	var status, reason string
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT status, coalesce(reason, '') FROM invoice_notifications WHERE invoice_id = $1`, inv.ID).
		Scan(&status, &reason); err != nil {
		t.Fatal(err)
	}
	if status != "suppressed" || reason != "customer_made_invoice" {
		t.Errorf("the customer-made invoice's notification is %s (%s), want suppressed (customer_made_invoice)", status, reason)
	}
}

// What a customer asks for with Prefer: respond-async is its own invoice,
// exactly as the synchronous POST it defers: not e-mailed to the address
// it named (TestACustomerCannotMailAStrangerFromTheMerchant), holding no
// redemption of its coupon while a draft
// (TestOneCustomersDraftsDoNotExhaustACoupon), and its own to change.
// Until 2026-12-07 the request came back as the function's own event and
// made a merchant's invoice: the merchant mailed whatever the customer
// wrote to any address, and a customer's async drafts used up a
// promotion for everyone.
func TestACustomersAsyncInvoiceIsTheCustomersOwn(t *testing.T) {
	g, mp := mailRig(t)
	mallory, bob := uuid.NewString(), uuid.NewString()
	acct := g.account(mallory, "USD")
	promo := "ASYNC-" + mallory[:8]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": promo, "percent_off": "10", "max_redemptions": 2}), 201)
	async := func(body map[string]any) invoicing.Invoice {
		t.Helper()
		rec := g.call(call{method: "POST", path: "/invoices", body: body, sub: mallory, role: auth.RoleCustomer,
			header: http.Header{"Prefer": {"respond-async"}}})
		must(t, rec, 202)
		req := decode[store.InvoiceRequest](t, rec)
		if res := g.deliver(g.events(req.ID)...); res.Processed != 1 {
			t.Fatalf("delivery of the request: %+v", res)
		}
		got := decode[store.InvoiceRequest](t, g.asCustomer(mallory, "GET", "/invoice-requests/"+req.ID, nil))
		if got.Status != "succeeded" || got.InvoiceID == nil {
			t.Fatalf("request %s is %s: %s", req.ID, got.Status, got.Problem)
		}
		return g.invoice(*got.InvoiceID)
	}

	stranger := "stranger-" + uuid.NewString()[:8] + "@elsewhere.example"
	body := invoiceBody(mallory, acct,
		map[string]any{"description": "Your account is suspended: sign in at https://evil.example/acme to restore it", "quantity": "1", "unit_amount": 0})
	body["auto_finalize"] = true
	body["customer"] = map[string]any{"name": "Acme security team", "email": stranger}
	phish := async(body)
	g.deliver(g.notificationEvents(phish.ID, events.NotifyInvoiceFinalized)...)
	g.tick()
	if got := inbox(t, mp, stranger); len(got) != 0 {
		t.Errorf("a customer's async invoice had the merchant mail %s %d message(s), the first %q", stranger, len(got), got[0].Subject)
	}

	var drafts []invoicing.Invoice
	for range 3 {
		b := invoiceBody(mallory, acct)
		b["coupon"] = promo
		drafts = append(drafts, async(b))
	}
	b := invoiceBody(bob, g.account(bob, "USD"))
	b["coupon"] = promo
	b["auto_finalize"] = true
	if rec := g.asCustomer(bob, "POST", "/invoices", b); rec.Code != 201 {
		t.Errorf("after one customer's three async drafts, another customer is refused the coupon: %d %s", rec.Code, rec.Body)
	}
	must(t, g.asCustomer(mallory, "POST", "/invoices/"+drafts[0].ID+"/finalize", nil), 200)
}
