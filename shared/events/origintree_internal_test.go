package events

import (
	"strconv"
	"testing"
)

// An originpath parseOriginPath accepts has one spelling: encodePath
// writes it back byte for byte; anything else is refused, never a panic.
func FuzzParseOriginPath(f *testing.F) {
	hashes := make([][]byte, 5)
	for i := range hashes {
		hashes[i] = make([]byte, 32)
		hashes[i][0] = byte(i)
	}
	f.Add(encodePath(3, "17", hashes))
	f.Add(encodePath(0, "2", hashes[:1]))
	f.Add("1.2.")
	f.Add("01.2.AAAA")
	f.Add("2.65536." + encodePath(0, "2", hashes[:1]))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseOriginPath(s)
		if err != nil {
			return
		}
		if p.index >= p.size || p.size < 2 || p.size > maxVerifiedTreeSize {
			t.Fatalf("%q: accepted index %d of size %d", s, p.index, p.size)
		}
		if again := encodePath(int(p.index), strconv.FormatUint(p.size, 10), p.hashes); again != s {
			t.Fatalf("%q accepted, but it is spelt %q", s, again)
		}
	})
}
