package events

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// scanCorpus are bodies at the edges of JSON's grammar and of
// encoding/json's nesting limit.
func scanCorpus() []string {
	deep := func(n int) string { return "[" + strings.Repeat("[", n-1) + strings.Repeat("]", n-1) + "]" }
	deepObj := func(n int) string { return "[" + strings.Repeat(`{"a":`, n-1) + "1" + strings.Repeat("}", n-1) + "]" }
	return []string{
		`[]`, ` [ ] `, `[1]`, `[1,]`, `[,1]`, `[1 2]`, `[null]`, `[true,false,null]`, `[tru]`, `[truex]`, `[nul]`,
		`[0]`, `[-0]`, `[01]`, `[-]`, `[1.]`, `[.5]`, `[1.5e]`, `[1e+]`, `[1E-7]`, `[-12.50e+03]`, `[1e5.5]`, `[0x1]`,
		`[""]`, `["\u00e9\n\t\"\\\/\b\f\r"]`, `["\x"]`, `["\u12"]`, `["\u12G4"]`, "[\"a\x01\"]", "[\"\xff\xfe\"]", `["]`,
		`[{}]`, `[{"a":1}]`, `[{"a":1,}]`, `[{"a" 1}]`, `[{a:1}]`, `[{"a":1 "b":2}]`, `[{"a":[{"b":{}}]}]`, `[{,}]`,
		`[1]x`, `[1] ]`, `[1`, `[`, `[{`, `[{"a":`, `[{"a":1`, "[1]\n", "[\t1\r\n,\n2 ]", `[1]]`, `[[]`, `[[1],[2,[3]]]`,
		deep(maxScanDepth), deep(maxScanDepth + 1), deepObj(maxScanDepth), deepObj(maxScanDepth + 1),
	}
}

// scanBatch says what json.Valid says of a body that starts with '[', and
// its elements are the ones json.Unmarshal reads into []json.RawMessage.
func FuzzScanBatch(f *testing.F) {
	for _, s := range scanCorpus() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b := trimJSONSpace(body)
		if len(b) == 0 || b[0] != '[' {
			return
		}
		spans, ok := scanBatch(b, nil)
		if want := json.Valid(b); ok != want {
			t.Fatalf("%.200q: scanBatch %v, json.Valid %v", b, ok, want)
		}
		if !ok {
			return
		}
		var raws []json.RawMessage
		if err := json.Unmarshal(b, &raws); err != nil {
			t.Fatal(err)
		}
		if len(raws) != len(spans) {
			t.Fatalf("%.200q: %d elements, json.Unmarshal %d", b, len(spans), len(raws))
		}
		for k, sp := range spans {
			if string(b[sp[0]:sp[1]]) != string(raws[k]) {
				t.Fatalf("%.200q: element %d is %q, json.Unmarshal's %q", b, k, b[sp[0]:sp[1]], raws[k])
			}
		}
	})
}

// scanStringBytewise is scanString as it was before it skipped eight
// bytes at a time: every byte of the string through the switch. It is
// the reference the new one must agree with, on every input.
func scanStringBytewise(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		case c < 0x20:
			return -1
		}
	}
	return -1
}

// sameAsBytewise fails t when scanString and scanStringBytewise disagree
// on the string starting at b[i]. (No t.Helper: it is called millions of
// times, and the message says all.)
func sameAsBytewise(t *testing.T, b []byte, i int) {
	if got, want := scanString(b, i), scanStringBytewise(b, i); got != want {
		t.Fatalf("scanString(%q, %d) = %d, byte by byte %d", b, i, got, want)
	}
}

