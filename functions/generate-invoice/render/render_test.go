package render_test

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/render"
	"github.com/billfn/billfn/shared/testenv"
)

// invoice is a finalized invoice of lines lines like the bench's (three
// kinds of line, repeated).
func invoice(t testing.TB, lines int) *invoicing.Invoice {
	t.Helper()
	var ls []string
	for i := range lines {
		ls = append(ls, []string{`{"description":"Seats %d","quantity":"3","unit_amount":1200,"amount":3600,"total":3600}`,
			`{"description":"Storage %d","quantity":"1","unit_amount":450,"amount":450,"total":450}`,
			`{"description":"Support %d","quantity":"1","unit_amount":2500,"amount":2500,"total":2500}`}[i%3])
		ls[i] = fmt.Sprintf(ls[i], i+1)
	}
	var inv invoicing.Invoice
	err := json.Unmarshal([]byte(`{"id":"0b8c4ab4-54a4-4f0e-9f3f-3c8b4b8f6a11","number":"INV-2026-000123","account_id":"5d9f3a52-0d0e-4f1b-9a55-1f1c4d2e3b7a",
		"status":"open","currency":"USD","customer":{"name":"Bench Customer 1","email":"bench-1@example.com"},"due_date":"2026-04-09",
		"lines":[`+strings.Join(ls, ",")+`],"subtotal":6550,"total":6550,"amount_due":6550,
		"created_at":"2026-03-10T10:00:00Z","finalized_at":"2026-03-10T10:00:00Z"}`), &inv)
	if err != nil {
		t.Fatal(err)
	}
	return &inv
}

// contents answers the PDF's page content streams, inflated, and how many
// were deflated.
func contents(t *testing.T, pdf []byte) (text string, pages, deflated int) {
	t.Helper()
	if !bytes.HasPrefix(pdf, []byte("%PDF-1.")) || !bytes.Contains(pdf[len(pdf)-32:], []byte("%%EOF")) {
		t.Fatalf("not a complete PDF: %q...", pdf[:min(len(pdf), 64)])
	}
	var b strings.Builder
	for _, m := range regexp.MustCompile(`(?s)<<(/Filter /FlateDecode )?/Length (\d+)>>\nstream\n(.*?)\nendstream`).FindAllSubmatch(pdf, -1) {
		data := m[3]
		if len(m[1]) > 0 {
			zr, err := zlib.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
			deflated++
		}
		if fmt.Sprint(len(m[3])) != string(m[2]) {
			t.Fatalf("a stream of %d bytes says /Length %s", len(m[3]), m[2])
		}
		pages++
		b.Write(data)
	}
	return b.String(), pages, deflated
}

// A one-page invoice's content is left as it is (deflating it cost most of
// the PDF's CPU to save a few KB); an invoice of several pages is
// deflated. Both hold every line.
func TestPDFDeflatesOnlyInvoicesOfSeveralPages(t *testing.T) {
	for _, c := range []struct {
		lines, pages int
		deflated     bool
	}{{3, 1, false}, {120, 4, true}} {
		var buf bytes.Buffer
		if err := render.PDF(&buf, invoice(t, c.lines)); err != nil {
			t.Fatal(err)
		}
		text, pages, deflated := contents(t, buf.Bytes())
		if pages != c.pages || (deflated == pages) != c.deflated || (deflated == 0) == c.deflated {
			t.Fatalf("%d lines: %d pages, %d deflated; want %d, deflated %v", c.lines, pages, deflated, c.pages, c.deflated)
		}
		for _, want := range []string{"INV-2026-000123", fmt.Sprintf("Support %d", c.lines), "$65.50", fmt.Sprintf("page %d/%d", pages, pages)} {
			if !strings.Contains(text, want) {
				t.Errorf("%d lines: the PDF does not show %q", c.lines, want)
			}
		}
	}
}

// BenchmarkPDF renders the bench's invoice (one page, three lines), and one
// of 120 lines (four pages).
func BenchmarkPDF(b *testing.B) {
	for _, lines := range []int{3, 120} {
		b.Run(fmt.Sprintf("lines=%d", lines), func(b *testing.B) {
			inv := invoice(b, lines)
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := render.PDF(&buf, inv); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(buf.Len()), "bytes/pdf")
		})
	}
}

// The PDF of each of goldenInvoices, of the bench's invoice (one page) and
// of one of 120 lines (four pages, deflated) is byte for byte
// testdata/*.pdf.golden: the same invoice is always the same PDF (fpdf wrote
// its fonts in Go's map order until the catalog was sorted: this failed on
// most runs), and what the PDF every invoice email carries shows, and how,
// stays what it was when the golden files were written.
func TestPDFIsUnchanged(t *testing.T) {
	for name, inv := range goldenPDFs(t) {
		var buf bytes.Buffer
		if err := render.PDF(&buf, inv); err != nil {
			t.Fatal(name, err)
		}
		testenv.Golden(t, name+".pdf.golden", buf.Bytes())
	}
}

// goldenPDFs are the invoices of testdata/*.pdf.golden, by name.
func goldenPDFs(t *testing.T) map[string]*invoicing.Invoice {
	t.Helper()
	docs := map[string]*invoicing.Invoice{"invoice-bench": invoice(t, 3), "invoice-120-lines": invoice(t, 120)}
	for name, doc := range goldenInvoices {
		var inv invoicing.Invoice
		if err := json.Unmarshal([]byte(doc), &inv); err != nil {
			t.Fatal(name, err)
		}
		docs[name] = &inv
	}
	// A currency the core fonts cannot show (its ISO code instead), and a
	// description wrapped over lines, with characters outside ASCII.
	wrapped := invoice(t, 2)
	wrapped.Currency = "INR"
	wrapped.Lines[0].Description = strings.Repeat("Conseil stratégique – 5 € « été » ", 6)
	docs["invoice-inr-wrapped"] = wrapped
	return docs
}

// Invoices rendered at once by several goroutines, which learn the money
// templates (money.go) together, are each the PDF rendered alone (the
// golden files); -race checks the templates' sharing.
func TestPDFsRenderedTogetherAreTheGoldenFiles(t *testing.T) {
	docs := goldenPDFs(t)
	want := map[string][]byte{}
	for name := range docs {
		b, err := os.ReadFile(filepath.Join("testdata", name+".pdf.golden"))
		if err != nil {
			t.Fatal(err)
		}
		want[name] = b
	}
	render.ForgetTemplates()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 3 {
				for name, inv := range docs { // in another order each time
					var buf bytes.Buffer
					if err := render.PDF(&buf, inv); err != nil {
						t.Error(name, err)
						return
					}
					if !bytes.Equal(buf.Bytes(), want[name]) {
						t.Errorf("%s rendered with others differs from its golden file", name)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
