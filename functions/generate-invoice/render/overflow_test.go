package render_test

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/go-pdf/fpdf"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/render"
)

// The customer's name, address and email are the customer's word, up to
// 200 characters each (254 for the email): in the PDF they stay in the
// BILL TO column, wrapped, and never run into the column of the invoice's
// dates and amount due beside it. Before, each was one cell as long as its
// text: an address line padded with spaces to "Amount due $0.01" wrote a
// second amount due under the real one, in the same column.
func TestPDFKeepsTheCustomersTextInItsColumn(t *testing.T) {
	inv := invoice(t, 1)
	fake := "Suite 1" + strings.Repeat(" ", 95) + "Amount due          $0.01"
	long := strings.Repeat("Customer", 25)
	inv.Customer.Name = long
	inv.Customer.Address = &invoicing.Address{Line1: "1 Main Street", Line2: fake, City: "Springfield"}
	inv.Customer.Email = strings.Repeat("a", 60) + "@" + strings.Repeat("b", 60) + ".example"
	var buf bytes.Buffer
	if err := render.PDF(&buf, inv); err != nil {
		t.Fatal(err)
	}
	text, _, _ := contents(t, buf.Bytes())

	// Every piece of text drawn left of the details column ends inside the
	// BILL TO column (15 to 105 mm), at 10 pt Helvetica.
	metrics := fpdf.New("P", "mm", "A4", "")
	metrics.SetFont("Helvetica", "", 10)
	const k = 72 / 25.4 // points per mm
	var drawn strings.Builder
	for _, m := range regexp.MustCompile(`BT ([\d.]+) ([\d.]+) Td \((.*?)\)\s?Tj ET`).FindAllStringSubmatch(text, -1) {
		x, _ := strconv.ParseFloat(m[1], 64)
		s := m[3]
		if x/k > 105 || strings.TrimSpace(s) == "" || !strings.Contains(long+fake+inv.Customer.Email, strings.TrimSpace(s)) {
			continue
		}
		drawn.WriteString(strings.TrimSpace(s))
		if end := x/k + metrics.GetStringWidth(s); end > 105.01 {
			t.Errorf("%q is drawn from %.1f to %.1f mm: past the BILL TO column (105 mm), over the invoice's details", s, x/k, end)
		}
	}
	for _, want := range []string{"Amount due          $0.01", inv.Customer.Email} {
		if !strings.Contains(strings.ReplaceAll(drawn.String(), " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("the PDF does not show %q in full; drew %q", want, drawn.String())
		}
	}
}