// TestScanStringIsBytewise puts every byte, every pair of bytes and every
// escape (valid, invalid, cut short) at every offset of a string that
// starts at each place of an eight-byte word, with every end of the input
// after it: scanString answers as the byte-by-byte loop does. A pair's
// second byte is where a borrow of stringStops could flag a byte falsely.
func TestScanStringIsBytewise(t *testing.T) {
	const n = 20 // more than two words of the string's bytes
	fillers := []byte{'a', ' ', '#', '!', '~', 0x7f, 0x80, 0xff, '[', ']'}
	str := func(lead int, fill byte) []byte {
		b := append(bytes.Repeat([]byte{'x'}, lead), '"')
		return append(append(b, bytes.Repeat([]byte{fill}, n)...), '"', ',', '1', '2', '3', '4', '5', '6', '7', '8')
	}
	for lead := range 8 {
		for _, fill := range fillers {
			b := str(lead, fill)
			for end := lead + 1; end <= len(b); end++ {
				sameAsBytewise(t, b[:end:end], lead)
			}
			for k := lead + 1; k < lead+1+n; k++ {
				for v := range 256 {
					c := bytes.Clone(b)
					c[k] = byte(v)
					for end := k + 1; end <= len(c); end++ {
						sameAsBytewise(t, c[:end:end], lead)
					}
					if fill == 'a' && k+1 < lead+1+n {
						for w := range 256 {
							c[k+1] = byte(w)
							sameAsBytewise(t, c, lead)
						}
					}
				}
			}
		}
	}
	escapes := []string{`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u00e9`, `\uABCD`, `\uffFF`, `\u0000`,
		`\u12G4`, `\u12`, `\u`, `\x`, `\U0041`, `\'`, `\0`, `\` + "\x00", `\` + "\xff", `\\\"`, `\"\"`, `\u005C`}
	for lead := range 8 {
		for _, e := range escapes {
			for k := 0; k <= n; k++ {
				b := append(bytes.Repeat([]byte{'x'}, lead), '"')
				b = append(append(append(b, bytes.Repeat([]byte{'a'}, k)...), e...), bytes.Repeat([]byte{'b'}, n-k)...)
				b = append(b, `"]`...)
				for end := lead + 1; end <= len(b); end++ {
					sameAsBytewise(t, b[:end:end], lead)
				}
			}
		}
	}
}

// FuzzScanStringIsBytewise is TestScanStringIsBytewise for any bytes
// after the opening quote, the quote at any place of a word.
func FuzzScanStringIsBytewise(f *testing.F) {
	for _, s := range scanCorpus() {
		f.Add(uint8(0), []byte(s))
	}
	f.Add(uint8(3), []byte(`pL8jWuj84sXyUVlWyOVhfcSqu_okNK6IwQrw53L94tcBKyYX6-wEzgW--tjrFu1V8yBSyWyJ0_T7R8XmZ8BBAw"`))
	f.Add(uint8(5), []byte("0123456\"\\u00e9\\n\x1f\x80\xff\"#"))
	f.Fuzz(func(t *testing.T, lead uint8, rest []byte) {
		b := append(append(bytes.Repeat([]byte{'x'}, int(lead%8)), '"'), rest...)
		sameAsBytewise(t, b, int(lead%8))
	})
}

// plainASCIIBytewise is plainASCII as it was before it read eight bytes
// at a time, the reference for TestPlainASCIIIsBytewise.
func plainASCIIBytewise(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// TestPlainASCIIIsBytewise puts every byte, and every pair of bytes, at
// every offset of runs of printable ASCII of every length up to three
// words: plainASCII answers as the byte-by-byte loop does.
func TestPlainASCIIIsBytewise(t *testing.T) {
	for _, fill := range []byte{' ', '!', '[', ']', '}', '~', 'a'} {
		for n := range 25 {
			b := bytes.Repeat([]byte{fill}, n)
			if got, want := plainASCII(b), plainASCIIBytewise(b); got != want {
				t.Fatalf("plainASCII(%q) = %v, byte by byte %v", b, got, want)
			}
			for k := range n {
				for v := range 256 {
					c := bytes.Clone(b)
					c[k] = byte(v)
					for w := range 256 {
						if k+1 < n {
							c[k+1] = byte(w)
						} else if w > 0 {
							break
						}
						if got, want := plainASCII(c), plainASCIIBytewise(c); got != want {
							t.Fatalf("plainASCII(%q) = %v, byte by byte %v", c, got, want)
						}
					}
				}
			}
		}
	}
}

// FuzzPlainASCIIIsBytewise is TestPlainASCIIIsBytewise for any bytes.
func FuzzPlainASCIIIsBytewise(f *testing.F) {
	f.Add([]byte("pL8jWuj84sXyUVlWyOVhfcSqu_okNK6IwQrw53L94tcBKyYX6-wEzgW--tjrFu1V8yBSyWyJ0_T7R8XmZ8BBAw"))
	f.Add([]byte("0123456\x7f89abcdef\\"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := plainASCII(b), plainASCIIBytewise(b); got != want {
			t.Fatalf("plainASCII(%q) = %v, byte by byte %v", b, got, want)
		}
	})
}

// signedValues are the string values of a transfer signed in a tree
// (BenchmarkParsePostedBatch's events), as decodeCommon reads them.
var signedValues = []string{
	"1.0", "01a24f17-6e26-7cae-9fc3-7e561a4bf84f", "/functions/process-transaction", "billfn.transaction.posted",
	"a7ede4e6-fb4c-46b0-ac28-6888689cc49a", "2026-12-07T06:01:05.318958595Z", "application/json",
	"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "e7b6831dbc9a9530",
	"Jsh4phbhHmiNlLCwRC31WJ6P28n49I0rc7vM2BGdrvjC-Jd45g6uf-48BiK46CADit-KXFkeB_1xuQOUcySPAQ",
	"0.3.LI061N93OaGp6mADYHOBZwYeH2X-6l19eZJRUJLivDt_eWH1TQlKWB8Gx5EjJ5f8haLdvbI2nZwOoIQgYbuOFw",
}

// BenchmarkScanString is scanString against the byte-by-byte loop on
// signedValues, quoted as JSON strings:
//
//	go test -run '^$' -bench BenchmarkScanString -count 5 ./shared/events/
func BenchmarkScanString(b *testing.B) {
	var quoted [][]byte
	for _, v := range signedValues {
		quoted = append(quoted, []byte(`"`+v+`",`))
	}
	for _, f := range []struct {
		name string
		scan func([]byte, int) int
	}{{"swar", scanString}, {"bytewise", scanStringBytewise}} {
		b.Run(f.name, func(b *testing.B) {
			for b.Loop() {
				for _, q := range quoted {
					if f.scan(q, 0) != len(q)-1 {
						b.Fatal(string(q))
					}
				}
			}
		})
	}
}

// BenchmarkPlainASCII is plainASCII against the byte-by-byte loop on
// signedValues:
//
//	go test -run '^$' -bench BenchmarkPlainASCII -count 5 ./shared/events/
func BenchmarkPlainASCII(b *testing.B) {
	var values [][]byte
	for _, v := range signedValues {
		values = append(values, []byte(v))
	}
	for _, f := range []struct {
		name  string
		plain func([]byte) bool
	}{{"swar", plainASCII}, {"bytewise", plainASCIIBytewise}} {
		b.Run(f.name, func(b *testing.B) {
			for b.Loop() {
				for _, v := range values {
					if !f.plain(v) {
						b.Fatal(string(v))
					}
				}
			}
		})
	}
}
