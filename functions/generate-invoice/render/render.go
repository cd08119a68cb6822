// Package render draws an invoice as a PDF (go-pdf/fpdf) and as HTML
// (written in Go, escaped as html/template would), from the invoice as the
// API returns it.
package render

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/bojanz/currency"
	"github.com/go-pdf/fpdf"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/htmlesc"
	"github.com/billfn/billfn/shared/money"
)

// Rendering: GET /invoices/{id}.pdf (go-pdf/fpdf) and .html (shared/htmlesc).
// Money is formatted from integer minor units: shared/money writes the
// exact decimal string, bojanz/currency (v1.4.2, CLDR data) adds the
// symbol and digit grouping of the locale. No float is involved.

// formatters holds one formatter per locale, ISO exponent and display
// (symbol or code), built on first use: a formatter is safe to share.
var formatters sync.Map // formatterKey → *currency.Formatter

type formatterKey struct {
	locale  string
	exp     int
	display currency.Display
}

func formatter(locale string, exp int, display currency.Display) *currency.Formatter {
	k := formatterKey{locale, exp, display}
	if f, ok := formatters.Load(k); ok {
		return f.(*currency.Formatter)
	}
	f := currency.NewFormatter(currency.NewLocale(locale))
	f.MinDigits, f.MaxDigits = uint8(exp), uint8(exp) // ISO 4217 exponents, not CLDR's cash digits
	f.CurrencyDisplay = display
	v, _ := formatters.LoadOrStore(k, f)
	return v.(*currency.Formatter)
}

// FormatMoney formats minor units of c for people ("$1,234.50", "¥3,000",
// "BHD 4.125"); byCode uses the ISO code instead of the symbol.
func FormatMoney(amount int64, c money.Currency, byCode bool) string {
	return FormatMoneyIn(amount, c, "en", byCode)
}

// FormatMoneyIn is FormatMoney in the conventions of locale (a BCP 47
// tag: "de-DE" writes "1.234,50 €"); an unknown or empty locale is "en".
// It writes what bojanz/currency's Formatter.Format writes (money.go).
func FormatMoneyIn(amount int64, c money.Currency, locale string, byCode bool) string {
	if locale == "" {
		locale = "en"
	}
	display := currency.DisplaySymbol
	if byCode {
		display = currency.DisplayCode
	}
	exp := c.Exponent()
	s := money.Format(amount, c)
	// currency.NewAmount refuses exactly these codes (the number is
	// always a decimal it reads).
	if exp < 0 || exp > 4 || c == "" || !currency.IsValid(string(c)) {
		return s + " " + string(c)
	}
	return formatAmount(formatterKey{locale, exp, display}, s, string(c))
}

// cp1252 maps the Windows-1252 characters outside Latin-1 (the core PDF
// fonts' encoding); 0xA0–0xFF are Latin-1 itself.
var cp1252 = map[rune]byte{
	'€': 0x80, '‚': 0x82, 'ƒ': 0x83, '„': 0x84, '…': 0x85, '†': 0x86, '‡': 0x87, 'ˆ': 0x88, '‰': 0x89,
	'Š': 0x8A, '‹': 0x8B, 'Œ': 0x8C, 'Ž': 0x8E, '‘': 0x91, '’': 0x92, '“': 0x93, '”': 0x94, '•': 0x95,
	'–': 0x96, '—': 0x97, '˜': 0x98, '™': 0x99, 'š': 0x9A, '›': 0x9B, 'œ': 0x9C, 'ž': 0x9E, 'Ÿ': 0x9F,
}

// toCP1252 encodes s for the core fonts; ok is false when a character had
// to be replaced by '?'.
func toCP1252(s string) (string, bool) {
	var b strings.Builder
	ok := true
	for _, r := range s {
		switch {
		case r < 0x80 || (r >= 0xA0 && r <= 0xFF):
			b.WriteByte(byte(r))
		case cp1252[r] != 0:
			b.WriteByte(cp1252[r])
		default:
			b.WriteByte('?')
			ok = false
		}
	}
	return b.String(), ok
}

