package api

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
)

func (g *rig) subscribe(body map[string]any) invoicing.Subscription {
	g.t.Helper()
	rec := g.call(call{method: "POST", path: "/subscriptions", body: body, sub: g.admin, role: auth.RoleService})
	must(g.t, rec, 201)
	return decode[invoicing.Subscription](g.t, rec)
}

func subBody(user string, plan map[string]any, kv ...any) map[string]any {
	b := map[string]any{"account_id": uuid.NewString(), "user_id": user, "plan": plan,
		"customer": map[string]any{"name": "Grace Hopper", "email": "grace@example.com"}}
	for i := 0; i < len(kv); i += 2 {
		b[kv[i].(string)] = kv[i+1]
	}
	// The account is known to the fake ledger, owned by user, in the plan's currency.
	account, _ := b["account_id"].(string)
	cur, _ := plan["currency"].(string)
	knownAccount(account, user, strings.ToUpper(cur))
	return b
}

func monthly(amount int64) map[string]any {
	return map[string]any{"name": "Pro", "amount": amount, "currency": "USD", "interval": "month", "interval_count": 1}
}

// subInvoices lists a subscription's invoices, oldest first.
func (g *rig) subInvoices(subID string) []invoicing.Invoice {
	g.t.Helper()
	rec := g.asAdmin("GET", "/invoices?limit=100&subscription_id="+subID, nil)
	must(g.t, rec, 200)
	list := decode[struct{ Data []invoicing.Invoice }](g.t, rec)
	out := make([]invoicing.Invoice, 0, len(list.Data))
	for i := len(list.Data) - 1; i >= 0; i-- {
		out = append(out, g.invoice(list.Data[i].ID))
	}
	return out
}

func periods(invs []invoicing.Invoice) string {
	var s []string
	for _, inv := range invs {
		if inv.PeriodStart != nil {
			s = append(s, inv.PeriodStart.Format("01-02")+".."+inv.PeriodEnd.Format("01-02"))
		}
	}
	return strings.Join(s, " ")
}

// TestSubscriptionBillsEveryPeriodAcrossMonthEndsInALeapYear: anchored on
// the 31st, a monthly plan bills Jan 31, Feb 29 (2028 is a leap year),
// Mar 31, Apr 30 — each period once, however often the tick runs.
func TestSubscriptionBillsEveryPeriodAcrossMonthEndsInALeapYear(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2028-01-31T10:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), monthly(2900)))
	if sub.Status != invoicing.SubActive || sub.LatestInvoiceID == nil || sub.MRR != 2900 || sub.AnchorDay != 31 {
		t.Fatalf("created = %+v", sub)
	}
	for _, at := range []string{"2028-02-15T00:00:00Z", "2028-02-29T10:00:00Z", "2028-03-31T09:59:59Z", "2028-03-31T10:00:00Z",
		"2028-04-30T10:00:00Z", "2028-04-30T10:00:01Z"} {
		g.clock.Set(day(at))
		g.tick()
		g.tick()
	}
	invs := g.subInvoices(sub.ID)
	if got := periods(invs); got != "01-31..02-29 02-29..03-31 03-31..04-30 04-30..05-31" {
		t.Fatalf("periods = %s", got)
	}
	for _, inv := range invs {
		// (Due at once with net 0, they are dunned as the months pass.)
		if inv.Status == invoicing.StatusDraft || inv.Total != 2900 || inv.Number == nil || inv.BillingReason != invoicing.ReasonSubscriptionCycle ||
			inv.Lines[0].PeriodStart == nil || inv.DueDate == nil || !inv.DueDate.Equal(invoicing.UTCDate(*inv.FinalizedAt)) {
			t.Fatalf("invoice = %+v", inv)
		}
	}
	got := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
	if got.PeriodsBilled != 4 || !got.CurrentPeriodStart.Equal(day("2028-04-30T10:00:00Z")) || !got.NextBillingAt.Equal(day("2028-05-31T10:00:00Z")) {
		t.Fatalf("subscription = %+v", got)
	}
	evs := types(g.events(sub.ID))
	if evs[0] != "subscription.created" || len(evs) != 4 {
		t.Fatalf("subscription events = %v", evs)
	}
	created := eventData[events.Subscription](g, sub.ID, events.TypeSubscriptionCreated)
	if created.MRR != 2900 || created.Plan.Interval != "month" || created.CurrentPeriodEnd == nil {
		t.Fatalf("created event = %+v", created)
	}
}

// TestSubscriptionCatchUpBillsEachMissedPeriodOnce: three months without a
// tick, then one tick bills the three missed periods, each once.
func TestSubscriptionCatchUpBillsEachMissedPeriodOnce(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-01-15T08:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), monthly(1000)))
	g.clock.Set(day("2026-04-20T00:00:00Z")) // downtime: no tick since January
	g.tick()
	g.tick()
	invs := g.subInvoices(sub.ID)
	if got := periods(invs); got != "01-15..02-15 02-15..03-15 03-15..04-15 04-15..05-15" {
		t.Fatalf("periods = %s", got)
	}
	numbers := map[string]bool{}
	for i, inv := range invs {
		numbers[*inv.Number] = true
		// Issued on the catch-up day: due then, not months ago.
		if i > 0 && inv.DueDate.Format(time.DateOnly) != "2026-04-20" {
			t.Fatalf("due date = %s", inv.DueDate.Format(time.DateOnly))
		}
	}
	if len(numbers) != 4 {
		t.Fatalf("numbers = %v", numbers)
	}
	// The database refuses a second invoice for a billed period.
	err := g.s.st.InTx(context.Background(), func(tx *store.Tx) error {
		inv := g.s.b.SubscriptionInvoice(&invoicing.Subscription{ID: sub.ID, AccountID: sub.AccountID, UserID: sub.UserID, Plan: invoicing.Plan{Currency: "USD"}, CollectionMethod: invoicing.ChargeAutomatically},
			invoicing.ReasonSubscriptionCycle, g.clock.Now())
		inv.PeriodStart, inv.PeriodEnd = invs[1].PeriodStart, invs[1].PeriodEnd
		return store.InsertInvoices(context.Background(), tx, []*invoicing.Invoice{inv})
	})
	if err != store.ErrPeriodBilled {
		t.Fatalf("second invoice for a period: %v", err)
	}
}

