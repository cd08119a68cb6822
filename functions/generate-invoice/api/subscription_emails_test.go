package api

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/notify"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/mailpit"
)

// sendNotices delivers the notifications requested about subject of kind
// back to the function, as billing-events does, runs the sender and
// answers how many were requested.
func (g *rig) sendNotices(subject, kind string) int {
	g.t.Helper()
	evs := g.notificationEvents(subject, kind)
	if len(evs) > 0 {
		g.deliver(evs...)
	}
	g.tick()
	return len(evs)
}

// subjects keeps the emails whose subject starts with prefix.
func subjects(ms []mailpit.Summary, prefix string) []mailpit.Summary {
	var out []mailpit.Summary
	for _, m := range ms {
		if strings.HasPrefix(m.Subject, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// A subscription's customer hears of each step, by email, through the real
// Mailpit: the renewal (its period's invoice, "Your subscription
// renewed"), a new plan (the old and the new, the new price), the end; a
// PATCH that leaves the plan as it is, and a redelivered notice, send
// nothing.
func TestSubscriptionRenewalChangeAndCancelEmailTheCustomer(t *testing.T) {
	g, mp := mailRig(t)
	addr := "grace-" + uuid.NewString()[:8] + "@example.com"
	user := uuid.NewString()
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	body := subBody(user, monthly(2900))
	body["customer"] = map[string]any{"name": "Grace Hopper", "email": addr}
	sub := g.subscribe(body)

	// The renewal: the tick bills May, its invoice is the notice.
	g.clock.Set(day("2026-05-01T00:00:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	may := invs[len(invs)-1]
	if len(invs) != 2 || may.BillingReason != invoicing.ReasonSubscriptionCycle {
		t.Fatalf("%d invoices, the last %s", len(invs), may.BillingReason)
	}
	if n := g.sendNotices(may.ID, events.NotifyInvoiceFinalized); n != 1 {
		t.Fatalf("%d renewal notices requested", n)
	}
	renewed := inbox(t, mp, addr)
	if len(renewed) != 1 || !strings.HasPrefix(renewed[0].Subject, "Your subscription renewed: invoice "+*may.Number) ||
		!strings.Contains(renewed[0].Subject, "$29.00") || renewed[0].Attachments != 1 {
		t.Fatalf("renewal emails %+v", renewed)
	}

	// A new plan: one notice, from Pro to Max at the new price.
	g.clock.Set(day("2026-05-16T00:00:00Z"))
	must(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{
		"plan": map[string]any{"name": "Max", "amount": 6000, "currency": "USD", "interval": "month"}}), 200)
	if n := g.sendNotices(sub.ID, events.NotifySubscriptionChanged); n != 1 {
		t.Fatalf("%d subscription_changed notices requested", n)
	}
	// The same plan again, and the terms changed: no notice.
	must(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{
		"plan": map[string]any{"name": "Max", "amount": 6000, "currency": "USD", "interval": "month"}, "net_terms_days": 7}), 200)
	if n := len(g.notificationEvents(sub.ID, events.NotifySubscriptionChanged)); n != 1 {
		t.Fatalf("%d subscription_changed notices after a PATCH that kept the plan", n)
	}
	changed := subjects(inbox(t, mp, addr), "Your subscription changed")
	if len(changed) != 1 || changed[0].Subject != "Your subscription changed: Pro → Max, $60.00 per month" {
		t.Fatalf("change emails %+v", changed)
	}
	msg, err := mp.Message(t.Context(), changed[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "Hello Grace Hopper,") || !strings.Contains(msg.Text, "from Pro ($29.00 per month) to Max") ||
		!strings.Contains(msg.HTML, "<strong>Max</strong>") || !strings.Contains(msg.HTML, "$60.00 per month") || len(msg.Attachments) != 0 {
		t.Fatalf("change email:\n%s\n%s", msg.Text, msg.HTML)
	}

	// Canceled now: the end, dated.
	g.clock.Set(day("2026-05-20T12:00:00Z"))
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", map[string]any{"at_period_end": false}), 200)
	notices := g.notificationEvents(sub.ID, events.NotifySubscriptionCanceled)
	if n := g.sendNotices(sub.ID, events.NotifySubscriptionCanceled); n != 1 {
		t.Fatalf("%d subscription_canceled notices requested", n)
	}
	ended := subjects(inbox(t, mp, addr), "Your Max subscription ended")
	if len(ended) != 1 || ended[0].Subject != "Your Max subscription ended on 2026-05-20" {
		t.Fatalf("cancel emails %+v", ended)
	}
	if msg, err := mp.Message(t.Context(), ended[0].ID); err != nil || !strings.Contains(msg.Text, "not be billed for it again") ||
		!strings.Contains(msg.HTML, "ended on 2026-05-20") {
		t.Fatalf("cancel email (%v):\n%s", err, msg.Text)
	}

	// The log names the subscription, no invoice; a redelivered notice
	// sends nothing twice.
	if res := g.deliver(notices...); res.Duplicates != 1 {
		t.Fatalf("redelivery: %+v", res)
	}
	g.tick()
	log := g.notifications("subscription_id=" + sub.ID)
	if len(log) != 2 {
		t.Fatalf("%d notifications of the subscription, want 2 (changed, canceled)", len(log))
	}
	for _, n := range log {
		if n.Status != notify.Sent || n.InvoiceID != nil || n.SubscriptionID == nil || *n.SubscriptionID != sub.ID || n.Recipient != addr ||
			n.AccountID != sub.AccountID || n.UserID != user {
			t.Fatalf("notification %+v", n)
		}
	}
	if got := inbox(t, mp, addr); len(got) != 3 {
		t.Fatalf("%d emails in all, want 3 (renewed, changed, ended)", len(got))
	}
}

// A cancellation at the period's end is told when the end comes (the tick
// ends the subscription), dated the period's end.
func TestScheduledCancellationEmailsWhenTheSubscriptionEnds(t *testing.T) {
	g, mp := mailRig(t)
	addr := "ada-" + uuid.NewString()[:8] + "@example.com"
	user := uuid.NewString()
	g.clock.Set(day("2026-02-10T00:00:00Z"))
	body := subBody(user, monthly(1000))
	body["customer"] = map[string]any{"name": "Ada Lovelace", "email": addr}
	sub := g.subscribe(body)
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", nil), 200)
	if n := g.sendNotices(sub.ID, events.NotifySubscriptionCanceled); n != 0 {
		t.Fatalf("%d notices before the end", n)
	}
	g.clock.Set(day("2026-03-10T00:00:00Z"))
	g.tick()
	if n := g.sendNotices(sub.ID, events.NotifySubscriptionCanceled); n != 1 {
		t.Fatalf("%d notices at the end", n)
	}
	got := subjects(inbox(t, mp, addr), "Your Pro subscription ended")
	if len(got) != 1 || got[0].Subject != "Your Pro subscription ended on 2026-03-10" {
		t.Fatalf("emails %+v", got)
	}
}
