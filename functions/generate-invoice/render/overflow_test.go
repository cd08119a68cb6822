package render_test

import (
	"bytes"
	"compress/zlib"
	"io"
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

// A line's quantity and amounts are drawn beside the first row of its
// description, on the same page, however long the description. Before, a
// description of more rows than a page holds (line breaks count) ran on
// to the next pages and its amounts were drawn on the last of them, at the
// height where it began: beside whatever rows of text the description put
// there, far from the line they belong to.
func TestPDFDrawsALinesAmountsBesideItsDescription(t *testing.T) {
	inv := invoice(t, 3)
	inv.Lines[1].Description = "Storage" + strings.Repeat("\nsee below", 60) + "\nFree credit"
	var buf bytes.Buffer
	if err := render.PDF(&buf, inv); err != nil {
		t.Fatal(err)
	}
	type place struct {
		page    int
		y, size string // the font's size in points
	}
	where := map[string][]place{}
	streams := regexp.MustCompile(`(?s)<<(?:/Filter /FlateDecode )?/Length \d+>>\nstream\n(.*?)\nendstream`).FindAllSubmatch(buf.Bytes(), -1)
	for page, m := range streams {
		data := m[1]
		if zr, err := zlib.NewReader(bytes.NewReader(data)); err == nil {
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		size := ""
		for _, op := range regexp.MustCompile(`/F\w+ ([\d.]+) Tf|BT [\d.]+ ([\d.]+) Td \((.*?)\)\s?Tj ET`).FindAllSubmatch(data, -1) {
			if len(op[1]) > 0 {
				size = string(op[1])
				continue
			}
			where[string(op[3])] = append(where[string(op[3])], place{page, string(op[2]), size})
		}
	}
	desc, amount := where["Storage"], where["$4.50"] // Storage's unit price and amount, both $4.50
	if len(desc) != 1 || len(amount) != 2 {
		t.Fatalf("Storage drawn at %v, $4.50 at %v", desc, amount)
	}
	for _, a := range amount {
		if a != desc[0] {
			t.Errorf("Storage's $4.50 is drawn on page %d at y %s in %s pt; its description begins on page %d at y %s in %s pt",
				a.page+1, a.y, a.size, desc[0].page+1, desc[0].y, desc[0].size)
		}
	}
}
