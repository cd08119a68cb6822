package api

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/render"
	"github.com/billfn/billfn/shared/events"
)

func TestCreateInvoiceComputesTotalsFromTaxRates(t *testing.T) {
	g := newRig(t)
	vat := g.taxRate("VAT", "20", false, false)
	user, account := uuid.NewString(), uuid.NewString()
	body := invoiceBody(user, account,
		map[string]any{"description": "Consulting", "quantity": "2", "unit_amount": 1050, "tax_rate_ids": []string{vat}},
		map[string]any{"description": "Hosting", "quantity": 1.5, "unit_amount": 999, "tax_rate_ids": []string{vat}},
	)
	body["net_terms_days"] = 14
	rec := g.asAdmin("POST", "/invoices", body)
	must(t, rec, 201)
	inv := decode[invoicing.Invoice](t, rec)
	// 2100 + 1498 (1498.5 half-even) = 3598; VAT 420 + 299.6 -> 300 = 720
	if inv.Status != invoicing.StatusDraft || inv.Number != nil || inv.Subtotal != 3598 || inv.Tax != 720 || inv.Total != 4318 || inv.AmountDue != 4318 {
		t.Fatalf("invoice = %+v", inv)
	}
	if rec.Header().Get("Location") != "/invoices/"+inv.ID || inv.UserID != user || inv.AccountID != account {
		t.Fatalf("location %q user %s account %s", rec.Header().Get("Location"), inv.UserID, inv.AccountID)
	}
	if len(inv.TaxBreakdown) != 1 || inv.TaxBreakdown[0].Amount != 720 || inv.TaxBreakdown[0].TaxableAmount != 3598 {
		t.Fatalf("breakdown = %+v", inv.TaxBreakdown)
	}
	got := g.invoice(inv.ID)
	if got.Total != 4318 || len(got.Lines) != 2 || got.Lines[1].Quantity.String() != "1.5" || got.Lines[1].Amount != 1498 {
		t.Fatalf("stored = %+v", got)
	}
	if evs := types(g.events(inv.ID)); len(evs) != 1 || evs[0] != "invoice.created" {
		t.Fatalf("events = %v", evs)
	}
}

func TestAutoFinalizeAssignsNumberFreezesTotalsAndAnnounces(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	body := invoiceBody(user, uuid.NewString())
	body["auto_finalize"] = true
	body["net_terms_days"] = 30
	rec := g.asAdmin("POST", "/invoices", body)
	must(t, rec, 201)
	inv := decode[invoicing.Invoice](t, rec)
	want := g.s.cfg.NumberPrefix + "-2026-000001"
	if inv.Status != invoicing.StatusOpen || inv.Number == nil || *inv.Number != want || inv.FinalizedAt == nil {
		t.Fatalf("number %v status %s, want %s open", inv.Number, inv.Status, want)
	}
	if inv.DueDate == nil || inv.DueDate.Format("2006-01-02") != "2026-04-09" { // 2026-03-10 + 30 days
		t.Fatalf("due date = %v", inv.DueDate)
	}
	if got := types(g.events(inv.ID)); strings.Join(got, ",") != "invoice.created,invoice.finalized,notification.requested" {
		t.Fatalf("events = %v", got)
	}
	fin := eventData[events.Invoice](g, inv.ID, events.TypeInvoiceFinalized)
	if fin.Number == nil || *fin.Number != want || fin.AmountDue != 2100 || fin.Status != invoicing.StatusOpen || fin.UserID != user ||
		fin.CollectionMethod != invoicing.ChargeAutomatically || fin.DueDate == nil {
		t.Fatalf("finalized event = %+v", fin)
	}
	note := eventData[events.NotificationRequested](g, inv.ID, events.TypeNotificationRequested)
	if note.Kind != "invoice_finalized" || note.Email != "ada@example.com" || note.AmountDue != 2100 || note.Number == nil {
		t.Fatalf("notification = %+v", note)
	}
	// Frozen: a finalized invoice cannot be edited.
	problemOf(t, g.asAdmin("PATCH", "/invoices/"+inv.ID, map[string]any{"memo": "late"}), 422, "invoice_not_draft")
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/lines", map[string]any{"line_items": []any{
		map[string]any{"description": "x", "unit_amount": 1}}}), 422, "invoice_not_draft")
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/finalize", nil), 422, "invoice_not_draft")
}

