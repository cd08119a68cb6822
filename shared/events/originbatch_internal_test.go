package events

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"github.com/cloudevents/sdk-go/v2/event"
)

// primeOrder tells the base point (and so any real public key) from one
// with a small-order component, which batchKey keeps out of batches.
func TestPrimeOrder(t *testing.T) {
	b := edwards25519.NewGeneratorPoint()
	if !primeOrder(b) {
		t.Fatal("the base point has prime order")
	}
	// (0, -1), of order 2.
	enc, _ := hex.DecodeString("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
	t2, err := new(edwards25519.Point).SetBytes(enc)
	if err != nil {
		t.Fatal(err)
	}
	if primeOrder(t2) || primeOrder(new(edwards25519.Point).Add(b, t2)) {
		t.Fatal("a point with a small-order component passed as of prime order")
	}
	if _, ok := batchKey(new(edwards25519.Point).Add(b, t2).Bytes()); ok {
		t.Fatal("batchKey took a key with a small-order component")
	}
	if _, ok := batchKey(b.Bytes()); !ok {
		t.Fatal("batchKey refused the base point")
	}
}

// The batch equation holds for valid signatures of several keys (so a
// valid delivery costs one equation, not a verification per event) and
// fails for a delivery with one signature of other content.
func TestVerifyBatchEquation(t *testing.T) {
	var items []batchItem
	for i := range 40 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i % 3)
		key := ed25519.NewKeyFromSeed(seed)
		msg := []byte(fmt.Sprintf("event %d", i))
		it := batchItem{index: i, pub: key.Public().(ed25519.PublicKey), msg: msg}
		copy(it.sig[:], ed25519.Sign(key, msg))
		items = append(items, it)
	}
	if !verifyBatch(items) {
		t.Fatal("the equation of valid signatures does not hold")
	}
	items[17].msg = []byte("other content")
	if verifyBatch(items) {
		t.Fatal("the equation holds with a signature of other content")
	}
}

// canonicalJSON's shortcut answers what its definition does: data with
// none of the bytes Compact or HTMLEscape could change is returned as it
// is, any other goes through both.
func TestCanonicalJSONShortcut(t *testing.T) {
	for _, in := range []string{
		`{"a":1,"b":"x"}`, `{"a": 1}`, "{\n\"a\":1}", `{"s":"a b"}`, `{"h":"<b>&"}`,
		`{"u":"` + "\u2028\u2029" + `"}`, `{"e":"` + "é€" + `"}`, `not json`, `{"bad":`, ``, `[1,2 ,3]`,
		`{"n":1.50e+3,"z":null,"t":true,"a":[{}]}`, "\t", `"\u003c"`,
		`{"s":"a\" b"}`, `{"s":"a\\" , "t":1}`, `{"s":"a\\\" ,"}`, `{"s":"\"", "t":"x y"}`, `{"s":"a b"} `, `"\<"`, `"a b`, `"a\\" b"`,
		"{\"s\":\"tab\there\"}", `{"d":"payment capture of pay_1 for acct 2","m":{"k":"v w"}}`,
	} {
		if got, want := canonicalJSON([]byte(in)), slowCanonicalJSON([]byte(in)); string(got) != string(want) {
			t.Errorf("%q: %q, by definition %q", in, got, want)
		}
	}
}

