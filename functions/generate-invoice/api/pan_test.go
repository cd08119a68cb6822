package api

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/auth"
)

// TestCardNumbersAreRefusedInEveryFreeTextField: a card number in any text
// of any write route — memo, line descriptions, customer fields, metadata
// keys and values, names of coupons and tax rates, subscription texts — is
// a 422 card_number_rejected that does not echo it, and nothing is written
// (no row, so no event either).
func TestCardNumbersAreRefusedInEveryFreeTextField(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	inv := g.createInvoice(user, nil)
	count := func() (n int) {
		t.Helper()
		err := g.d.Pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM invoices) + (SELECT count(*) FROM invoice_line_items) + (SELECT count(*) FROM invoice_requests) +
			(SELECT count(*) FROM subscriptions) + (SELECT count(*) FROM coupons) + (SELECT count(*) FROM tax_rates)`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	with := func(k string, v any) map[string]any {
		b := invoiceBody(user, uuid.NewString())
		b[k] = v
		return b
	}
	line := func(desc string) []map[string]any {
		return []map[string]any{{"description": desc, "quantity": "1", "unit_amount": 100}}
	}
	cases := []struct {
		name, method, path string
		role               auth.Role
		body               any
	}{
		{"invoice memo", "POST", "/invoices", auth.RoleAdmin, with("memo", "card 5555 5555 5555 4444")},
		{"invoice line", "POST", "/invoices", auth.RoleAdmin, with("line_items", line("5555.5555.5555.4444"))},
		{"invoice customer", "POST", "/invoices", auth.RoleAdmin, with("customer", map[string]any{"name": "Ada", "address": map[string]any{"line1": "5555/5555/5555/4444", "country": "GB"}})},
		{"invoice metadata key", "POST", "/invoices", auth.RoleAdmin, with("metadata", map[string]any{"５５５５５５５５５５５５４４４４": "x"})},
		{"invoice batch", "POST", "/invoices/batch", auth.RoleAdmin, map[string]any{"invoices": []any{invoiceBody(user, uuid.NewString()), with("memo", "5555_5555_5555_4444")}}},
		{"patch memo", "PATCH", "/invoices/" + inv.ID, auth.RoleAdmin, map[string]any{"memo": "5555-5555 5555.4444"}},
		{"add lines", "POST", "/invoices/" + inv.ID + "/lines", auth.RoleAdmin, map[string]any{"line_items": line("٥٥٥٥٥٥٥٥٥٥٥٥٤٤٤٤")}},
		{"subscription", "POST", "/subscriptions", auth.RoleAdmin, map[string]any{"account_id": uuid.NewString(), "metadata": map[string]any{"ref": "5555555555554444"}}},
		{"subscription patch", "PATCH", "/subscriptions/" + uuid.NewString(), auth.RoleAdmin, map[string]any{"metadata": map[string]any{"ref": "5555555555554444"}}},
		{"tax rate", "POST", "/tax-rates", auth.RoleAdmin, map[string]any{"display_name": "VAT 5555 5555 5555 4444", "percentage": "20"}},
		{"coupon", "POST", "/coupons", auth.RoleAdmin, map[string]any{"name": "5555 5555 5555 4444", "percent_off": "10"}},
		{"void reason", "POST", "/invoices/" + inv.ID + "/void", auth.RoleAdmin, map[string]any{"reason": "5555 5555 5555 4444"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := count()
			rec := g.call(call{method: c.method, path: c.path, body: c.body, sub: g.admin, role: c.role})
			problemOf(t, rec, 422, "card_number_rejected")
			for _, frag := range []string{"4444", "٤٤٤٤", "４４４４"} {
				if strings.Contains(rec.Body.String(), frag) {
					t.Fatalf("the answer echoes the card number: %s", rec.Body)
				}
			}
			if after := count(); after != before {
				t.Fatalf("%d rows written", after-before)
			}
		})
	}
	// A body that only looks numeric — ids, amounts, dates — still passes.
	b := with("memo", "order 2026-11-23, ref "+uuid.NewString()+", phone +1 415-555-0100")
	must(t, g.asAdmin("POST", "/invoices", b), 201)
}

// TestParseCreateRefusesCardNumbers: billfn.invoice.requested
// goes through the same check as POST /invoices (billing.Service.ParseCreate).
func TestParseCreateRefusesCardNumbers(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	in := invoicing.CreateInvoiceIn{AccountID: uuid.NewString(), Currency: "USD", Memo: "4242 4242 4242 4242",
		LineItems: []invoicing.LineIn{{Description: "x"}}}
	knownAccount(in.AccountID, user, "USD")
	_, err := g.s.b.ParseCreate(context.Background(), nil, auth.Principal{Subject: g.admin, Role: auth.RoleAdmin}, nil, &in, "invoices/3/", g.clock.Now())
	if err == nil || !strings.Contains(err.Error(), "card_number_rejected") {
		t.Fatalf("ParseCreate: %v", err)
	}
}
