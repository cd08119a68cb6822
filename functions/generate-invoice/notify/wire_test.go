package notify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/textproto"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
	"github.com/google/uuid"
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

// wire is what Session.Send writes of e after DATA, up to the final "."
// line: the message built by Message, dot-stuffed.
func wire(tb testing.TB, e *Email, now time.Time) []byte {
	tb.Helper()
	msg, err := Message(e, now)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := dataOf(msg)
	if err != nil {
		tb.Fatal(err)
	}
	return b
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
// The golden file was written through net/textproto's DotWriter, as
// go-mail's Client.Send wrote every email before Session.transact.
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

// textprotoDot is what net/textproto's DotWriter writes of src, closed.
func textprotoDot(src []byte) []byte {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	dw := textproto.NewWriter(bw).DotWriter()
	_, _ = dw.Write(src)
	_ = dw.Close()
	return out.Bytes()
}

// dotStuff writes what DotWriter writes: line ends of every kind (CRLF,
// bare LF, bare CR, CR CR LF), dots at the start of lines and elsewhere,
// data that ends within a line, after a CR, after a line end, nothing;
// and random data of those bytes.
func TestDotStuffIsTextprotos(t *testing.T) {
	cases := []string{"", ".", "..", "\r", "\n", "\r\n", ".\r\n", "a", "a\r", "a\n", "a\r\n", "a\r\nb", "\r\r\n", "\r\r\n.", "\n.\n..\r\n.",
		"x.y\r\n.z\r\n", ".\r.\n.", "\r.\r\n.", "a\rb\r\n", "line\n\n\n", strings.Repeat("0123456789", 500) + "\r\n." + strings.Repeat("x", 77)}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(".\r\nab")
	for range 5000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if got, want := dotStuff(nil, []byte(c)), textprotoDot([]byte(c)); !bytes.Equal(got, want) {
			t.Fatalf("%q: dotStuff writes %q, DotWriter %q", c, got, want)
		}
	}
}

// countingConn counts the writes to a connection.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// Once a session is open, an email of 15 KB (the bench's invoice, its PDF
// attached) costs four writes to the socket: MAIL, RCPT, DATA and the
// message, whole, with its final dot. Through DotWriter the message went
// by 4 KB (the buffer of textproto's bufio.Writer): seven writes.
func TestAnEmailIsFourWrites(t *testing.T) {
	mp := testenv.StartMailpit(t)
	cfg, err := ParseSMTPURL(mp.SMTPURL())
	if err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	m := NewMailer(cfg)
	m.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		return countingConn{c, &writes}, err
	}
	s := m.Session()
	defer s.Close()
	inv := wireInvoice(t, 10)
	from := Sender{From: "Acme Billing <billing@acme.example>"}
	for i := range 3 {
		n := wireNotification(inv)
		n.MessageID = uuid.NewString() + "@acme.example"
		e, err := Compose(n, inv, from)
		if err != nil {
			t.Fatal(err)
		}
		before := writes.Load()
		if o, sent := s.Send(t.Context(), e, time.Now()); !sent {
			t.Fatalf("email %d: %+v", i, o)
		}
		if i == 0 {
			continue // the first dials: EHLO
		}
		if got := writes.Load() - before; got != 4 {
			t.Errorf("email %d (%d bytes): %d writes, want 4", i, len(wire(t, e, time.Now())), got)
		}
	}
}
