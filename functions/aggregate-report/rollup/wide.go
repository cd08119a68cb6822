package rollup

import (
	"fmt"
	"math/big"
	"math/bits"
	"strconv"
)

// Wide is a signed 128-bit integer in two's complement (Hi the upper half,
// Lo the lower), the sum of a rollup row's amounts. Each amount is a valid
// int64, but anyone may have a transfer of math.MaxInt64 rejected and
// counted, so a row's sum must not be bounded by int64: a sum of fewer
// than 2^64 int64 amounts always fits in 128 bits, so adding never fails
// (the log would need 2^64 events). Reports, which hand out int64 figures,
// check their totals (the amount_overflow problem); the rollups do not
// refuse a fact. A Wide is comparable, as the replay's comparison needs.
type Wide struct {
	Hi int64
	Lo uint64
}

// WideOf is v as a Wide.
func WideOf(v int64) Wide { return Wide{Hi: v >> 63, Lo: uint64(v)} }

// Add returns w + x.
func (w Wide) Add(x Wide) Wide {
	lo, carry := bits.Add64(w.Lo, x.Lo, 0)
	return Wide{Hi: w.Hi + x.Hi + int64(carry), Lo: lo}
}

// AddInt64 returns w + v.
func (w Wide) AddInt64(v int64) Wide { return w.Add(WideOf(v)) }

// Int64 returns w as an int64, and whether it fits in one.
func (w Wide) Int64() (int64, bool) {
	v := int64(w.Lo)
	return v, w.Hi == v>>63
}

// Big returns w as a big.Int.
func (w Wide) Big() *big.Int {
	b := new(big.Int).SetInt64(w.Hi)
	b.Lsh(b, 64)
	return b.Add(b, new(big.Int).SetUint64(w.Lo))
}

// String formats w in decimal.
func (w Wide) String() string {
	if v, ok := w.Int64(); ok {
		return strconv.FormatInt(v, 10)
	}
	return w.Big().String()
}

var (
	wideMin = new(big.Int).Lsh(big.NewInt(-1), 127)
	wideMax = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 127), big.NewInt(1))
	two64   = new(big.Int).Lsh(big.NewInt(1), 64)
)

// WideFromBig converts b, which must fit in 128 bits.
func WideFromBig(b *big.Int) (Wide, error) {
	if b.IsInt64() {
		return WideOf(b.Int64()), nil
	}
	if b.Cmp(wideMin) < 0 || b.Cmp(wideMax) > 0 {
		return Wide{}, fmt.Errorf("%s does not fit in 128 bits", b)
	}
	// Euclidean division: lo is in [0, 2^64), hi the rest, signed.
	hi, lo := new(big.Int).DivMod(b, two64, new(big.Int))
	return Wide{Hi: hi.Int64(), Lo: lo.Uint64()}, nil
}

// ParseWide reads a decimal integer (as Postgres writes a numeric of
// scale 0).
func ParseWide(s string) (Wide, error) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return WideOf(v), nil
	}
	b, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return Wide{}, fmt.Errorf("%q is not an integer", s)
	}
	return WideFromBig(b)
}
