package api

import (
	"bytes"
	"compress/zlib"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/render"
	"github.com/billfn/billfn/shared/money"
)

func TestFormatMoneyPerCurrency(t *testing.T) {
	for _, c := range []struct {
		amount int64
		cur    money.Currency
		want   string
		pdf    string
	}{
		{123456, "USD", "$1,234.56", "$1,234.56"},
		{-500, "USD", "-$5.00", "-$5.00"},
		{3000, "JPY", "¥3,000", "\xa53,000"},
		{4125, "BHD", "BHD\u00a04.125", "BHD\xa04.125"},
		{123456, "EUR", "€1,234.56", "\x801,234.56"},
		{123456, "INR", "₹1,234.56", "INR\xa01,234.56"}, // no ₹ in the core fonts: the code
		{7, "CLF", "CLF\u00a00.0007", "CLF\xa00.0007"},
	} {
		if got := render.FormatMoney(c.amount, c.cur, false); got != c.want {
			t.Errorf("formatMoney(%d %s) = %q, want %q", c.amount, c.cur, got, c.want)
		}
		if got := render.PdfMoney(c.amount, c.cur); got != c.pdf {
			t.Errorf("pdfMoney(%d %s) = %q, want %q", c.amount, c.cur, got, c.pdf)
		}
	}
}

// pdfText returns the text operands of every content stream of a PDF
// (inflating FlateDecode streams), enough to check what a reader sees.
func pdfText(t *testing.T, pdf []byte) string {
	t.Helper()
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.")) || !bytes.Contains(pdf[len(pdf)-32:], []byte("%%EOF")) ||
		!bytes.Contains(pdf, []byte("startxref")) || !bytes.Contains(pdf, []byte("/Type /Catalog")) {
		t.Fatalf("not a complete PDF: %q...", pdf[:min(len(pdf), 64)])
	}
	var text strings.Builder
	rest := pdf
	for {
		i := bytes.Index(rest, []byte("stream\n"))
		if i < 0 {
			break
		}
		rest = rest[i+len("stream\n"):]
		j := bytes.Index(rest, []byte("\nendstream"))
		if j < 0 {
			t.Fatal("unterminated stream")
		}
		data := rest[:j]
		rest = rest[j+len("\nendstream"):]
		if zr, err := zlib.NewReader(bytes.NewReader(data)); err == nil {
			if b, err := io.ReadAll(zr); err == nil {
				data = b
			}
		}
		for _, m := range regexp.MustCompile(`\(((?:\\.|[^\\)])*)\) ?Tj`).FindAllSubmatch(data, -1) {
			s := strings.NewReplacer(`\(`, "(", `\)`, ")", `\\`, `\`).Replace(string(m[1]))
			text.WriteString(s + "\n")
		}
	}
	return text.String()
}

func renderedInvoice(t *testing.T, g *rig) invoicing.Invoice {
	vat := g.taxRate("VAT", "20", false, false)
	body := invoiceBody(uuid.NewString(), uuid.NewString(),
		map[string]any{"description": "Analytical engine consulting, on site in London (3 days)", "quantity": "3", "unit_amount": 120000, "tax_rate_ids": []string{vat}},
		map[string]any{"description": "Punched cards (box of 1000)", "quantity": "2.5", "unit_amount": 4599, "tax_rate_ids": []string{vat},
			"discount": map[string]any{"percent_off": "10"}},
		map[string]any{"description": "Travel (not taxed)", "quantity": "1", "unit_amount": 23850},
	)
	body["auto_finalize"], body["net_terms_days"] = true, 30
	body["memo"] = "Thank you for your business. Payment by bank transfer to IBAN GB00 BILL 0000 0000 0000 00."
	body["customer"].(map[string]any)["tax_id"] = "GB123456789"
	return g.createInvoice("", body)
}

// TestInvoicePDFShowsNumberAndFormattedTotals checks the PDF a customer
// downloads: a valid document holding the number and every total as money.
// Set INVOICE_PDF_OUT=<file> to keep it (docs/generate-invoice.md shows how
// to look at it with pdftoppm).
func TestInvoicePDFShowsNumberAndFormattedTotals(t *testing.T) {
	g := newRig(t)
	inv := renderedInvoice(t, g)
	// 360000 + 11498 (11497.5 -> 11498) - 1150 + 23850 = 394198; VAT 20% on 370348 = 74069.6 -> 74070
	if inv.Subtotal != 395348 || inv.Discount != 1150 || inv.Tax != 74070 || inv.Total != 468268 {
		t.Fatalf("totals = %d %d %d %d", inv.Subtotal, inv.Discount, inv.Tax, inv.Total)
	}
	rec := g.asAdmin("GET", "/invoices/"+inv.ID+".pdf", nil)
	must(t, rec, 200)
	if rec.Header().Get("Content-Type") != "application/pdf" || !strings.Contains(rec.Header().Get("Content-Disposition"), *inv.Number+".pdf") {
		t.Fatalf("headers = %v", rec.Header())
	}
	text := pdfText(t, rec.Body.Bytes())
	for _, want := range []string{*inv.Number, "$3,953.48", "-$11.50", "$740.70", "$4,682.68", "Ada Lovelace", "GB123456789",
		"VAT (Testland) 20% on $3,703.48", "Amount due", "9 April 2026", "2.5", "Punched cards (box of 1000)"} {
		if !strings.Contains(text, want) {
			t.Errorf("the PDF does not show %q; it shows:\n%s", want, text)
		}
	}
	if out := os.Getenv("INVOICE_PDF_OUT"); out != "" {
		// The example in the docs carries a production-like number.
		example := g.invoice(inv.ID)
		example.Number = ptr("INV-2026-000123")
		var buf bytes.Buffer
		if err := render.PDF(&buf, &example); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A draft renders too, marked as such.
	draft := g.createInvoice(uuid.NewString(), nil)
	if text := pdfText(t, g.asAdmin("GET", "/invoices/"+draft.ID+".pdf", nil).Body.Bytes()); !strings.Contains(text, "DRAFT") {
		t.Fatalf("draft PDF:\n%s", text)
	}
}

func TestInvoiceHTMLEscapesAndFormats(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString(),
		map[string]any{"description": "<script>alert(1)</script>", "quantity": "3", "unit_amount": 1000})
	inCurrency(body, "JPY")
	body["auto_finalize"] = true
	inv := g.createInvoice("", body)
	rec := g.asAdmin("GET", "/invoices/"+inv.ID+".html", nil)
	must(t, rec, 200)
	html := rec.Body.String()
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") || strings.Contains(html, "<script>") ||
		!strings.Contains(html, "&lt;script&gt;") || !strings.Contains(html, "¥3,000") || !strings.Contains(html, *inv.Number) {
		t.Fatalf("html:\n%s", html)
	}
}

// A line description outside ASCII (é, ü, €, and characters Windows-1252
// lacks) renders: fpdf's SplitText read the Windows-1252 bytes as UTF-8 and
// panicked on U+FFFD (found by the stack's attack test, a 500 on .pdf).
func TestInvoicePDFWrapsDescriptionsOutsideASCII(t *testing.T) {
	g := newRig(t)
	inv := renderedInvoice(t, g)
	inv.Lines[0].Description = "Émilie du Châtelet — ünïcødé 漢字 🚀 €5 " + strings.Repeat("très long ", 20)
	var buf bytes.Buffer
	if err := render.PDF(&buf, &inv); err != nil {
		t.Fatal(err)
	}
	if text := pdfText(t, buf.Bytes()); !strings.Contains(text, "milie du Ch") {
		t.Errorf("the description is missing:\n%s", text)
	}
}
