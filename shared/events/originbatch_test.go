package events_test

import (
	"encoding/base64"
	"math/big"
	"testing"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// VerifyAll answers for each event exactly what Verify answers, whether
// the delivery's proofs all hold (one batch equation) or some do not
// (then each alone): valid ones from several keys, and beside them every
// way a proof can fail.
func TestVerifyAllAnswersAsVerify(t *testing.T) {
	ks := testenv.OriginKeys()
	var valid []events.Event
	for i := range 12 {
		src := capturePayment
		if i%3 == 0 {
			src = generateInv
		}
		valid = append(valid, signedAs(src, paymentFact(t, src, int64(100+i))))
	}
	altered := signedAs(capturePayment, paymentFact(t, capturePayment, 7))
	altered.SetSubject("someone else")
	wrongKey := signedAs(testenv.IntegratorSource, paymentFact(t, capturePayment, 8))
	wrongKey.SetSource(capturePayment)
	garbled := signedAs(capturePayment, paymentFact(t, capturePayment, 9))
	garbled.SetExtension(events.OriginSigExt, "not-a-signature")
	bigS := withSignature(t, signedAs(capturePayment, paymentFact(t, capturePayment, 10)), func(sig []byte) { addOrder(sig[32:]) })
	swappedR := withSignature(t, signedAs(capturePayment, paymentFact(t, capturePayment, 11)), func(sig []byte) {
		other := sigOf(t, valid[1])
		copy(sig[:32], other[:32])
	})
	unsigned := paymentFact(t, capturePayment, 12)
	bad := []events.Event{altered, wrongKey, garbled, bigS, swappedR, unsigned}

	cases := map[string][]events.Event{
		"all valid":            valid,
		"all valid, one key":   valid[1:3:3],
		"fewer than a batch":   valid[:1],
		"two, one altered":     {valid[0], altered},
		"three, one swapped R": {valid[0], swappedR, valid[2]},
		"valid and every flaw": append(append(append([]events.Event{}, valid[:5]...), bad...), valid[5:]...),
		"one flaw among many":  append(append([]events.Event{}, valid...), altered),
		"a non-canonical S":    append(append([]events.Event{}, valid...), bigS),
		"only flaws":           bad,
	}
	for name, evs := range cases {
		t.Run(name, func(t *testing.T) {
			errs := ks.VerifyAll(evs)
			if len(errs) != len(evs) {
				t.Fatalf("%d answers for %d events", len(errs), len(evs))
			}
			for i, ev := range evs {
				want := ks.Verify(ev)
				if (want == nil) != (errs[i] == nil) || (want != nil && want.Error() != errs[i].Error()) {
					t.Errorf("event %d: VerifyAll says %v, Verify %v", i, errs[i], want)
				}
			}
		})
	}
	for i, err := range ks.VerifyAll(bad) {
		if err == nil {
			t.Errorf("flawed event %d accepted", i)
		}
	}
	var none *events.OriginKeys
	for i, err := range none.VerifyAll(valid) {
		if err == nil {
			t.Errorf("event %d accepted by no keys", i)
		}
	}
}

func sigOf(t *testing.T, ev events.Event) []byte {
	t.Helper()
	s, _ := ev.Extensions()[events.OriginSigExt].(string)
	sig, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature %q: %v", s, err)
	}
	return sig
}

func withSignature(t *testing.T, ev events.Event, change func(sig []byte)) events.Event {
	t.Helper()
	sig := sigOf(t, ev)
	change(sig)
	ev.SetExtension(events.OriginSigExt, base64.RawURLEncoding.EncodeToString(sig))
	return ev
}

// addOrder adds the group order L to the little-endian scalar s: the same
// value mod L, spelled non-canonically (RFC 8032 requires S < L).
func addOrder(s []byte) {
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	be := make([]byte, len(s))
	for i := range s {
		be[len(s)-1-i] = s[i]
	}
	v := new(big.Int).Add(new(big.Int).SetBytes(be), l).FillBytes(make([]byte, len(s)))
	for i := range s {
		s[i] = v[len(s)-1-i]
	}
}

// TestSmallDeliveriesAreVerifiedTogether: a delivery of two or three
// events with valid proofs costs one batch equation, not a verification
// of each (process-transaction's deliveries are that small).
func TestSmallDeliveriesAreVerifiedTogether(t *testing.T) {
	ks := testenv.OriginKeys()
	alone := events.CountVerifiedAlone(ks)
	for _, n := range []int{2, 3} {
		var evs []events.Event
		for i := range n {
			evs = append(evs, signedAs(capturePayment, paymentFact(t, capturePayment, int64(200+i))))
		}
		before := alone.Load()
		for i, err := range ks.VerifyAll(evs) {
			if err != nil {
				t.Fatalf("event %d of %d: %v", i, n, err)
			}
		}
		if got := alone.Load() - before; got != 0 {
			t.Errorf("a delivery of %d valid events: %d verified alone, want 0 (one batch equation)", n, got)
		}
	}
}

// BenchmarkVerifyAll is the origin check of a delivery of 100 events of one
// producer, together; BenchmarkVerifyEach the same one by one.
func BenchmarkVerifyAll(b *testing.B) {
	ks, evs := benchEvents(b, 100)
	b.ResetTimer()
	for b.Loop() {
		for _, err := range ks.VerifyAll(evs) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs))/1000, "µs/event")
}

func BenchmarkVerifyEach(b *testing.B) {
	ks, evs := benchEvents(b, 100)
	b.ResetTimer()
	for b.Loop() {
		for _, ev := range evs {
			if err := ks.Verify(ev); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs))/1000, "µs/event")
}

func benchEvents(b *testing.B, n int) (*events.OriginKeys, []events.Event) {
	t := &testing.T{}
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = signedAs(capturePayment, paymentFact(t, capturePayment, int64(i)))
	}
	return testenv.OriginKeys(), evs
}