func TestSubscriptionCatchUpIsBoundedPerRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxCatchUp = 2
	g := newRigWith(t, cfg)
	g.clock.Set(day("2026-01-01T00:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), map[string]any{"name": "Daily", "amount": 100, "currency": "USD", "interval": "day"}))
	g.clock.Set(day("2026-01-08T00:00:00Z"))
	g.tick() // several bounded transactions in one tick
	if n := len(g.subInvoices(sub.ID)); n != 8 {
		t.Fatalf("%d invoices, want 8 (Jan 1..8)", n)
	}
}

func TestSubscriptionTrialThenFirstInvoice(t *testing.T) {
	g := newRig(t)
	sub := g.subscribe(subBody(uuid.NewString(), monthly(4900), "trial_end", "2026-03-24T09:30:00Z"))
	if sub.Status != invoicing.SubTrialing || sub.LatestInvoiceID != nil || !sub.CurrentPeriodEnd.Equal(day("2026-03-24T09:30:00Z")) {
		t.Fatalf("created = %+v", sub)
	}
	g.clock.Set(day("2026-03-24T09:29:59Z"))
	g.tick()
	if n := len(g.subInvoices(sub.ID)); n != 0 {
		t.Fatalf("%d invoices during the trial", n)
	}
	g.clock.Set(day("2026-03-24T09:30:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	got := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
	if len(invs) != 1 || periods(invs) != "03-24..04-24" || got.Status != invoicing.SubActive {
		t.Fatalf("after the trial: %s, status %s", periods(invs), got.Status)
	}
	if up := eventData[events.Subscription](g, sub.ID, events.TypeSubscriptionUpdated); up.Status != invoicing.SubActive {
		t.Fatalf("updated event = %+v", up)
	}
}

func TestSubscriptionAnchorDayProratesTheFirstPeriod(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-01-10T00:00:00Z"))
	vat := g.taxRate("VAT", "20", false, false)
	sub := g.subscribe(subBody(uuid.NewString(), monthly(3100), "anchor_day", 1, "tax_rate_ids", []string{vat}))
	inv := g.invoice(*sub.LatestInvoiceID)
	// 22 of January's 31 days of 31.00, plus 20% VAT
	if inv.Subtotal != 2200 || inv.Tax != 440 || inv.Total != 2640 || !strings.Contains(inv.Lines[0].Description, "prorated") {
		t.Fatalf("first invoice = %+v", inv)
	}
	g.clock.Set(day("2026-02-01T00:00:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	if periods(invs) != "01-10..02-01 02-01..03-01" || invs[1].Total != 3720 {
		t.Fatalf("periods %s, second total %d", periods(invs), invs[1].Total)
	}
}

func TestPlanChangeProratesTheRestOfThePeriod(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	user := uuid.NewString()
	sub := g.subscribe(subBody(user, monthly(3000)))
	// Half of April (30 days) left: credit 1500 for Pro, debit 3000 for Max.
	g.clock.Set(day("2026-04-16T00:00:00Z"))
	up := map[string]any{"name": "Max", "amount": 6000, "currency": "USD", "interval": "month"}
	problemOf(t, g.asCustomer(user, "PATCH", "/subscriptions/"+sub.ID, map[string]any{"plan": up}), 403, "forbidden")
	rec := g.call(call{method: "PATCH", path: "/subscriptions/" + sub.ID, body: map[string]any{"plan": up}, sub: g.admin, role: auth.RoleAdmin})
	must(t, rec, 200)
	got := decode[invoicing.Subscription](t, rec)
	if len(got.PendingLines) != 2 || got.PendingLines[0].UnitAmount != -1500 || got.PendingLines[1].UnitAmount != 3000 || got.MRR != 6000 {
		t.Fatalf("after upgrade = %+v", got)
	}
	g.clock.Set(day("2026-05-01T00:00:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	may := invs[len(invs)-1]
	if may.Total != 6000-1500+3000 || len(may.Lines) != 3 || !may.Lines[1].Proration {
		t.Fatalf("May invoice = %d with %d lines", may.Total, len(may.Lines))
	}
	if s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil)); len(s.PendingLines) != 0 {
		t.Fatalf("pending lines left: %+v", s.PendingLines)
	}

	// always_invoice: the proration is invoiced at once (May has 31 days;
	// 10 days left: credit 6000*10/31 = 1935.48 -> 1935, debit 9000*10/31 = 2903.2 -> 2903).
	g.clock.Set(day("2026-05-22T00:00:00Z"))
	rec = g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"proration_behavior": "always_invoice",
		"plan": map[string]any{"name": "Ultra", "amount": 9000, "currency": "USD", "interval": "month"}})
	must(t, rec, 200)
	now := decode[invoicing.Subscription](t, rec)
	inv := g.invoice(*now.LatestInvoiceID)
	if inv.BillingReason != invoicing.ReasonSubscriptionUpdate || inv.Total != 2903-1935 || inv.Status != invoicing.StatusOpen {
		t.Fatalf("proration invoice = %s %d %s", inv.BillingReason, inv.Total, inv.Status)
	}
	// A downgrade's net credit cannot be an invoice: it waits for the next one.
	rec = g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"proration_behavior": "always_invoice",
		"plan": map[string]any{"name": "Lite", "amount": 1000, "currency": "USD", "interval": "month"}})
	must(t, rec, 200)
	if s := decode[invoicing.Subscription](t, rec); len(s.PendingLines) != 2 || *s.LatestInvoiceID != inv.ID {
		t.Fatalf("after downgrade = %+v", s)
	}
	problemOf(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{
		"plan": map[string]any{"name": "Euro", "amount": 1000, "currency": "EUR", "interval": "month"}}), 422, "currency_mismatch")
	problemOf(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"tax_rate_ids": []string{uuid.NewString()}}), 422, "tax_rate_unknown")
}

