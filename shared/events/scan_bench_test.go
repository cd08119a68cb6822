package events_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// postedBatch is a batch delivery of n billfn.transaction.posted events
// as make bench's "batch transfers" sends them to its consumers: each
// event's data a Transfer, signed together in trees (SignAll), so every
// event carries a base64url signature and a Merkle inclusion proof.
func postedBatch(tb testing.TB, n int) []byte {
	tb.Helper()
	payloads, msgs := make([][]byte, n), make([][]byte, n)
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for i := range n {
		from, to := int64(1_000_000-2550*i), int64(2550*(i+1))
		tr := events.Transfer{
			ID: uuid.NewString(), FromAccountID: uuid.NewString(), ToAccountID: uuid.NewString(),
			Amount: 2550, Currency: "USD", Status: "posted", Description: "batch transfer",
			ReferenceID: uuid.NewString(), CreatedAt: at, PostedAt: &at,
			FromBalance: &from, FromAvailable: &from, ToBalance: &to, ToAvailable: &to,
		}
		var err error
		if _, payloads[i], msgs[i], err = events.EncodeLater("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "",
			"process-transaction", events.TypeTransactionPosted, tr.FromAccountID, tr); err != nil {
			tb.Fatal(err)
		}
	}
	testenv.OriginSigner(events.Source("process-transaction")).SignAll(payloads, msgs)
	return append(append([]byte("["), bytes.Join(payloads, []byte(","))...), ']')
}

// BenchmarkParsePostedBatch is Parse alone on a batch of 50 signed
// transfers (postedBatch), the part of a consumer's delivery that reads
// the JSON:
//
//	go test -run '^$' -bench BenchmarkParsePostedBatch -count 5 ./shared/events/
func BenchmarkParsePostedBatch(b *testing.B) {
	body := postedBatch(b, 50)
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Content-Type", events.ContentTypeBatch)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		evs, err := events.Parse(r, body)
		if err != nil || len(evs) != 50 {
			b.Fatal(len(evs), err)
		}
	}
}

// BenchmarkScanPostedBatch is the scanner alone (scanBatch, Parse's pass
// that checks the body as json.Valid does and finds its events) on
// BenchmarkParsePostedBatch's body.
func BenchmarkScanPostedBatch(b *testing.B) {
	body := postedBatch(b, 50)
	spans := make([][2]int, 0, 64)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if sp, ok := events.ScanBatch(body, spans[:0]); !ok || len(sp) != 50 {
			b.Fatal(len(sp), ok)
		}
	}
}
