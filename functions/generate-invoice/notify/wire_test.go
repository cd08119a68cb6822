package notify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// wireInvoice is an invoice like the bench's (loadgen's invoices-batch):
// lines lines, taxed, finalized.
func wireInvoice(tb testing.TB, lines int) *invoicing.Invoice {
	tb.Helper()
	var ls []string
	for k := range lines {
		ls = append(ls, fmt.Sprintf(`{"description":"Item %d","quantity":"2","unit_amount":%d,"tax_amount":%d,"amount":%d,"total":%d}`,
			k+1, 1250+k*10, (1250+k*10)*2/5, (1250+k*10)*2, (1250+k*10)*2*6/5))
	}
	var inv invoicing.Invoice
	err := json.Unmarshal([]byte(`{"id":"0b8c4ab4-54a4-4f0e-9f3f-3c8b4b8f6a11","number":"INV-2026-000123","account_id":"5d9f3a52-0d0e-4f1b-9a55-1f1c4d2e3b7a",
		"status":"open","currency":"USD","customer":{"name":"Load Test","email":"load@example.com"},"due_date":"2026-04-09",
		"lines":[`+strings.Join(ls, ",")+`],"tax_breakdown":[{"display_name":"VAT","jurisdiction":"GB","percentage":"20","taxable_amount":25900,"amount":5180}],
		"subtotal":25900,"total":31080,"amount_due":31080,"created_at":"2026-03-10T10:00:00Z","finalized_at":"2026-03-10T10:00:00Z"}`), &inv)
	if err != nil {
		tb.Fatal(err)
	}
	return &inv
}

// wireNotification is the invoice_finalized email of wireInvoice.
func wireNotification(inv *invoicing.Invoice) *Notification {
	due := "2026-04-09"
	req := events.NotificationRequested{Kind: events.NotifyInvoiceFinalized, AccountID: inv.AccountID, InvoiceID: inv.ID,
		Number: inv.Number, AmountDue: inv.AmountDue, Currency: string(inv.Currency), DueDate: &due}
	return New("7f0c0d7e-2f7a-4c55-8a53-3d1bbd0b6a11", "billfn/generate-invoice", "ev-1", req, inv.Customer.Email, "acme.example",
		time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC))
}

// wire writes e as Session.Send writes it inside DATA: the message built
// by Message, through the dot-stuffing writer of an SMTP client, up to the
// final "." line.
func wire(tb testing.TB, e *Email, now time.Time) []byte {
	tb.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	msg, err := Message(e, now)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := msg.WriteTo(dw); err != nil {
		tb.Fatal(err)
	}
	if err := dw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

var boundaryRE = regexp.MustCompile(`boundary=([0-9a-f]+)`)

// unbound replaces the message's random multipart boundaries by B1, B2…
func unbound(b []byte) []byte {
	for i, m := range boundaryRE.FindAllSubmatch(b, -1) {
		b = bytes.ReplaceAll(b, m[1], []byte(fmt.Sprintf("B%d", i+1)))
	}
	return b
}

// What an invoice's email puts on the wire (its bytes inside DATA, the
// random multipart boundaries aside) is byte for byte
// testdata/invoice_finalized.eml.golden: headers, the text and HTML parts,
// the PDF base64-encoded in lines of 76, dot-stuffing and the final dot.
func TestEmailOnTheWireIsUnchanged(t *testing.T) {
	inv := wireInvoice(t, 10)
	e, err := Compose(wireNotification(inv), inv, Sender{From: "Acme Billing <billing@acme.example>"})
	if err != nil {
		t.Fatal(err)
	}
	// Lines that begin with a dot, to be stuffed.
	e.Text = ".leading dot\r\n" + e.Text + "\r\n.\r\n..two\r\n"
	testenv.Golden(t, "invoice_finalized.eml.golden", unbound(wire(t, e, time.Date(2026, 3, 10, 10, 0, 5, 0, time.UTC))))
}

// BenchmarkEmail composes the bench's invoice email (ten lines, its PDF
// attached) and writes it as Session.Send does inside DATA: the CPU of one
// email in generate-invoice but for the network.
func BenchmarkEmail(b *testing.B) {
	inv := wireInvoice(b, 10)
	n := wireNotification(inv)
	from := Sender{From: "Acme Billing <billing@acme.example>"}
	now := time.Date(2026, 3, 10, 10, 0, 5, 0, time.UTC)
	b.Run("compose", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Compose(n, inv, from); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wire", func(b *testing.B) {
		e, err := Compose(n, inv, from)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		size := 0
		for b.Loop() {
			size = len(wire(b, e, now))
		}
		b.ReportMetric(float64(size), "bytes/email")
	})
}