// TestPlanIntervalChangeRestartsTheCycle: monthly to yearly bills the new
// year at once, with the credit for the unused month on the same invoice.
func TestPlanIntervalChangeRestartsTheCycle(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-06-01T00:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), monthly(3000)))
	g.clock.Set(day("2026-06-11T00:00:00Z")) // 20 of June's 30 days unused: credit 2000
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{
		"plan": map[string]any{"name": "Pro yearly", "amount": 30000, "currency": "USD", "interval": "year"}})
	must(t, rec, 200)
	got := decode[invoicing.Subscription](t, rec)
	inv := g.invoice(*got.LatestInvoiceID)
	if inv.Total != 28000 || periods([]invoicing.Invoice{inv}) != "06-11..06-11" || !got.NextBillingAt.Equal(day("2027-06-11T00:00:00Z")) {
		t.Fatalf("yearly invoice total %d period %s next %v", inv.Total, periods([]invoicing.Invoice{inv}), got.NextBillingAt)
	}
}

// TestPlanIntervalChangeKeepsAScheduledCancel: as in Stripe,
// cancel_at_period_end stays set across a plan change until someone sets
// it false. An interval change restarts the cycle, so the scheduled end
// moves to the end of the new cycle's first period (billed at once), and
// the subscription ends there; it used to drop the customer's cancel and
// bill on, year after year.
func TestPlanIntervalChangeKeepsAScheduledCancel(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	g.clock.Set(day("2026-06-01T00:00:00Z"))
	sub := g.subscribe(subBody(user, monthly(3000)))
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", nil), 200)
	g.clock.Set(day("2026-06-11T00:00:00Z"))
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{
		"plan": map[string]any{"name": "Pro yearly", "amount": 30000, "currency": "USD", "interval": "year"}})
	must(t, rec, 200)
	got := decode[invoicing.Subscription](t, rec)
	if !got.CancelAtPeriodEnd || got.CancelAt == nil || !got.CancelAt.Equal(day("2027-06-11T00:00:00Z")) {
		t.Fatalf("after the interval change: cancel_at_period_end %v, cancel_at %v; want the end of the new period, 2027-06-11",
			got.CancelAtPeriodEnd, got.CancelAt)
	}
	g.clock.Set(day("2027-06-12T00:00:00Z"))
	g.tick()
	s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
	invs := g.subInvoices(sub.ID)
	if s.Status != invoicing.SubCanceled {
		t.Fatalf("a year later: %s with %d invoice(s) (%s)", s.Status, len(invs), periods(invs))
	}
	for _, inv := range invs {
		if inv.PeriodStart != nil && inv.PeriodStart.After(day("2026-06-11T00:00:00Z")) {
			t.Errorf("billed a period after the scheduled end: %s", periods([]invoicing.Invoice{inv}))
		}
	}
}

