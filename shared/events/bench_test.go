package events_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/events"
)

type sample struct {
	ID, From, To string
	Amount       int64
	Currency     string
	Status       string
	CreatedAt    time.Time
	Balance      *int64
}

// BenchmarkNewAndMarshal is the cost of one outbox event: build it and
// encode it in structured mode.
func BenchmarkNewAndMarshal(b *testing.B) {
	bal := int64(7450)
	s := sample{"0190a0b0-0000-7000-8000-000000000001", "0190a0b0-0000-7000-8000-000000000002", "0190a0b0-0000-7000-8000-000000000003",
		2550, "USD", "posted", time.Now(), &bal}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ev, err := events.New(ctx, "process-transaction", "billfn.transaction.posted", s.From, s)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncode is the same work through Encode.
func BenchmarkEncode(b *testing.B) {
	bal := int64(7450)
	s := sample{"0190a0b0-0000-7000-8000-000000000001", "0190a0b0-0000-7000-8000-000000000002", "0190a0b0-0000-7000-8000-000000000003",
		2550, "USD", "posted", time.Now(), &bal}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := events.Encode(ctx, "process-transaction", "billfn.transaction.posted", s.From, s); err != nil {
			b.Fatal(err)
		}
	}
}