func TestDraftLifecycleEditFinalizePayVoid(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	vat := g.taxRate("VAT", "10", false, false)
	inv := g.createInvoice(user, nil)

	// PATCH a draft: memo, due date, invoice discount, replacement lines.
	rec := g.asAdmin("PATCH", "/invoices/"+inv.ID, map[string]any{"memo": "Thanks!", "due_date": "2026-04-01",
		"discounts":  []any{map[string]any{"percent_off": "10"}},
		"line_items": []any{map[string]any{"description": "Design", "quantity": 3, "unit_amount": 2000, "tax_rate_ids": []string{vat}}}})
	must(t, rec, 200)
	inv = decode[invoicing.Invoice](t, rec)
	// 6000 - 10% = 5400, +10% tax = 540
	if inv.Memo != "Thanks!" || inv.Subtotal != 6000 || inv.Discount != 600 || inv.Tax != 540 || inv.Total != 5940 ||
		inv.DueDate.Format("2006-01-02") != "2026-04-01" || len(inv.Lines) != 1 {
		t.Fatalf("patched = %+v", inv)
	}
	rec = g.asAdmin("POST", "/invoices/"+inv.ID+"/lines", map[string]any{"line_items": []any{
		map[string]any{"description": "Support", "unit_amount": 1000}}})
	must(t, rec, 200)
	inv = decode[invoicing.Invoice](t, rec)
	if len(inv.Lines) != 2 || inv.Subtotal != 7000 || inv.Discount != 700 || inv.Total != 6840 {
		t.Fatalf("with lines = %+v", inv)
	}
	// Customers may not void, pay or mark uncollectible.
	problemOf(t, g.asCustomer(user, "POST", "/invoices/"+inv.ID+"/void", nil), 403, "forbidden")
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/void", nil), 422, "invoice_not_open")
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/pay", nil), 422, "invoice_not_open")

	// The merchant's draft is the merchant's to finalize, not its owner's.
	problemOf(t, g.asCustomer(user, "POST", "/invoices/"+inv.ID+"/finalize", nil), 403, "forbidden")
	rec = g.asAdmin("POST", "/invoices/"+inv.ID+"/finalize", nil)
	must(t, rec, 200)
	inv = decode[invoicing.Invoice](t, rec)
	if inv.Status != invoicing.StatusOpen || inv.Number == nil || inv.DueDate.Format("2006-01-02") != "2026-04-01" {
		t.Fatalf("finalized = %+v", inv)
	}
	// A partial out-of-band payment, then too much, then the rest.
	rec = g.asAdmin("POST", "/invoices/"+inv.ID+"/pay", map[string]any{"amount": 840, "reference": "wire 42"})
	must(t, rec, 200)
	if p := decode[invoicing.Invoice](t, rec); p.AmountPaid != 840 || p.AmountDue != 6000 || p.Status != invoicing.StatusOpen {
		t.Fatalf("after partial payment = %+v", p)
	}
	// Money paid against it keeps it from being voided (the payment would
	// stay with nothing owed for it): refund it first, or mark the invoice
	// uncollectible.
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/void", nil), 422, "invoice_partially_paid")
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/pay", map[string]any{"amount": 6001}), 422, "amount_exceeds_due")
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/pay", map[string]any{"amount": 1, "currency": "EUR"}), 422, "currency_mismatch")
	rec = g.asAdmin("POST", "/invoices/"+inv.ID+"/pay", nil)
	must(t, rec, 200)
	if p := decode[invoicing.Invoice](t, rec); p.Status != invoicing.StatusPaid || p.AmountDue != 0 || p.AmountPaid != 6840 || p.PaidAt == nil {
		t.Fatalf("paid = %+v", p)
	}
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/void", nil), 422, "invoice_not_open")
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/mark-uncollectible", nil), 422, "invoice_not_open")
	if got := types(g.events(inv.ID)); strings.Join(got, ",") != "invoice.created,invoice.finalized,notification.requested,invoice.paid,notification.requested" {
		t.Fatalf("events = %v", got)
	}

	// Void and uncollectible, from open only; money still pays an
	// uncollectible invoice.
	other := g.createInvoice(user, nil)
	must(t, g.asAdmin("POST", "/invoices/"+other.ID+"/finalize", nil), 200)
	rec = g.asAdmin("POST", "/invoices/"+other.ID+"/void", nil)
	must(t, rec, 200)
	if v := decode[invoicing.Invoice](t, rec); v.Status != invoicing.StatusVoid || v.AmountDue != 0 || v.VoidedAt == nil {
		t.Fatalf("voided = %+v", v)
	}
	third := g.createInvoice(user, nil)
	must(t, g.asAdmin("POST", "/invoices/"+third.ID+"/finalize", nil), 200)
	rec = g.asAdmin("POST", "/invoices/"+third.ID+"/mark-uncollectible", nil)
	must(t, rec, 200)
	if u := decode[invoicing.Invoice](t, rec); u.Status != invoicing.StatusUncollectible || u.AmountDue != 2100 {
		t.Fatalf("uncollectible = %+v", u)
	}
	must(t, g.asAdmin("POST", "/invoices/"+third.ID+"/pay", nil), 200)
	if got := types(g.events(other.ID)); got[len(got)-1] != "invoice.voided" {
		t.Fatalf("events = %v", got)
	}
	if got := types(g.events(third.ID)); strings.Join(got[len(got)-3:], ",") != "invoice.uncollectible,invoice.paid,notification.requested" {
		t.Fatalf("events = %v", got)
	}
	// An empty draft cannot be finalized.
	empty := g.createInvoice(user, map[string]any{"account_id": g.account(user, "EUR"), "user_id": user, "currency": "EUR"})
	problemOf(t, g.asAdmin("POST", "/invoices/"+empty.ID+"/finalize", nil), 422, "invoice_empty")
}