func TestCancelAtPeriodEndOrNow(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	g.clock.Set(day("2026-02-10T00:00:00Z"))
	sub := g.subscribe(subBody(user, monthly(1000)))
	problemOf(t, g.asCustomer(uuid.NewString(), "POST", "/subscriptions/"+sub.ID+"/cancel", nil), 404, "not_found")
	rec := g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", nil) // at period end by default
	must(t, rec, 200)
	got := decode[invoicing.Subscription](t, rec)
	if got.Status != invoicing.SubActive || !got.CancelAtPeriodEnd || !got.CancelAt.Equal(day("2026-03-10T00:00:00Z")) {
		t.Fatalf("scheduled cancel = %+v", got)
	}
	g.clock.Set(day("2026-03-10T00:00:00Z"))
	g.tick()
	got = decode[invoicing.Subscription](t, g.asCustomer(user, "GET", "/subscriptions/"+sub.ID, nil))
	if got.Status != invoicing.SubCanceled || got.CanceledAt == nil || len(g.subInvoices(sub.ID)) != 1 {
		t.Fatalf("after period end = %+v, %d invoices", got, len(g.subInvoices(sub.ID)))
	}
	problemOf(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", nil), 422, "subscription_canceled")
	// The fact, then the customer's notice (an email: emails_test.go).
	if evs := types(g.events(sub.ID)); len(evs) < 2 || evs[len(evs)-2] != "subscription.canceled" || evs[len(evs)-1] != "notification.requested" {
		t.Fatalf("events = %v", evs)
	}

	other := g.subscribe(subBody(user, monthly(1000)))
	rec = g.asCustomer(user, "POST", "/subscriptions/"+other.ID+"/cancel", map[string]any{"at_period_end": false})
	must(t, rec, 200)
	if c := decode[invoicing.Subscription](t, rec); c.Status != invoicing.SubCanceled || c.NextBillingAt != nil {
		t.Fatalf("canceled now = %+v", c)
	}
	g.clock.Set(day("2026-06-01T00:00:00Z"))
	g.tick()
	if n := len(g.subInvoices(other.ID)); n != 1 {
		t.Fatalf("%d invoices after canceling", n)
	}
	// Customers list only their own subscriptions.
	list := decode[struct{ Data []invoicing.Subscription }](t, g.asCustomer(user, "GET", "/subscriptions", nil))
	if len(list.Data) != 2 {
		t.Fatalf("customer lists %d subscriptions", len(list.Data))
	}
	if list := decode[struct{ Data []invoicing.Subscription }](t, g.asCustomer(uuid.NewString(), "GET", "/subscriptions", nil)); len(list.Data) != 0 {
		t.Fatalf("a stranger lists %d subscriptions", len(list.Data))
	}
}

func TestSubscriptionCouponRepeatsForItsDuration(t *testing.T) {
	g := newRig(t)
	code := "HALF-" + uuid.NewString()[:6]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": code, "percent_off": "50", "duration": "repeating", "duration_in_months": 2}), 201)
	g.clock.Set(day("2026-01-01T00:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), monthly(2000), "coupon", code))
	for _, at := range []string{"2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"} {
		g.clock.Set(day(at))
		g.tick()
	}
	var totals []int64
	for _, inv := range g.subInvoices(sub.ID) {
		totals = append(totals, inv.Total)
	}
	if fmt.Sprint(totals) != "[1000 1000 2000]" {
		t.Fatalf("totals = %v", totals)
	}
	c := decode[invoicing.Coupon](t, g.asAdmin("GET", "/coupons/"+code, nil))
	if c.TimesRedeemed != 1 {
		t.Fatalf("redeemed %d times", c.TimesRedeemed)
	}
}

func TestSubscriptionProblems(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	problemOf(t, g.asCustomer(user, "POST", "/subscriptions", subBody("", monthly(100))), 403, "forbidden")
	for _, c := range []struct {
		body    map[string]any
		code    string
		pointer string
	}{
		{subBody(user, nil), "validation_failed", "plan"},
		{subBody(user, map[string]any{"name": "X", "amount": 1, "currency": "USD", "interval": "fortnight"}), "validation_failed", "plan/interval"},
		{subBody(user, map[string]any{"name": "X", "amount": 1, "currency": "USD", "interval": "month", "interval_count": 13}), "validation_failed", "plan/interval_count"},
		{subBody(user, map[string]any{"name": "X", "amount": 1, "currency": "USD", "interval": "week"}, "anchor_day", 3), "validation_failed", "anchor_day"},
		{subBody(user, monthly(100), "trial_end", "2026-01-01T00:00:00Z"), "validation_failed", "trial_end"},
		{subBody(user, monthly(-1)), "validation_failed", "plan/amount"},
		{subBody(user, monthly(100), "tax_rate_ids", []string{uuid.NewString()}), "tax_rate_unknown", "tax_rate_ids/0"},
		{subBody(user, monthly(100), "coupon", "NOPE"), "coupon_unknown", "coupon"},
	} {
		doc := problemOf(t, g.call(call{method: "POST", path: "/subscriptions", body: c.body, sub: g.admin, role: auth.RoleService}), 422, c.code)
		if !strings.Contains(fmt.Sprint(doc["errors"]), "#/"+c.pointer) {
			t.Errorf("%s: errors %v lack #/%s", c.code, doc["errors"], c.pointer)
		}
	}
	problemOf(t, g.asAdmin("GET", "/subscriptions/"+uuid.NewString(), nil), 404, "not_found")
	problemOf(t, g.asAdmin("GET", "/subscriptions?status=paused", nil), 422, "validation_failed")
}

// TestSubscriptionStartingLaterCanBeCanceledBeforeItBills: nothing is
// billed for a subscription canceled before its start.
func TestSubscriptionStartingLaterCanBeCanceledBeforeItBills(t *testing.T) {
	g := newRig(t)
	sub := g.subscribe(subBody(uuid.NewString(), monthly(1000), "start", "2026-04-01T00:00:00Z"))
	if sub.LatestInvoiceID != nil || !sub.NextBillingAt.Equal(day("2026-04-01T00:00:00Z")) {
		t.Fatalf("future subscription = %+v", sub)
	}
	rec := g.asAdmin("POST", "/subscriptions/"+sub.ID+"/cancel", nil)
	must(t, rec, 200)
	if c := decode[invoicing.Subscription](t, rec); !c.CancelAt.Equal(day("2026-04-01T00:00:00Z")) || c.Status != invoicing.SubActive {
		t.Fatalf("scheduled = %+v", c)
	}
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	g.tick()
	got := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
	if got.Status != invoicing.SubCanceled || len(g.subInvoices(sub.ID)) != 0 {
		t.Fatalf("after its start: %s with %d invoices", got.Status, len(g.subInvoices(sub.ID)))
	}
}

// TestPlanChangeBillsDuePeriodsAtTheOldPrice: a period that came due
// before the tick ran is billed at the plan it ran under.
func TestPlanChangeBillsDuePeriodsAtTheOldPrice(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-01-01T00:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), monthly(1000)))
	g.clock.Set(day("2026-02-01T00:00:00Z")) // due, no tick yet
	must(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{
		"plan": map[string]any{"name": "Max", "amount": 5000, "currency": "USD", "interval": "month"}}), 200)
	var totals []int64
	for _, inv := range g.subInvoices(sub.ID) {
		totals = append(totals, inv.Total)
	}
	// February at the old price; the change on its first instant prorates
	// the whole month: -1000 + 5000 pending for March.
	if fmt.Sprint(totals) != "[1000 1000]" {
		t.Fatalf("totals = %v", totals)
	}
	g.clock.Set(day("2026-03-01T00:00:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	if last := invs[len(invs)-1]; last.Total != 5000-1000+5000 {
		t.Fatalf("March = %d", last.Total)
	}
}