// PdfMoney formats money for the PDF: with the symbol when the core fonts
// can show it, with the ISO code otherwise (₹, ₩…).
func PdfMoney(amount int64, c money.Currency) string {
	if s, ok := toCP1252(FormatMoney(amount, c, false)); ok {
		return s
	}
	s, _ := toCP1252(FormatMoney(amount, c, true))
	return s
}

func pctLabel(t invoicing.TaxRateSnap) string {
	s := t.DisplayName
	if t.Jurisdiction != "" {
		s += " (" + t.Jurisdiction + ")"
	}
	s += " " + t.Percentage.String() + "%"
	if t.Inclusive {
		s += " incl."
	}
	if t.Compound {
		s += " compound"
	}
	return s
}

func invoiceTitle(inv *invoicing.Invoice) string {
	if inv.Number != nil {
		return *inv.Number
	}
	return "DRAFT"
}

func issueDate(inv *invoicing.Invoice) time.Time {
	if inv.FinalizedAt != nil {
		return *inv.FinalizedAt
	}
	return inv.CreatedAt
}

func customerLines(c invoicing.Customer) []string {
	var out []string
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	add(c.Name)
	if a := c.Address; a != nil {
		add(a.Line1)
		add(a.Line2)
		add(strings.TrimSpace(a.PostalCode + " " + a.City))
		add(strings.TrimSpace(a.State + " " + a.Country))
	}
	add(c.Email)
	if c.TaxID != "" {
		add("Tax ID " + c.TaxID)
	}
	return out
}

