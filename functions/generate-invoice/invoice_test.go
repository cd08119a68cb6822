package main

import (
	"testing"

	"github.com/google/uuid"
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
	inv := decode[Invoice](t, rec)
	// 2100 + 1498 (1498.5 half-even) = 3598; VAT 420 + 299.6 -> 300 = 720
	if inv.Status != StatusDraft || inv.Number != nil || inv.Subtotal != 3598 || inv.Tax != 720 || inv.Total != 4318 || inv.AmountDue != 4318 {
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