// Periods that started before a cancellation were consumed: canceling
// bills them first, as a PATCH does, even those the tick has not reached
// yet (its lag, or a catch-up after downtime). Without it, a customer who
// canceled before the tick ran had those periods free.
func TestCancelBillsThePeriodsThatHaveStarted(t *testing.T) {
	g := newRig(t)
	for _, atEnd := range []bool{false, true} {
		user := uuid.NewString()
		g.clock.Set(day("2026-02-10T00:00:00Z"))
		sub := g.subscribe(subBody(user, monthly(1000)))
		// Three periods (Mar 10, Apr 10, May 10) have started; no tick ran.
		g.clock.Set(day("2026-05-20T00:00:00Z"))
		rec := g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", map[string]any{"at_period_end": atEnd})
		must(t, rec, 200)
		g.tick()
		if invs := g.subInvoices(sub.ID); len(invs) != 4 {
			t.Errorf("at_period_end %v: canceled on 05-20 with %d invoice(s) (%s), want 4: 02-10, 03-10, 04-10, 05-10", atEnd, len(invs), periods(invs))
		}
		got := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
		switch {
		case !atEnd && got.Status != invoicing.SubCanceled:
			t.Errorf("canceled now: %s", got.Status)
		case atEnd && (got.CancelAt == nil || !got.CancelAt.Equal(day("2026-06-10T00:00:00Z"))):
			t.Errorf("canceled at the end of the period running on 05-20: cancel_at %v", got.CancelAt)
		}
	}
}

// A mid-period upgrade with the default proration leaves its charge as
// pending lines for the next period's invoice. A subscription that ends
// has no next period: the pending charge is invoiced when it ends, not
// dropped (the customer used the higher plan for the rest of the period).
func TestAnEndingSubscriptionInvoicesItsPendingProration(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	sub := g.subscribe(subBody(user, monthly(3000)))
	// Half of April left: a credit of 1500 for the old plan, 3000 for Max.
	g.clock.Set(day("2026-04-16T00:00:00Z"))
	up := map[string]any{"name": "Max", "amount": 6000, "currency": "USD", "interval": "month"}
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"plan": up})
	must(t, rec, 200)
	if got := decode[invoicing.Subscription](t, rec); len(got.PendingLines) != 2 {
		t.Fatalf("after the upgrade: pending %+v", got.PendingLines)
	}
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", nil), 200)
	g.clock.Set(day("2026-05-01T00:00:00Z"))
	g.tick()
	s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
	var billed int64
	invs := g.subInvoices(sub.ID)
	for _, inv := range invs {
		billed += inv.Total
	}
	if s.Status != invoicing.SubCanceled || billed != 3000+1500 || len(s.PendingLines) != 0 {
		t.Fatalf("ended %s: billed %d in %d invoice(s) (%s), want 4500; pending lines left %d", s.Status, billed, len(invs), periods(invs), len(s.PendingLines))
	}
}

// A plan change bills the periods already due at the old plan first, as
// a cancel does, all of them: more than SUBSCRIPTION_MAX_CATCH_UP (a
// daily plan after a long outage of the tick) are billed in one PATCH.
// PATCH billed one bounded run only: the periods beyond it were then
// billed by the tick at the new plan's price, or, when the change
// restarted the cycle (a new interval), never.
func TestAPlanChangeBillsEveryDuePeriodAtTheOldPlan(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxCatchUp = 2
	g := newRigWith(t, cfg)
	daily := map[string]any{"name": "Daily", "amount": 100, "currency": "USD", "interval": "day"}
	for _, c := range []struct {
		name string
		plan map[string]any
	}{
		{"same interval", map[string]any{"name": "Daily+", "amount": 200, "currency": "USD", "interval": "day"}},
		{"new interval", map[string]any{"name": "Weekly", "amount": 500, "currency": "USD", "interval": "week"}},
	} {
		g.clock.Set(day("2026-01-01T00:00:00Z"))
		sub := g.subscribe(subBody(uuid.NewString(), daily))
		g.clock.Set(day("2026-01-08T12:00:00Z")) // Jan 2..8 due, no tick ran
		must(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"plan": c.plan, "proration_behavior": "none"}), 200)
		g.tick()
		var old []invoicing.Invoice
		for _, inv := range g.subInvoices(sub.ID) {
			if inv.PeriodStart != nil && inv.PeriodStart.Before(day("2026-01-08T12:00:00Z")) && inv.Total != 0 && inv.PeriodEnd.Sub(*inv.PeriodStart) == 24*time.Hour {
				old = append(old, inv)
			}
		}
		if got := periods(old); got != "01-01..01-02 01-02..01-03 01-03..01-04 01-04..01-05 01-05..01-06 01-06..01-07 01-07..01-08 01-08..01-09" {
			t.Errorf("%s: the days billed: %s, want Jan 1..8", c.name, got)
		}
		for _, inv := range old {
			if inv.Subtotal != 100 {
				t.Errorf("%s: %s billed %d, want 100 (the plan it ran under)", c.name, periods([]invoicing.Invoice{inv}), inv.Subtotal)
			}
		}
	}
}