// renderPDF writes an A4 invoice.
func PDF(w io.Writer, inv *invoicing.Invoice) error {
	pdf := fpdf.New("P", "mm", "A4", "")
	// The fonts' objects and the page's font resources in a fixed order,
	// not Go's map order: the same invoice is the same PDF, byte for byte.
	pdf.SetCatalogSort(true)
	pdf.SetCreationDate(issueDate(inv))
	pdf.SetModificationDate(issueDate(inv))
	pdf.SetTitle(invoiceTitle(inv), true)
	pdf.SetAuthor("billfn generate-invoice", true)
	pdf.SetMargins(15, 15, 15)
	pdf.SetAutoPageBreak(true, 20)
	tr := func(s string) string { out, _ := toCP1252(s); return out }
	m := func(a int64) string { return PdfMoney(a, inv.Currency) }
	pdf.SetFooterFunc(func() {
		pdf.SetY(-13)
		pdf.SetFont("Helvetica", "", 7)
		pdf.SetTextColor(120, 120, 120)
		pdf.CellFormat(0, 4, tr(fmt.Sprintf("%s · amounts in %s · page %d/{nb}", invoiceTitle(inv), inv.Currency, pdf.PageNo())), "", 0, "C", false, 0, "")
	})
	pdf.AliasNbPages("")
	pdf.AddPage()

	// Header
	pdf.SetFont("Helvetica", "B", 22)
	pdf.SetTextColor(30, 30, 30)
	pdf.CellFormat(100, 10, "INVOICE", "", 0, "L", false, 0, "")
	pdf.SetFont("Helvetica", "B", 12)
	status := strings.ToUpper(inv.Status)
	if inv.Overdue && inv.Status == invoicing.StatusOpen {
		status = "OVERDUE"
	}
	pdf.CellFormat(0, 10, tr(status), "", 1, "R", false, 0, "")
	pdf.SetFont("Helvetica", "", 11)
	pdf.CellFormat(0, 6, tr(invoiceTitle(inv)), "", 1, "L", false, 0, "")
	pdf.Ln(4)

	// Bill to / details
	top := pdf.GetY()
	pdf.SetFont("Helvetica", "B", 9)
	pdf.CellFormat(90, 5, "BILL TO", "", 2, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 10)
	for _, l := range customerLines(inv.Customer) {
		// Wrapped in the column: a cell as long as the customer's text ran
		// over the details beside it, where padding put a false "Amount due"
		// under the real one.
		for _, part := range splitCP1252(pdf, tr(l), 90) {
			pdf.CellFormat(90, 5, part, "", 2, "L", false, 0, "")
		}
	}
	pdf.CellFormat(90, 5, tr("Account "+inv.AccountID), "", 2, "L", false, 0, "")
	left := pdf.GetY()
	pdf.SetXY(110, top)
	details := [][2]string{{"Issued", issueDate(inv).Format("2 January 2006")}}
	if inv.DueDate != nil {
		details = append(details, [2]string{"Due", inv.DueDate.Format("2 January 2006")})
	}
	if inv.PeriodStart != nil && inv.PeriodEnd != nil {
		details = append(details, [2]string{"Period", inv.PeriodStart.Format(time.DateOnly) + " to " + inv.PeriodEnd.Format(time.DateOnly)})
	}
	details = append(details, [2]string{"Amount due", m(inv.AmountDue)})
	for _, d := range details {
		pdf.SetX(110)
		pdf.SetFont("Helvetica", "B", 9)
		pdf.CellFormat(28, 6, tr(d[0]), "", 0, "L", false, 0, "")
		pdf.SetFont("Helvetica", "", 10)
		pdf.CellFormat(0, 6, tr(d[1]), "", 1, "R", false, 0, "")
	}
	pdf.SetY(max(left, pdf.GetY()) + 6)

	// Lines
	cols := []struct {
		title string
		w     float64
		align string
	}{{"Description", 74, "L"}, {"Qty", 16, "R"}, {"Unit price", 28, "R"}, {"Discount", 22, "R"}, {"Tax", 20, "R"}, {"Amount", 20, "R"}}
	pdf.SetFont("Helvetica", "B", 9)
	pdf.SetFillColor(235, 238, 242)
	for i, c := range cols {
		ln := 0
		if i == len(cols)-1 {
			ln = 1
		}
		pdf.CellFormat(c.w, 7, c.title, "B", ln, c.align, true, 0, "")
	}
	pdf.SetFont("Helvetica", "", 9)
	for _, l := range inv.Lines {
		desc := splitCP1252(pdf, tr(l.Description), cols[0].w-2)
		if len(desc) == 0 {
			desc = []string{""}
		}
		h := 5.0 * float64(len(desc))
		if pdf.GetY()+h > 270 {
			pdf.AddPage()
		}
		y, page := pdf.GetY(), pdf.PageNo()
		pdf.MultiCell(cols[0].w, 5, strings.Join(desc, "\n"), "", "L", false)
		end, endY := pdf.PageNo(), y+h
		if end != page {
			// A description longer than a page ran on to the next ones: its
			// amounts go beside its first row, not at that height on its
			// last page, beside whatever text it wrote there.
			endY = pdf.GetY()
			pdf.SetPage(page)
			pdf.SetFontSize(9) // that page's footer set 7 pt last
		}
		pdf.SetXY(15+cols[0].w, y)
		vals := []string{l.Quantity.String(), m(l.UnitAmount), m(-l.DiscountAmount), m(l.TaxAmount), m(l.Amount)}
		if l.DiscountAmount == 0 {
			vals[2] = "-"
		}
		for i, v := range vals {
			pdf.CellFormat(cols[i+1].w, 5, v, "", 0, cols[i+1].align, false, 0, "")
		}
		pdf.SetPage(end)
		pdf.SetY(endY)
		pdf.SetDrawColor(225, 225, 225)
		pdf.Line(15, pdf.GetY()+0.5, 195, pdf.GetY()+0.5)
		pdf.Ln(1.5)
	}
	pdf.Ln(3)

	// Totals
	total := func(label, value string, bold bool) {
		style := ""
		if bold {
			style = "B"
		}
		pdf.SetX(105)
		pdf.SetFont("Helvetica", style, 10)
		pdf.CellFormat(60, 6, tr(label), "", 0, "L", false, 0, "")
		pdf.CellFormat(30, 6, value, "", 1, "R", false, 0, "")
	}
	total("Subtotal", m(inv.Subtotal), false)
	for _, d := range inv.Discounts {
		label := "Discount"
		if d.Coupon != "" {
			label += " " + d.Coupon
		}
		if d.PercentOff > 0 {
			label += " (" + d.PercentOff.String() + "%)"
		}
		total(label, m(-d.Amount), false)
	}
	if lineDisc := inv.Discount - sumDiscounts(inv.Discounts); lineDisc != 0 {
		total("Line discounts", m(-lineDisc), false)
	}
	for _, t := range inv.TaxBreakdown {
		total(pctLabel(t.TaxRateSnap)+" on "+m(t.TaxableAmount), m(t.Amount), false)
	}
	pdf.SetDrawColor(60, 60, 60)
	pdf.Line(105, pdf.GetY()+1, 195, pdf.GetY()+1)
	pdf.Ln(2)
	total("Total", m(inv.Total), true)
	if inv.AmountPaid > 0 {
		total("Amount paid", m(-inv.AmountPaid), false)
	}
	if inv.AmountRefunded > 0 {
		total("Amount refunded", m(inv.AmountRefunded), false)
	}
	total("Amount due", m(inv.AmountDue), true)

	if inv.Memo != "" {
		pdf.Ln(8)
		pdf.SetX(15)
		pdf.SetFont("Helvetica", "B", 9)
		pdf.CellFormat(0, 5, "NOTES", "", 1, "L", false, 0, "")
		pdf.SetFont("Helvetica", "", 9)
		pdf.MultiCell(0, 5, tr(inv.Memo), "", "L", false)
	}
	// A page's content stream is deflated by a zlib writer fpdf makes for
	// it (about 1 MB to allocate and clear, never reused): for a one-page
	// invoice that was three quarters of the PDF's CPU and all but a tenth
	// of its allocations, to save about 2.5 KB (BenchmarkPDF). Longer
	// invoices, whose pages' text compresses by 3 to 4, are deflated.
	pdf.SetCompression(pdf.PageCount() > 1)
	return pdf.Output(w)
}

