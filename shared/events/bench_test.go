package events_test

import (
	"context"
	"crypto/ed25519"
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

// BenchmarkMarshalThenSignEncoded is the outbox Writer's encoding of an
// event New built, the way it was: Marshal, then SignEncoded (nil signer:
// Marshal alone).
func BenchmarkMarshalThenSignEncoded(b *testing.B) {
	for _, s := range benchSigners() {
		b.Run(s.name, func(b *testing.B) {
			ev := benchEvent(b)
			b.ReportAllocs()
			for b.Loop() {
				raw, err := events.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				if s.s != nil {
					if _, ok := s.s.SignEncoded(ev, raw); !ok {
						b.Fatal("not signed")
					}
				}
			}
		})
	}
}

// BenchmarkMarshalEvent is the same bytes through MarshalEvent.
func BenchmarkMarshalEvent(b *testing.B) {
	for _, s := range benchSigners() {
		b.Run(s.name, func(b *testing.B) {
			ev := benchEvent(b)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := s.s.MarshalEvent(ev); !ok {
					b.Fatal("not on the fast path")
				}
			}
		})
	}
}

func benchSigners() []struct {
	name string
	s    *events.OriginSigner
} {
	return []struct {
		name string
		s    *events.OriginSigner
	}{{"unsigned", nil}, {"signed", events.NewOriginSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))}}
}

func benchEvent(b *testing.B) events.Event {
	bal := int64(7450)
	s := sample{"0190a0b0-0000-7000-8000-000000000001", "0190a0b0-0000-7000-8000-000000000002", "0190a0b0-0000-7000-8000-000000000003",
		2550, "USD", "posted", time.Now(), &bal}
	ev, err := events.New(context.Background(), "capture-payment", "billfn.payment.captured", s.From, s)
	if err != nil {
		b.Fatal(err)
	}
	return ev
}