// PATCH {"cancel_at_period_end": true} is the other way to schedule the
// end: as POST …/cancel does, it ends the subscription at the end of the
// period running now, having billed the periods that started. It took the
// end of the last period billed instead (the tick's lag, a catch-up after
// downtime), in the past, so the periods since were never billed and the
// next tick ended the subscription months early.
func TestCancelAtPeriodEndByPatchBillsThePeriodsThatHaveStarted(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-02-10T00:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), monthly(1000)))
	// Three periods (Mar 10, Apr 10, May 10) have started; no tick ran.
	g.clock.Set(day("2026-05-20T00:00:00Z"))
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"cancel_at_period_end": true})
	must(t, rec, 200)
	g.tick()
	if invs := g.subInvoices(sub.ID); len(invs) != 4 {
		t.Errorf("%d invoice(s) (%s), want 4: 02-10, 03-10, 04-10, 05-10", len(invs), periods(invs))
	}
	got := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
	if got.Status == invoicing.SubCanceled || got.CancelAt == nil || !got.CancelAt.Equal(day("2026-06-10T00:00:00Z")) {
		t.Errorf("status %s, cancel_at %v: want it running until 06-10", got.Status, got.CancelAt)
	}
}

// TestPlanChangeCreditsWhatThePeriodCharged: the credit for the unused
// time of a period is what the period's invoice charged for it, as
// Stripe's (flexible billing mode) credit prorations are — its discount
// and its tax rates — not the plan's list price with today's rates. A
// first month free (a 100% coupon once) upgraded mid-month credited half
// a month the customer never paid; a 50% coupon, half a month at full
// price; a tax rate added by the same change, tax never charged.
func TestPlanChangeCreditsWhatThePeriodCharged(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	free := "FREE-" + uuid.NewString()[:6]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": free, "percent_off": "100", "duration": "once"}), 201)
	half := "HALF-" + uuid.NewString()[:6]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": half, "percent_off": "50", "duration": "forever"}), 201)
	vat := g.taxRate("VAT", "20", false, false)
	max := map[string]any{"name": "Max", "amount": 6000, "currency": "USD", "interval": "month"}

	freeSub := g.subscribe(subBody(uuid.NewString(), monthly(3000), "coupon", free))
	halfSub := g.subscribe(subBody(uuid.NewString(), monthly(3000), "coupon", half))
	taxSub := g.subscribe(subBody(uuid.NewString(), monthly(3000)))
	twiceSub := g.subscribe(subBody(uuid.NewString(), monthly(3000), "coupon", half))
	for sub, total := range map[string]int64{freeSub.ID: 0, halfSub.ID: 1500, taxSub.ID: 3000, twiceSub.ID: 1500} {
		if inv := g.invoice(*decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub, nil)).LatestInvoiceID); inv.Total != total {
			t.Fatalf("April's invoice of %s = %d, want %d", sub, inv.Total, total)
		}
	}

	// Half of April (30 days) left.
	g.clock.Set(day("2026-04-16T00:00:00Z"))
	credit := func(s invoicing.Subscription) (amount, tax int64, n int) {
		for _, l := range s.PendingLines {
			if l.UnitAmount < 0 {
				amount, n = l.UnitAmount, n+1
				tax = int64(len(l.Taxes))
			}
		}
		return amount, tax, n
	}
	rec := g.asAdmin("PATCH", "/subscriptions/"+freeSub.ID, map[string]any{"plan": max})
	must(t, rec, 200)
	if a, _, n := credit(decode[invoicing.Subscription](t, rec)); n != 0 {
		t.Errorf("a free April upgraded mid-month: credit %d for time never paid, want none", a)
	}
	rec = g.asAdmin("PATCH", "/subscriptions/"+halfSub.ID, map[string]any{"plan": max})
	must(t, rec, 200)
	if a, _, n := credit(decode[invoicing.Subscription](t, rec)); n != 1 || a != -750 {
		t.Errorf("April at 50%% (15.00 paid) upgraded mid-month: credit %d (%d lines), want -750", a, n)
	}
	rec = g.asAdmin("PATCH", "/subscriptions/"+taxSub.ID, map[string]any{"plan": max, "tax_rate_ids": []string{vat}})
	must(t, rec, 200)
	if a, rates, n := credit(decode[invoicing.Subscription](t, rec)); n != 1 || a != -1500 || rates != 0 {
		t.Errorf("April untaxed, VAT added with the upgrade: credit %d with %d tax rates, want -1500 untaxed", a, rates)
	}

	// Changed twice in April: the second change shortens the first one's
	// debit, not yet invoiced, to the 8 days it ran (30.00 x 8/15 = 16.00),
	// which May's invoice discounts as it discounts the rest.
	must(t, g.asAdmin("PATCH", "/subscriptions/"+twiceSub.ID, map[string]any{"plan": max}), 200)
	g.clock.Set(day("2026-04-24T00:00:00Z"))
	rec = g.asAdmin("PATCH", "/subscriptions/"+twiceSub.ID, map[string]any{"plan": monthly(3000)})
	must(t, rec, 200)
	var amounts []int64
	for _, l := range decode[invoicing.Subscription](t, rec).PendingLines {
		amounts = append(amounts, l.UnitAmount)
	}
	if fmt.Sprint(amounts) != "[-750 1600 700]" {
		t.Errorf("pending after two changes = %v, want [-750 1600 700]", amounts)
	}

	g.clock.Set(day("2026-05-01T00:00:00Z"))
	g.tick()
	for sub, want := range map[string]int64{
		twiceSub.ID: 1500 + 800 + 350 - 750, // May at 50%, 8 days of Max and 7 of Pro at 50%, less the half of April's 15.00
		freeSub.ID:  6000 + 3000,            // May, and the rest of April on Max; nothing to credit
		halfSub.ID:  3000 + 1500 - 750,      // May and the rest of April at 50%, less the half of April's 15.00
		taxSub.ID:   7200 + 3600 - 1500,     // May and the rest of April with VAT, less the half of April's untaxed 30.00
	} {
		invs := g.subInvoices(sub)
		if may := invs[len(invs)-1]; may.Total != want {
			t.Errorf("May's invoice of %s = %d, want %d", sub, may.Total, want)
		}
	}
}