// Data whose only whitespace is inside strings (a description) is its own
// canonical form: canonicalJSON answers the data itself, not a copy written
// by the two passes (which it was, at every signature and verification,
// until 76de693).
func TestCanonicalJSONTakesTheShortcutOverSpacesInStrings(t *testing.T) {
	for _, in := range []string{`{"d":"payment capture of pay_1","m":{"k":"v w"}}`, `{"s":"a\" b"}`, `["x y","\\ z"]`} {
		b := []byte(in)
		if out := canonicalJSON(b); len(out) == 0 || &out[0] != &b[0] {
			t.Errorf("%s: canonicalJSON copied it through both passes", in)
		}
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	f.Add([]byte(`{"a":"<x> y","b":[1, 2]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := canonicalJSON(in), slowCanonicalJSON(in); string(got) != string(want) {
			t.Fatalf("%q: %q, by definition %q", in, got, want)
		}
	})
}

// canonicalPoint answers what encoding the decoded point again answers,
// for real signatures' R, small and large y, and y spelled as y + p.
func TestCanonicalPoint(t *testing.T) {
	var encs [][]byte
	for i := range 64 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i)
		encs = append(encs, ed25519.Sign(ed25519.NewKeyFromSeed(seed), []byte{byte(i)})[:32])
	}
	for y := range 40 {
		for _, sign := range []byte{0, 0x80} {
			small := make([]byte, 32)
			small[0], small[31] = byte(y), sign
			large := make([]byte, 32) // p - 20 + y: y < 19 below p, the rest y - 20 + p
			for i := range large {
				large[i] = 0xff
			}
			large[0], large[31] = 0xed-20+byte(y), 0x7f|sign
			encs = append(encs, small, large)
		}
	}
	decoded, spelledOtherwise := 0, 0
	for _, b := range encs {
		p, err := new(edwards25519.Point).SetBytes(b)
		if err != nil {
			continue
		}
		decoded++
		want := string(p.Bytes()) == string(b)
		if !want {
			spelledOtherwise++
		}
		if canonicalPoint(b) != want {
			t.Errorf("%x: canonicalPoint %v, encoding again says %v", b, !want, want)
		}
	}
	if decoded < 80 || spelledOtherwise < 4 {
		t.Fatalf("%d encodings decode, %d of them not canonical: the test checks too little", decoded, spelledOtherwise)
	}
}

// decodeSignature answers what base64.RawURLEncoding.DecodeString and a
// length check answered before it: the same signatures, the same refusals
// (a '\n' the decoder skips, padding, a byte too many or too few).
func FuzzDecodeSignature(f *testing.F) {
	good := base64.RawURLEncoding.EncodeToString(make([]byte, ed25519.SignatureSize))
	for _, s := range []string{good, good[:85], good + "A", good[:40] + "\n" + good[40:], good[:40] + "\n" + good[41:],
		good[:85] + "B", good[:85] + "=", "", "!", good[:84] + "\r\n" + good[84:]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var sig [ed25519.SignatureSize]byte
		ok := decodeSignature(&sig, s)
		want, err := base64.RawURLEncoding.DecodeString(s)
		wantOK := err == nil && len(want) == ed25519.SignatureSize
		if ok != wantOK || ok && string(sig[:]) != string(want) {
			t.Fatalf("%q: decodeSignature %v %x, DecodeString %x %v", s, ok, sig, want, err)
		}
	})
}

// appendOriginBytes writes the documented encoding (originBytes of the
// attributes, the time formatted alone) whatever the time: zero, with
// nanoseconds, in another zone, beyond year 9999.
func TestAppendOriginBytesIsOriginBytes(t *testing.T) {
	for _, at := range []time.Time{{}, time.Date(2026, 12, 5, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 12, 5, 3, 4, 5, 120_000_000, time.FixedZone("x", 5*3600+1800)),
		time.Date(12026, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC)} {
		ev := event.New()
		ev.SetID("1")
		ev.SetSource("/functions/x")
		ev.SetType("billfn.x.y")
		ev.SetTime(at)
		if err := ev.SetData(event.ApplicationJSON, map[string]string{"a": "<b> c"}); err != nil {
			t.Fatal(err)
		}
		var ts string
		if !ev.Time().IsZero() {
			ts = ev.Time().UTC().Format(time.RFC3339Nano)
		}
		want := originBytes("1", "/functions/x", "billfn.x.y", ts, event.ApplicationJSON, "", canonicalJSON(ev.Data()))
		if got := appendOriginBytes([]byte("prefix"), ev, ev.Source()); string(got) != "prefix"+string(want) {
			t.Errorf("%v: %q, want %q", at, got, want)
		}
	}
}
