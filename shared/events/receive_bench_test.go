package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// receiveKey signs the benchmark's deliveries, as the kafka-trigger does.
var receiveKey = []byte("bench-delivery-key-0123456789abcdef")

// capturedData is the data of a payment.captured event as capture-payment
// writes it.
type capturedData struct {
	PaymentID      string `json:"payment_id"`
	AccountID      string `json:"account_id"`
	Amount         int64  `json:"amount"`
	AmountCaptured int64  `json:"amount_captured"`
	Currency       string `json:"currency"`
	Gateway        string `json:"gateway"`
}

// receiveBody is a batch delivery of n payment.captured events signed by
// capture-payment's test key, encoded as the kafka-trigger sends it.
func receiveBody(tb testing.TB, n int) []byte {
	signer := testenv.OriginSigner(events.Source("capture-payment"))
	evs := make([]events.Event, n)
	for i := range evs {
		p := uuid.NewString()
		ev, err := events.New(context.Background(), "capture-payment", events.TypePaymentCaptured, p,
			capturedData{p, uuid.NewString(), 2550 + int64(i), 2550 + int64(i), "USD", "sandbox"})
		if err != nil {
			tb.Fatal(err)
		}
		signer.Sign(&ev)
		evs[i] = ev
	}
	body, err := json.Marshal(evs)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// receiveRig is a receiver whose events need no database (a self-handled
// type whose batch handler does nothing), so a delivery costs only the
// receiver's own work: the delivery signature, parsing, every event's
// origin proof, the dispositions, the answer.
func receiveRig() *events.Receiver {
	rc := &events.Receiver{Consumer: "bench-receive", Keys: [][]byte{receiveKey}, Origins: testenv.OriginKeys()}
	rc.OnSelf(events.TypePaymentCaptured, func(context.Context, events.Event) error { return nil })
	rc.SelfBatch = func(context.Context, []events.Event) error { return nil }
	return rc
}

func receiveRequest(body []byte, sig string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", events.ContentTypeBatch)
	r.Header.Set(events.SignatureHeader, sig)
	return r
}

// BenchmarkReceive is the receiver alone on a batch delivery of signed
// payment.captured events, per event:
//
//	go test -run '^$' -bench BenchmarkReceive -benchtime 2000x ./shared/events/
func BenchmarkReceive(b *testing.B) {
	for _, n := range []int{1, 4, 50} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			rc := receiveRig()
			body := receiveBody(b, n)
			sig := events.SignDelivery(receiveKey, time.Now(), "bench-receive", body)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				w.Body.Reset()
				rc.ServeHTTP(w, receiveRequest(body, sig))
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
			runtime.ReadMemStats(&after)
			per := float64(b.N * n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/per, "ns/event")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/event")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/event")
		})
	}
}