// TestRepeatingCouponMonthsEndAtTheMonthsEnd: a coupon repeating for one
// month on a subscription billed from Jan 31 discounts January's invoice
// only. Its end, a month after Jan 31, is Feb 28 (clamped to the month's
// end, as the billing periods are), not Go's normalized "Feb 31" = Mar 3,
// which made the Feb 28 period a second discounted month; from Dec 31,
// two months reached Mar 3 and discounted three invoices.
func TestRepeatingCouponMonthsEndAtTheMonthsEnd(t *testing.T) {
	g := newRig(t)
	one := "ONE-" + uuid.NewString()[:6]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": one, "percent_off": "50", "duration": "repeating", "duration_in_months": 1}), 201)
	two := "TWO-" + uuid.NewString()[:6]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": two, "percent_off": "50", "duration": "repeating", "duration_in_months": 2}), 201)
	g.clock.Set(day("2025-12-31T10:00:00Z"))
	fromDec := g.subscribe(subBody(uuid.NewString(), monthly(2000), "coupon", two))
	g.clock.Set(day("2026-01-31T10:00:00Z"))
	fromJan := g.subscribe(subBody(uuid.NewString(), monthly(2000), "coupon", one))
	for _, at := range []string{"2026-02-28T10:00:00Z", "2026-03-31T10:00:00Z"} {
		g.clock.Set(day(at))
		g.tick()
	}
	for sub, want := range map[string]string{fromJan.ID: "[1000 2000 2000]", fromDec.ID: "[1000 1000 2000 2000]"} {
		var totals []int64
		invs := g.subInvoices(sub)
		for _, inv := range invs {
			totals = append(totals, inv.Total)
		}
		if fmt.Sprint(totals) != want {
			t.Errorf("periods %s: totals %v, want %s", periods(invs), totals, want)
		}
	}
}

// TestAnImmediateProrationKeepsThePeriodsPercentCoupon: a plan change
// invoiced at once (always_invoice) on a subscription whose current period
// is discounted by a percentage coupon charges the rest of the period at
// the discounted price, as the next invoice would (create_prorations) and
// as Stripe's prorations carry the subscription's discounts: the
// proration invoice used to carry no coupon, so the new plan's rest of
// the period was charged at full price against a credit of what was paid.
func TestAnImmediateProrationKeepsThePeriodsPercentCoupon(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	half := "HALF-" + uuid.NewString()[:6]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": half, "percent_off": "50", "duration": "forever"}), 201)
	sub := g.subscribe(subBody(uuid.NewString(), monthly(3000), "coupon", half))
	g.clock.Set(day("2026-04-16T00:00:00Z")) // half of April left: 15.00 of Max at 50%, less 7.50 of the 15.00 paid
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"proration_behavior": "always_invoice",
		"plan": map[string]any{"name": "Max", "amount": 6000, "currency": "USD", "interval": "month"}})
	must(t, rec, 200)
	inv := g.invoice(*decode[invoicing.Subscription](t, rec).LatestInvoiceID)
	if inv.BillingReason != invoicing.ReasonSubscriptionUpdate || inv.Total != 1500-750 || inv.Discount != 1500 {
		t.Fatalf("proration invoice: %s total %d discount %d, want total 750 with 1500 off", inv.BillingReason, inv.Total, inv.Discount)
	}
	g.clock.Set(day("2026-05-01T00:00:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	if may := invs[len(invs)-1]; may.Total != 3000 {
		t.Fatalf("May's invoice = %d, want 3000 (Max at 50%%, nothing pending)", may.Total)
	}
}

