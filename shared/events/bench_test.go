package events_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
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

// BenchmarkDeliverWanted is the receiver's work on a delivery for a
// consumer with Wanted (capture-payment's, handle-webhook's shape): origin
// proofs checked, Wanted asked, the wanted events deduplicated in one
// transaction (they are duplicates after the first round, so every round
// does the same work). "none wanted" needs no database.
func BenchmarkDeliverWanted(b *testing.B) {
	pool := testenv.Pool(b)
	source := events.Source("capture-payment")
	signer := testenv.OriginSigner(source)
	mk := func(amount int64) events.Event {
		ev, err := events.New(context.Background(), "capture-payment", events.TypePaymentCaptured, uuid.NewString(), payment{amount})
		if err != nil {
			b.Fatal(err)
		}
		signer.Sign(&ev)
		return ev
	}
	for _, c := range []struct {
		name           string
		paying, zeroes int
	}{{"one wanted", 1, 0}, {"batch of 8, none wanted", 0, 8}, {"batch of 8, half wanted", 4, 4}} {
		b.Run(c.name, func(b *testing.B) {
			rc := &events.Receiver{Consumer: "bench-" + uuid.NewString()[:8], Pool: pool, Origins: testenv.OriginKeys(), Wanted: wantNonZero}
			noop := func(context.Context, pgx.Tx, []events.Event) error { return nil }
			rc.Batch = noop
			rc.On(events.TypePaymentCaptured, func(ctx context.Context, tx pgx.Tx, ev events.Event) error { return noop(ctx, tx, nil) })
			var evs []events.Event
			for k := 0; k < c.paying; k++ {
				evs = append(evs, mk(100))
			}
			for k := 0; k < c.zeroes; k++ {
				evs = append(evs, mk(0))
			}
			ctx := context.Background()
			if _, err := rc.Deliver(ctx, evs); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				res, err := rc.Deliver(ctx, evs)
				if err != nil || res.Duplicates != c.paying || res.Ignored != c.zeroes {
					b.Fatalf("%+v %v", res, err)
				}
			}
		})
	}
}
