package api

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// endpointDisabled is a billfn.webhook_endpoint.disabled as handle-webhook
// writes it, from source.
func endpointDisabled(t *testing.T, source string) (events.Event, events.WebhookEndpointDisabled) {
	t.Helper()
	status := 503
	now := time.Now().UTC().Truncate(time.Second)
	d := events.WebhookEndpointDisabled{EndpointID: uuid.NewString(), URL: "https://hooks-" + uuid.NewString()[:8] + ".example.com/billfn",
		Reason: "delivery failed 12 attempts over 67h35m5s, the last with HTTP 503", DisabledAt: now,
		DeliveryID: uuid.NewString(), EventType: events.TypeInvoicePaid, Attempts: 12, FailingSince: now.Add(-68 * time.Hour), LastStatus: &status}
	return event(t, source, events.TypeWebhookEndpointDisabled, d.EndpointID, d), d
}

// operatorNotices are the log's notifications about endpoint id.
func (g *rig) operatorNotices(id string) []notify.Notification {
	g.t.Helper()
	var out []notify.Notification
	for _, n := range g.notifications("limit=100") {
		if n.EndpointID != nil && *n.EndpointID == id {
			out = append(out, n)
		}
	}
	return out
}

// A webhook endpoint handle-webhook disabled reaches the merchant's
// operator (EMAIL_OPERATOR) once, naming the URL and the reason in the
// subject, the text and the HTML part — a redelivered event sends nothing
// twice — and the same notice forged by another function is parked.
func TestDisabledEndpointReachesTheOperatorOnce(t *testing.T) {
	mp := testenv.StartMailpit(t)
	cfg := DefaultConfig()
	cfg.Email.SMTPURL = mp.SMTPURL()
	cfg.Email.From = "Acme Billing <billing@acme.example>"
	cfg.Email.Operator = "ops-" + uuid.NewString()[:8] + "@acme.example"
	g := newRigWith(t, cfg)

	ev, d := endpointDisabled(t, "handle-webhook")
	if res := g.deliver(ev); res.Processed != 1 {
		t.Fatalf("delivery: %+v", res)
	}
	g.tick()
	if res := g.deliver(ev); res.Processed != 0 {
		t.Fatalf("redelivery: %+v", res)
	}
	g.tick()

	got := inbox(t, mp, cfg.Email.Operator)
	if len(got) != 1 {
		t.Fatalf("%d emails to the operator, want 1: %+v", len(got), got)
	}
	if s := got[0].Subject; !strings.Contains(s, d.URL) || !strings.Contains(strings.ToLower(s), "disabled") {
		t.Fatalf("subject %q: want the URL and that it is disabled", s)
	}
	msg, err := mp.Message(t.Context(), got[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	for part, body := range map[string]string{"text": msg.Text, "HTML": msg.HTML} {
		for _, want := range []string{d.URL, d.Reason, d.EndpointID, "HTTP 503"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s part does not name %q:\n%s", part, want, body)
			}
		}
	}
	log := g.operatorNotices(d.EndpointID)
	if len(log) != 1 || log[0].Status != notify.Sent || log[0].Kind != notify.KindEndpointDisabled || log[0].Recipient != cfg.Email.Operator ||
		log[0].Endpoint == nil || log[0].Endpoint.URL != d.URL || log[0].InvoiceID != nil || log[0].AccountID != "" {
		t.Fatalf("log %+v", log)
	}
	// An admin may send it again.
	must(t, g.call(call{method: "POST", path: "/notifications/" + log[0].ID + "/resend", sub: g.admin, role: auth.RoleAdmin, key: uuid.NewString()}), 202)
	g.tick()
	if n := len(inbox(t, mp, cfg.Email.Operator)); n != 2 {
		t.Fatalf("%d emails to the operator after a resend, want 2", n)
	}

	// Only handle-webhook owns the fact: from anyone else it is parked.
	for _, src := range []string{"capture-payment", "generate-invoice", "kcat"} {
		forged, fd := endpointDisabled(t, src)
		if res := g.deliver(forged); res.Parked != 1 || res.Processed != 0 {
			t.Fatalf("from %s: %+v, want parked", src, res)
		}
		if log := g.operatorNotices(fd.EndpointID); len(log) != 0 {
			t.Fatalf("from %s: logged %+v", src, log)
		}
	}
	g.tick()
	if n := len(inbox(t, mp, cfg.Email.Operator)); n != 2 {
		t.Fatalf("%d emails to the operator after forged notices, want 2", n)
	}
}

// Without EMAIL_OPERATOR the notice is logged as not sent, with the
// reason, as an invoice without an address is.
func TestDisabledEndpointWithoutAnOperatorIsSuppressedWithTheReason(t *testing.T) {
	g, mp := mailRig(t)
	ev, d := endpointDisabled(t, "handle-webhook")
	if res := g.deliver(ev); res.Processed != 1 {
		t.Fatalf("delivery: %+v", res)
	}
	g.tick()
	log := g.operatorNotices(d.EndpointID)
	if len(log) != 1 || log[0].Status != notify.Suppressed || log[0].Reason == nil || *log[0].Reason != notify.ReasonNoOperator {
		t.Fatalf("log %+v", log)
	}
	if ms, err := mp.Messages(t.Context(), ""); err != nil || len(ms) != 0 {
		t.Fatalf("Mailpit holds %d messages (%v)", len(ms), err)
	}
}