// TestAPatchNamingTheSamePlanProratesNothing: a PATCH that names the plan
// the subscription already has (resent with its metadata, say) changes
// nothing, as in Stripe. It made a credit and a debit for the rest of the
// period, which cancelled out only while both were the list price: with
// the credit what was charged, a free first month so patched charged the
// rest of the month it had given away.
func TestAPatchNamingTheSamePlanProratesNothing(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	free := "FREE-" + uuid.NewString()[:6]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": free, "percent_off": "100", "duration": "once"}), 201)
	sub := g.subscribe(subBody(uuid.NewString(), monthly(3000), "coupon", free))
	g.clock.Set(day("2026-04-16T00:00:00Z"))
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"plan": monthly(3000), "metadata": map[string]string{"crm": "42"}})
	must(t, rec, 200)
	if got := decode[invoicing.Subscription](t, rec); len(got.PendingLines) != 0 || got.Metadata["crm"] != "42" {
		t.Fatalf("after a PATCH naming the same plan: pending %+v, metadata %v", got.PendingLines, got.Metadata)
	}
	g.clock.Set(day("2026-05-01T00:00:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	if may := invs[len(invs)-1]; may.Total != 3000 || len(invs) != 2 {
		t.Fatalf("%d invoices, May's = %d, want 2 and 3000", len(invs), may.Total)
	}
}

// TestAScheduledEndTakenBackAtThePeriodsEndBillsOn: a subscription
// scheduled to end at the period's end (May 1), touched by a PATCH in the
// moments between that end and the tick that ends it, then taken back
// (cancel_at_period_end false) still before that tick, bills on from May
// 1. The first PATCH's billing found the scheduled end reached and left
// no next billing date; taking the end back did not restore it, so the
// subscription stayed active and was never billed again nor ended.
func TestAScheduledEndTakenBackAtThePeriodsEndBillsOn(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	sub := g.subscribe(subBody(user, monthly(3000)))
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", nil), 200)
	g.clock.Set(day("2026-05-01T00:00:20Z"))
	must(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"metadata": map[string]string{"crm": "42"}}), 200)
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"cancel_at_period_end": false})
	must(t, rec, 200)
	if got := decode[invoicing.Subscription](t, rec); got.Status != invoicing.SubActive || got.CancelAtPeriodEnd ||
		got.NextBillingAt == nil || got.NextBillingAt.After(day("2026-06-01T00:00:00Z")) {
		t.Fatalf("taken back: status %s, cancel_at_period_end %v, next_billing_at %v", got.Status, got.CancelAtPeriodEnd, got.NextBillingAt)
	}
	g.clock.Set(day("2026-06-01T00:00:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	if got := periods(invs); got != "04-01..05-01 05-01..06-01 06-01..07-01" {
		t.Fatalf("periods billed %s", got)
	}
}

// TestAnIntervalChangeAtTheRenewalInstantBillsTheNewPlan: a change of
// interval at the very instant a period starts (before the tick billed
// it) bills that instant's period at the new plan, in the cycle it
// restarts. It billed it at the old plan, credited it in full, and
// restarted the cycle at the same instant: two periods of the
// subscription starting then, and a 500. (A change of price alone still
// bills that period at the old price and credits it in full:
// TestPlanChangeBillsDuePeriodsAtTheOldPrice.)
func TestAnIntervalChangeAtTheRenewalInstantBillsTheNewPlan(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), monthly(3000)))
	g.clock.Set(day("2026-05-01T00:00:00Z"))
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{
		"plan": map[string]any{"name": "Pro yearly", "amount": 30000, "currency": "USD", "interval": "year"}})
	must(t, rec, 200)
	var got []string
	for _, inv := range g.subInvoices(sub.ID) {
		got = append(got, fmt.Sprintf("%s %s %d", inv.PeriodStart.Format(time.DateOnly), inv.PeriodEnd.Format(time.DateOnly), inv.Total))
	}
	want := "2026-04-01 2026-05-01 3000, 2026-05-01 2027-05-01 30000"
	if s := decode[invoicing.Subscription](t, rec); strings.Join(got, ", ") != want || len(s.PendingLines) != 0 {
		t.Fatalf("invoices %q, want %q; pending %+v", strings.Join(got, ", "), want, s.PendingLines)
	}
}

// TestAPlanChangeCreditsNothingOfAVoidedPeriod: a period whose invoice the
// merchant voided (a month given away, a bill withdrawn) charged nothing,
// so a plan change in it credits nothing, as for a free month
// (TestPlanChangeCreditsWhatThePeriodCharged). Until 2026-12-07 the change
// credited half of the voided April, 15.00 never paid, off May's invoice.
func TestAPlanChangeCreditsNothingOfAVoidedPeriod(t *testing.T) {
	g := newRig(t)
	g.clock.Set(day("2026-04-01T00:00:00Z"))
	sub := g.subscribe(subBody(uuid.NewString(), monthly(3000)))
	must(t, g.asAdmin("POST", "/invoices/"+*sub.LatestInvoiceID+"/void", nil), 200)
	g.clock.Set(day("2026-04-16T00:00:00Z"))
	rec := g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"plan": map[string]any{"name": "Max", "amount": 6000, "currency": "USD", "interval": "month"}})
	must(t, rec, 200)
	for _, l := range decode[invoicing.Subscription](t, rec).PendingLines {
		if l.UnitAmount < 0 {
			t.Errorf("a voided April upgraded mid-month: credit %d (%s) for time never charged, want none", l.UnitAmount, l.Description)
		}
	}
	g.clock.Set(day("2026-05-01T00:00:00Z"))
	g.tick()
	invs := g.subInvoices(sub.ID)
	if may := invs[len(invs)-1]; may.Total != 6000+3000 {
		t.Errorf("May's invoice = %d, want 9000: May, and the rest of April on Max", may.Total)
	}
}