func sumDiscounts(ds []invoicing.Discount) int64 {
	var n int64
	for _, d := range ds {
		n += d.Amount
	}
	return n
}

// invoiceStyle is the HTML invoice's stylesheet.
const invoiceStyle = `body{font-family:system-ui,Helvetica,Arial,sans-serif;color:#1e1e1e;max-width:820px;margin:32px auto;padding:0 16px}
h1{font-size:28px;margin:0}.status{float:right;font-weight:bold;letter-spacing:.05em}
.grid{display:flex;justify-content:space-between;margin:24px 0}.muted{color:#666;font-size:13px}
table{width:100%;border-collapse:collapse;font-size:14px}th{background:#ebeef2;text-align:left;padding:6px}
td{padding:6px;border-bottom:1px solid #e1e1e1}.r{text-align:right}.totals{width:50%;margin-left:auto;margin-top:16px}
.totals td{border:0}.strong td{font-weight:bold;border-top:1px solid #3c3c3c}
`

// HTML writes the invoice as a self-contained HTML page. It was
// html/template until issue 20; the page is the same (testdata/*.golden,
// written by that template), and the binary no longer links the template
// engine (see shared/htmlesc).
func HTML(w io.Writer, inv *invoicing.Invoice) error {
	status := strings.ToUpper(inv.Status)
	if inv.Overdue && inv.Status == invoicing.StatusOpen {
		status = "OVERDUE"
	}
	var b htmlesc.Builder
	b.Printf(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Invoice %s</title>
<style>
`, invoiceTitle(inv))
	b.Raw(invoiceStyle + "</style></head><body>\n")
	b.Printf(`<span class="status">%s</span><h1>INVOICE</h1><div>%s</div>`+"\n", status, invoiceTitle(inv))
	htmlParties(&b, inv)
	htmlLines(&b, inv)
	htmlTotals(&b, inv)
	if inv.Memo != "" {
		b.Printf(`<p class="muted">%s</p>`, inv.Memo)
	}
	b.Raw("\n</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// htmlDate is how the HTML invoice writes a date.
func htmlDate(t time.Time) string { return t.Format("2 January 2006") }

// htmlParties writes who is billed and the invoice's dates and amount due.
func htmlParties(b *htmlesc.Builder, inv *invoicing.Invoice) {
	b.Raw(`<div class="grid"><div><div class="muted">BILL TO</div>`)
	for _, l := range customerLines(inv.Customer) {
		b.Printf("<div>%s</div>", l)
	}
	b.Printf("<div>Account %s</div></div>\n<div><div>Issued: %s</div>", inv.AccountID, htmlDate(issueDate(inv)))
	if inv.DueDate != nil {
		b.Printf("<div>Due: %s</div>", htmlDate(inv.DueDate.Time))
	}
	b.Raw("\n")
	if inv.PeriodStart != nil && inv.PeriodEnd != nil {
		b.Printf("<div>Period: %s to %s</div>", htmlDate(*inv.PeriodStart), htmlDate(*inv.PeriodEnd))
	}
	b.Printf("\n<div><strong>Amount due: %s</strong></div></div></div>\n", FormatMoney(inv.AmountDue, inv.Currency, false))
}

// htmlLines writes the table of the invoice's lines.
func htmlLines(b *htmlesc.Builder, inv *invoicing.Invoice) {
	m := func(a int64) string { return FormatMoney(a, inv.Currency, false) }
	b.Raw(`<table><thead><tr><th>Description</th><th class="r">Qty</th><th class="r">Unit price</th><th class="r">Discount</th><th class="r">Tax</th><th class="r">Amount</th></tr></thead><tbody>` + "\n")
	for _, l := range inv.Lines {
		b.Printf(`<tr><td>%s</td><td class="r">%s</td><td class="r">%s</td>`+"\n", l.Description, l.Quantity, m(l.UnitAmount))
		discount := "-"
		if l.DiscountAmount != 0 {
			discount = m(-l.DiscountAmount)
		}
		b.Printf(`<td class="r">%s</td><td class="r">%s</td><td class="r">%s</td></tr>`+"\n", discount, m(l.TaxAmount), m(l.Amount))
	}
	b.Raw("</tbody></table>\n")
}

// htmlTotals writes the subtotal, the discounts, each tax, the total, what
// was paid and what is due.
func htmlTotals(b *htmlesc.Builder, inv *invoicing.Invoice) {
	m := func(a int64) string { return FormatMoney(a, inv.Currency, false) }
	row := func(label, amount string) {
		b.Printf(`<tr><td>%s</td><td class="r">%s</td></tr>`, label, amount)
	}
	b.Raw(`<table class="totals">`)
	row("Subtotal", m(inv.Subtotal))
	b.Raw("\n")
	if inv.Discount != 0 {
		row("Discounts", m(-inv.Discount))
	}
	b.Raw("\n")
	for _, t := range inv.TaxBreakdown {
		row(pctLabel(t.TaxRateSnap)+" on "+m(t.TaxableAmount), m(t.Amount))
	}
	b.Printf("\n"+`<tr class="strong"><td>Total</td><td class="r">%s</td></tr>`+"\n", m(inv.Total))
	if inv.AmountPaid != 0 {
		row("Amount paid", m(-inv.AmountPaid))
	}
	b.Printf("\n"+`<tr class="strong"><td>Amount due</td><td class="r">%s</td></tr></table>`+"\n", m(inv.AmountDue))
}

// splitCP1252 wraps Windows-1252 text (what tr returns) to width w.
// fpdf's SplitText reads its argument as UTF-8 and looks each rune up in a
// 256-entry width table, so a single byte above 0x7F (é, ü, €…) became
// U+FFFD and panicked the handler; here every byte goes in as the rune of
// the same value and comes back out as that byte.
func splitCP1252(pdf *fpdf.Fpdf, s string, w float64) []string {
	rs := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		rs[i] = rune(s[i])
	}
	lines := pdf.SplitText(string(rs), w)
	for i, l := range lines {
		b := make([]byte, 0, len(l))
		for _, r := range l {
			b = append(b, byte(r))
		}
		lines[i] = string(b)
	}
	return lines
}
