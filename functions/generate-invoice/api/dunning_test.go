package api

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/events"
)

// TestOverdueFlagAndDunningSchedule follows an unpaid invoice with the
// injected clock: overdue the day after its due date (a flag and an event,
// the invoice stays open), three collection retries at due+1d, +3d, +7d,
// uncollectible at +14d. Ticks are idempotent: a second tick at the same
// time does nothing.
func TestOverdueFlagAndDunningSchedule(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"], body["net_terms_days"] = true, 5
	inv := g.createInvoice("", body) // 2026-03-10, due 2026-03-15
	manual := invoiceBody(uuid.NewString(), uuid.NewString())
	manual["auto_finalize"], manual["net_terms_days"], manual["collection_method"] = true, 5, invoicing.SendInvoice
	sendInv := g.createInvoice("", manual)
	paidLater := g.createInvoice("", body)

	step := func(at string, wantStatus string, wantOverdue bool, wantAttempts int) {
		t.Helper()
		g.clock.Set(day(at))
		g.tick()
		g.tick()
		got := g.invoice(inv.ID)
		if got.Status != wantStatus || got.Overdue != wantOverdue || got.DunningAttempts != wantAttempts {
			t.Fatalf("%s: status %s overdue %v attempts %d, want %s %v %d", at, got.Status, got.Overdue, got.DunningAttempts,
				wantStatus, wantOverdue, wantAttempts)
		}
	}
	step("2026-03-15T23:59:00Z", invoicing.StatusOpen, false, 0) // still the due date
	step("2026-03-16T00:00:00Z", invoicing.StatusOpen, true, 0)
	if got := g.invoice(inv.ID); got.NextPaymentAttemptAt == nil || !got.NextPaymentAttemptAt.Equal(day("2026-03-17T00:00:00Z")) {
		t.Fatalf("next dunning at %v", got.NextPaymentAttemptAt)
	}
	must(t, g.asAdmin("POST", "/invoices/"+paidLater.ID+"/pay", nil), 200)
	step("2026-03-17T00:00:00Z", invoicing.StatusOpen, true, 1)
	step("2026-03-18T12:00:00Z", invoicing.StatusOpen, true, 1)
	step("2026-03-19T00:00:00Z", invoicing.StatusOpen, true, 2)
	step("2026-03-23T00:00:00Z", invoicing.StatusOpen, true, 3)
	step("2026-03-29T23:00:00Z", invoicing.StatusOpen, true, 3)
	step("2026-03-30T00:00:00Z", invoicing.StatusUncollectible, true, 3)

	want := "invoice.created,invoice.finalized,notification.requested,invoice.overdue,notification.requested," +
		"invoice.payment_retry_requested,notification.requested,invoice.payment_retry_requested,notification.requested," +
		"invoice.payment_retry_requested,notification.requested,invoice.uncollectible"
	if got := strings.Join(types(g.events(inv.ID)), ","); got != want {
		t.Fatalf("events:\n got %s\nwant %s", got, want)
	}
	retry := eventData[events.Invoice](g, inv.ID, events.TypeInvoicePaymentRetryRequested)
	if retry.Attempt != 3 || retry.AmountDue != 2100 || !retry.Overdue {
		t.Fatalf("last retry = %+v", retry)
	}
	reminder := eventData[events.NotificationRequested](g, inv.ID, events.TypeNotificationRequested)
	if reminder.Kind != events.NotifyInvoiceReminder || reminder.Attempt != 3 || reminder.AmountDue != 2100 {
		t.Fatalf("last notification = %+v", reminder)
	}
	// send_invoice: no automatic retries, but uncollectible all the same.
	if got := strings.Join(types(g.events(sendInv.ID)), ","); !strings.HasSuffix(got, "invoice.overdue,notification.requested,invoice.uncollectible") {
		t.Fatalf("send_invoice events: %s", got)
	}
	// Paid before its retries: dunning stopped.
	if got := g.invoice(paidLater.ID); got.Status != invoicing.StatusPaid || got.DunningAttempts != 0 {
		t.Fatalf("paid invoice = %s attempts %d", got.Status, got.DunningAttempts)
	}
}

func TestDunningScheduleIsConfigurable(t *testing.T) {
	var d durations
	if err := d.Decode("12h, 36h,96h"); err != nil || len(d) != 3 || d[1] != 36*time.Hour {
		t.Fatalf("decode = %v %v", d, err)
	}
	for _, bad := range []string{"1d", "24h,12h", "-1h"} {
		if err := d.Decode(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	cfg := DefaultConfig()
	cfg.DunningSchedule, cfg.UncollectibleAfter = durations{time.Hour}, 0
	g := newRigWith(t, cfg)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"], body["net_terms_days"] = true, 0
	inv := g.createInvoice("", body)
	g.clock.Set(day("2026-03-11T00:00:00Z"))
	g.tick()
	g.clock.Set(day("2026-03-11T01:00:00Z"))
	g.tick()
	g.clock.Set(day("2027-01-01T00:00:00Z"))
	g.tick()
	if got := g.invoice(inv.ID); got.Status != invoicing.StatusOpen || got.DunningAttempts != 1 || got.NextPaymentAttemptAt != nil {
		t.Fatalf("with one retry and no uncollectible step: %+v", got)
	}
	bad := DefaultConfig()
	bad.UncollectibleAfter = configDuration(48 * time.Hour)
	if err := bad.check(); err == nil {
		t.Fatal("an uncollectible step before the last retry was accepted")
	}
}

// Ticks that come late (generate-invoice down for days, the schedule
// stopped) find several dunning steps past at once. A tick delivered
// twice (the scheduler's retry, a second replica's tick) must not take a
// second step at the same instant: each took one, so a tick and its
// duplicate asked capture-payment to charge the card twice within the
// same second, and four ticks a minute apart ran the whole schedule to
// uncollectible. After one catch-up retry the next keeps the schedule's
// spacing from it.
func TestALateTickDeliveredTwiceTakesOneDunningStep(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"], body["net_terms_days"] = true, 5
	inv := g.createInvoice("", body) // 2026-03-10, due 2026-03-15
	step := func(at string, wantStatus string, wantAttempts int) {
		t.Helper()
		g.clock.Set(day(at))
		g.tick()
		g.tick() // delivered twice
		got := g.invoice(inv.ID)
		if got.Status != wantStatus || got.DunningAttempts != wantAttempts {
			t.Fatalf("%s: status %s attempts %d, want %s %d", at, got.Status, got.DunningAttempts, wantStatus, wantAttempts)
		}
	}
	step("2026-03-16T00:00:00Z", invoicing.StatusOpen, 0) // overdue; retries due 03-17, 03-19, 03-23
	// No tick until 03-25: one retry now, the next 48 h later (72h-24h).
	step("2026-03-25T00:00:00Z", invoicing.StatusOpen, 1)
	step("2026-03-26T23:59:00Z", invoicing.StatusOpen, 1)
	step("2026-03-27T00:00:00Z", invoicing.StatusOpen, 2)
	step("2026-03-31T00:00:00Z", invoicing.StatusOpen, 3) // +96h (168h-72h)
	step("2026-04-06T23:59:00Z", invoicing.StatusOpen, 3)
	step("2026-04-07T00:00:00Z", invoicing.StatusUncollectible, 3) // +168h (336h-168h)
	n := 0
	for _, typ := range types(g.events(inv.ID)) {
		if typ == "invoice.payment_retry_requested" {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d retries requested, want 3", n)
	}
}