// TestZeroAndThreeDecimalCurrencies runs JPY (no minor unit) with an
// inclusive tax and BHD (fils, three decimals) with a compound tax through
// the API.
func TestZeroAndThreeDecimalCurrencies(t *testing.T) {
	g := newRig(t)
	jct := g.taxRate("JCT", "10", true, false)
	body := invoiceBody(uuid.NewString(), uuid.NewString(),
		map[string]any{"description": "Ramen", "quantity": "3", "unit_amount": 1000, "tax_rate_ids": []string{jct}},
		map[string]any{"description": "Gyoza", "quantity": "1", "unit_amount": 480, "tax_rate_ids": []string{jct}})
	inCurrency(body, "jpy")
	inv := g.createInvoice("", body)
	// 3000 incl. -> net 2727, tax 273; 480 incl. -> net 436.36 -> 436, tax 44
	if inv.Currency != "JPY" || inv.Total != 3480 || inv.Tax != 317 || inv.TaxInclusive != 317 || inv.TotalExcludingTax != 3163 {
		t.Fatalf("JPY invoice = %s total %d tax %d excl %d", inv.Currency, inv.Total, inv.Tax, inv.TotalExcludingTax)
	}
	vat := g.taxRate("VAT", "10", false, false)
	levy := g.taxRate("Levy", "2.5", false, true)
	body = invoiceBody(uuid.NewString(), uuid.NewString(),
		map[string]any{"description": "Pearls", "quantity": "0.75", "unit_amount": 12345, "tax_rate_ids": []string{vat, levy}})
	inCurrency(body, "BHD")
	inv = g.createInvoice("", body)
	// 0.75 x 12.345 = 9.25875 -> 9.259 (9258.75 fils, half-even -> 9259);
	// VAT 925.9 -> 926; levy on 10185: 254.625 -> 255 (half-even on .625 rounds up: not a tie)
	if inv.Subtotal != 9259 || inv.Tax != 926+255 || inv.Total != 9259+926+255 {
		t.Fatalf("BHD invoice = subtotal %d tax %d total %d", inv.Subtotal, inv.Tax, inv.Total)
	}
	if got := render.FormatMoney(inv.Total, inv.Currency, false); got != "BHD\u00a010.440" {
		t.Fatalf("formatted = %q", got)
	}
}

// TestCachedInvoiceIsDroppedOnEveryChange: a read fills Redis, a write
// (HTTP or event) drops the key, the next read sees the change.
func TestCachedInvoiceIsDroppedOnEveryChange(t *testing.T) {
	g := newRig(t)
	inv := g.createInvoice(uuid.NewString(), nil)
	key := g.s.invCache.Key(inv.ID)
	cached := func() bool {
		n, err := g.d.Redis.Exists(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	g.invoice(inv.ID)
	if !cached() {
		t.Fatal("a read did not fill the cache")
	}
	must(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/finalize", nil), 200)
	if cached() {
		t.Fatal("finalize left the cached draft")
	}
	if got := g.invoice(inv.ID); got.Status != invoicing.StatusOpen {
		t.Fatalf("read after finalize = %s", got.Status)
	}
	g.deliver(event(t, "capture-payment", events.TypePaymentCaptured, "p", payment{PaymentID: "p", InvoiceID: &inv.ID,
		Currency: "USD", Amount: 2100, AmountCaptured: 2100}))
	if cached() {
		t.Fatal("a payment event left the cached open invoice")
	}
	if got := g.invoice(inv.ID); got.Status != invoicing.StatusPaid {
		t.Fatalf("read after payment = %s", got.Status)
	}
}

func TestFinalizeRefusesADueDateThatHasPassed(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["due_date"] = "2026-03-15"
	inv := g.createInvoice("", body)
	g.clock.Set(day("2026-03-16T08:00:00Z"))
	problemOf(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/finalize", nil), 422, "due_date_in_past")
	// PATCH a new term, then it finalizes: due 7 days after finalization.
	must(t, g.asAdmin("PATCH", "/invoices/"+inv.ID, map[string]any{"net_terms_days": 7}), 200)
	rec := g.asAdmin("POST", "/invoices/"+inv.ID+"/finalize", nil)
	must(t, rec, 200)
	if got := decode[invoicing.Invoice](t, rec); got.DueDate.Format("2006-01-02") != "2026-03-23" {
		t.Fatalf("due = %s", got.DueDate.Format("2006-01-02"))
	}
}

func TestPatchAppliesAndRemovesACoupon(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	code := "TEN-" + user[:8]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": code, "amount_off": 1000, "currency": "USD"}), 201)
	inv := g.createInvoice(user, nil) // 2100
	rec := g.asCustomer(user, "PATCH", "/invoices/"+inv.ID, map[string]any{"coupon": code})
	must(t, rec, 200)
	if got := decode[invoicing.Invoice](t, rec); got.Total != 1100 || got.Coupon == nil || len(got.Discounts) != 1 || got.Discounts[0].Amount != 1000 {
		t.Fatalf("with coupon = %+v", got)
	}
	problemOf(t, g.asCustomer(user, "PATCH", "/invoices/"+inv.ID, map[string]any{"discounts": []any{}}), 403, "forbidden")
	rec = g.asCustomer(user, "PATCH", "/invoices/"+inv.ID, map[string]any{"coupon": nil})
	must(t, rec, 200)
	if got := decode[invoicing.Invoice](t, rec); got.Total != 2100 || got.Coupon != nil || len(got.Discounts) != 0 {
		t.Fatalf("without coupon = %+v", got)
	}
}

// A draft the merchant made carrying a coupon holds one of its
// redemptions, however often the coupon is applied to it again: otherwise
// one customer re-applying a coupon to the draft exhausts max_redemptions
// and every other customer is refused the promotion. Removing the coupon from the draft,
// or replacing it, gives its redemption back, so applying and removing in
// turn spends nothing either.
func TestADraftHoldsOneRedemptionOfItsCoupon(t *testing.T) {
	g := newRig(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	promo, other := "PROMO3-"+alice[:8], "OTHER-"+alice[:8]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": promo, "percent_off": "10", "max_redemptions": 3}), 201)
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": other, "percent_off": "5", "max_redemptions": 1}), 201)
	redeemed := func(id string) int {
		var n int
		if err := g.d.Pool.QueryRow(context.Background(), `SELECT times_redeemed FROM coupons WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	body := invoiceBody(alice, g.account(alice, "USD"))
	body["coupon"] = promo
	rec := g.asAdmin("POST", "/invoices", body) // the merchant's draft (a customer's own holds none: TestOneCustomersDraftsDoNotExhaustACoupon)
	must(t, rec, 201)
	inv := decode[invoicing.Invoice](t, rec)
	for i := 0; i < 3; i++ {
		rec := g.asCustomer(alice, "PATCH", "/invoices/"+inv.ID, map[string]any{"coupon": promo})
		must(t, rec, 200)
		if got := decode[invoicing.Invoice](t, rec); got.Total != inv.Total || len(got.Discounts) != 1 {
			t.Fatalf("the coupon applied again: total %d, %d discounts; created with %d", got.Total, len(got.Discounts), inv.Total)
		}
	}
	if n := redeemed(promo); n != 1 {
		t.Errorf("one draft with the coupon counts %d redemptions, want 1", n)
	}
	for i := 0; i < 3; i++ {
		must(t, g.asCustomer(alice, "PATCH", "/invoices/"+inv.ID, map[string]any{"coupon": nil}), 200)
		must(t, g.asCustomer(alice, "PATCH", "/invoices/"+inv.ID, map[string]any{"coupon": promo}), 200)
	}
	if n := redeemed(promo); n != 1 {
		t.Errorf("removed and applied again three times: %d redemptions, want 1", n)
	}
	must(t, g.asCustomer(alice, "PATCH", "/invoices/"+inv.ID, map[string]any{"coupon": other}), 200)
	if p, o := redeemed(promo), redeemed(other); p != 0 || o != 1 {
		t.Errorf("replaced by another coupon: %d and %d redemptions, want 0 and 1", p, o)
	}
	b := invoiceBody(bob, g.account(bob, "USD"))
	b["coupon"] = promo
	if rec := g.asCustomer(bob, "POST", "/invoices", b); rec.Code != 201 {
		t.Errorf("another customer is refused the coupon: %d %s", rec.Code, rec.Body)
	}
}

// TestLargeInvoiceRoundTrips: an invoice with many lines (written with
// COPY) reads back complete and in order.
func TestLargeInvoiceRoundTrips(t *testing.T) {
	g := newRig(t)
	var lines []map[string]any
	for i := 0; i < 120; i++ {
		lines = append(lines, map[string]any{"description": fmt.Sprintf("Item %03d", i), "quantity": "1", "unit_amount": 100 + i,
			"discount": map[string]any{"amount_off": 1}, "metadata": map[string]any{"sku": fmt.Sprint(i)}})
	}
	inv := g.createInvoice(uuid.NewString(), invoiceBody(uuid.NewString(), uuid.NewString(), lines...))
	got := g.invoice(inv.ID)
	if len(got.Lines) != 120 || got.Total != inv.Total || got.Total != 120*100+(119*120/2)-120 {
		t.Fatalf("%d lines, total %d (created %d)", len(got.Lines), got.Total, inv.Total)
	}
	for i, l := range got.Lines {
		if l.Description != fmt.Sprintf("Item %03d", i) || l.Metadata["sku"] != fmt.Sprint(i) || l.Discount == nil || l.Discount.Amount != 1 {
			t.Fatalf("line %d = %+v", i, l)
		}
	}
	// Replacing them (delete, then COPY) and adding more keeps them all.
	must(t, g.asAdmin("PATCH", "/invoices/"+inv.ID, map[string]any{"line_items": lines[:60]}), 200)
	must(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/lines", map[string]any{"line_items": lines[60:]}), 200)
	if got := g.invoice(inv.ID); len(got.Lines) != 120 || got.Total != inv.Total || got.Lines[119].Description != "Item 119" {
		t.Fatalf("after replace and add: %d lines, total %d", len(got.Lines), got.Total)
	}
}

// TestACustomerChangesOnlyTheDraftsItMade: a draft an administrator or a
// service made for a customer's account is the merchant's bill, not the
// customer's to rewrite: its owner may read it, not replace its lines,
// add to it or finalize it before the merchant does. Like any customer
// it may apply a catalogue coupon (the merchant's public offer) to it.
// Until 2026-12-06 a customer could PATCH a merchant's 10,000 down to 1
// and finalize it. Its own drafts it still edits and finalizes.
func TestACustomerChangesOnlyTheDraftsItMade(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	account := uuid.NewString()
	merchants := g.createInvoice(user, invoiceBody(user, account,
		map[string]any{"description": "Consulting", "quantity": "1", "unit_amount": 10000}))
	cheaper := map[string]any{"line_items": []any{map[string]any{"description": "Consulting", "unit_amount": 1}}}
	problemOf(t, g.asCustomer(user, "PATCH", "/invoices/"+merchants.ID, cheaper), 403, "forbidden")
	problemOf(t, g.asCustomer(user, "PATCH", "/invoices/"+merchants.ID, map[string]any{"memo": "mine now"}), 403, "forbidden")
	problemOf(t, g.asCustomer(user, "POST", "/invoices/"+merchants.ID+"/lines", map[string]any{"line_items": []any{
		map[string]any{"description": "Credit", "unit_amount": 1}}}), 403, "forbidden")
	problemOf(t, g.asCustomer(user, "POST", "/invoices/"+merchants.ID+"/finalize", nil), 403, "forbidden")
	code := "FIVE-" + user[:8]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": code, "amount_off": 500, "currency": "USD"}), 201)
	problemOf(t, g.asCustomer(user, "PATCH", "/invoices/"+merchants.ID, map[string]any{"coupon": code, "memo": "x"}), 403, "forbidden")
	must(t, g.asCustomer(user, "PATCH", "/invoices/"+merchants.ID, map[string]any{"coupon": code}), 200)
	must(t, g.asCustomer(user, "PATCH", "/invoices/"+merchants.ID, map[string]any{"coupon": nil}), 200)
	got := decode[invoicing.Invoice](t, g.asCustomer(user, "GET", "/invoices/"+merchants.ID, nil))
	if got.Status != invoicing.StatusDraft || got.Total != 10000 || got.Memo != "" {
		t.Fatalf("the merchant's draft after the customer's attempts: %s, total %d, memo %q", got.Status, got.Total, got.Memo)
	}
	must(t, g.asAdmin("POST", "/invoices/"+merchants.ID+"/finalize", nil), 200)

	rec := g.asCustomer(user, "POST", "/invoices", invoiceBody(user, account))
	must(t, rec, 201)
	own := decode[invoicing.Invoice](t, rec)
	must(t, g.asCustomer(user, "PATCH", "/invoices/"+own.ID, cheaper), 200)
	must(t, g.asCustomer(user, "POST", "/invoices/"+own.ID+"/finalize", nil), 200)
}

// A customer's own drafts cost it nothing and it cannot delete them: if
// each held a redemption of its coupon, one customer's drafts, never
// finalized, would use up a limited promotion and every other customer be
// refused it. A draft its customer made holds none: the redemption is
// counted when it is finalized (refused then if the coupon is used up); a
// draft the merchant made holds its redemption from the start.
func TestOneCustomersDraftsDoNotExhaustACoupon(t *testing.T) {
	g := newRig(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	promo := "HOARD-" + alice[:8]
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": promo, "percent_off": "10", "max_redemptions": 2}), 201)
	acct := g.account(alice, "USD")
	var drafts []invoicing.Invoice
	for range 3 {
		body := invoiceBody(alice, acct)
		body["coupon"] = promo
		rec := g.asCustomer(alice, "POST", "/invoices", body)
		must(t, rec, 201)
		drafts = append(drafts, decode[invoicing.Invoice](t, rec))
	}
	b := invoiceBody(bob, g.account(bob, "USD"))
	b["coupon"] = promo
	b["auto_finalize"] = true
	if rec := g.asCustomer(bob, "POST", "/invoices", b); rec.Code != 201 {
		t.Fatalf("after one customer's three drafts, another customer is refused the coupon: %d %s", rec.Code, rec.Body)
	}
	must(t, g.asCustomer(alice, "POST", "/invoices/"+drafts[0].ID+"/finalize", nil), 200)
	problemOf(t, g.asCustomer(alice, "POST", "/invoices/"+drafts[1].ID+"/finalize", nil), 422, "coupon_not_redeemable")
	must(t, g.asCustomer(alice, "PATCH", "/invoices/"+drafts[1].ID, map[string]any{"coupon": nil}), 200)
	must(t, g.asCustomer(alice, "POST", "/invoices/"+drafts[1].ID+"/finalize", nil), 200)
	var redeemed int
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT times_redeemed FROM coupons WHERE id = $1`, promo).Scan(&redeemed); err != nil {
		t.Fatal(err)
	}
	if redeemed != 2 {
		t.Errorf("times_redeemed %d, want 2 (bob's and alice's first finalized invoice)", redeemed)
	}
}
