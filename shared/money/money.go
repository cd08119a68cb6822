// Package money is exact money: int64 amounts in a currency's minor units
// (cents for USD, yen for JPY, fils for BHD) with an ISO 4217 code. There are
// no floats here; decimal strings are parsed and formatted digit by digit and
// every arithmetic operation reports overflow instead of wrapping.
package money

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Errors returned by this package.
var (
	ErrOverflow        = errors.New("amount overflows int64 minor units")
	ErrUnknownCurrency = errors.New("unknown ISO 4217 currency code")
	ErrSyntax          = errors.New("not a decimal amount")
	ErrPrecision       = errors.New("more decimal places than the currency has")
)

// Currency is an upper-case ISO 4217 alphabetic code.
type Currency string

// ParseCurrency accepts a code in any case and returns its canonical form.
func ParseCurrency(s string) (Currency, error) {
	if len(s) != 3 {
		return "", ErrUnknownCurrency
	}
	c := Currency(strings.ToUpper(s))
	if _, ok := exponents[c]; !ok {
		return "", ErrUnknownCurrency
	}
	return c, nil
}

// Valid reports whether c is a known ISO 4217 code in canonical form.
func (c Currency) Valid() bool { _, ok := exponents[c]; return ok }

// Exponent is the number of minor-unit digits (JPY 0, USD 2, BHD 3).
// It returns -1 for an unknown currency.
func (c Currency) Exponent() int {
	e, ok := exponents[c]
	if !ok {
		return -1
	}
	return e
}

// String returns the code.
func (c Currency) String() string { return string(c) }

// Money is an amount with its currency.
type Money struct {
	Amount   int64    `json:"amount"`
	Currency Currency `json:"currency"`
}

// String formats as "12.34 USD".
func (m Money) String() string { return Format(m.Amount, m.Currency) + " " + string(m.Currency) }

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000}

// Parse reads a decimal string ("12.34", "-5", "0.005") as minor units of c.
// It never rounds: more decimals than c allows is ErrPrecision.
func Parse(s string, c Currency) (int64, error) {
	exp := c.Exponent()
	if exp < 0 {
		return 0, ErrUnknownCurrency
	}
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") || !digits(intPart) || !digits(frac) {
		return 0, ErrSyntax
	}
	frac = strings.TrimRight(frac, "0")
	if len(frac) > exp {
		return 0, ErrPrecision
	}
	// Work in uint64 magnitude so the most negative value parses exactly.
	var mag uint64
	for _, part := range []string{intPart, frac + strings.Repeat("0", exp-len(frac))} {
		for i := 0; i < len(part); i++ {
			hi, lo := bits.Mul64(mag, 10)
			if hi != 0 {
				return 0, ErrOverflow
			}
			var carry uint64
			mag, carry = bits.Add64(lo, uint64(part[i]-'0'), 0)
			if carry != 0 {
				return 0, ErrOverflow
			}
		}
	}
	if neg {
		if mag > 1<<63 {
			return 0, ErrOverflow
		}
		return int64(-mag), nil // wraps correctly for 1<<63
	}
	if mag > math.MaxInt64 {
		return 0, ErrOverflow
	}
	return int64(mag), nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Format writes minor units of c as a plain decimal ("1234.50", "-0.05",
// "1000" for JPY). Unknown currencies format with two decimals.
func Format(minor int64, c Currency) string {
	exp := c.Exponent()
	if exp < 0 {
		exp = 2
	}
	var mag uint64
	neg := minor < 0
	if neg {
		mag = uint64(-minor) // correct for MinInt64 as well
	} else {
		mag = uint64(minor)
	}
	s := strconv.FormatUint(mag, 10)
	if exp > 0 {
		if len(s) <= exp {
			s = strings.Repeat("0", exp-len(s)+1) + s
		}
		s = s[:len(s)-exp] + "." + s[len(s)-exp:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// Add returns a+b or ErrOverflow.
func Add(a, b int64) (int64, error) {
	s := a + b
	if (a > 0 && b > 0 && s < 0) || (a < 0 && b < 0 && s >= 0) {
		return 0, ErrOverflow
	}
	return s, nil
}

// Sub returns a-b or ErrOverflow.
func Sub(a, b int64) (int64, error) {
	if b == math.MinInt64 {
		if a >= 0 {
			return 0, ErrOverflow
		}
		return a - b, nil
	}
	return Add(a, -b)
}

// Mul returns a*b or ErrOverflow.
func Mul(a, b int64) (int64, error) {
	if a == 0 || b == 0 {
		return 0, nil
	}
	p := a * b
	if p/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
		return 0, ErrOverflow
	}
	return p, nil
}

// Sum adds all amounts or returns ErrOverflow.
func Sum(amounts ...int64) (int64, error) {
	var t int64
	for _, a := range amounts {
		var err error
		if t, err = Add(t, a); err != nil {
			return 0, err
		}
	}
	return t, nil
}

// MulDivHalfEven returns a*num/den rounded half to even, computed in 128-bit
// so a*num may exceed int64 as long as the result fits. den must be > 0.
// It is the one rounding rule of billfn (percentages, prorations, taxes).
func MulDivHalfEven(a, num, den int64) (int64, error) {
	if den <= 0 {
		return 0, fmt.Errorf("money: denominator %d must be positive", den)
	}
	neg := (a < 0) != (num < 0)
	ua, un := abs(a), abs(num)
	hi, lo := bits.Mul64(ua, un)
	if hi >= uint64(den) {
		return 0, ErrOverflow
	}
	q, r := bits.Div64(hi, lo, uint64(den))
	// Round half to even: compare 2r with den.
	twice := r * 2
	if r > math.MaxUint64/2 || twice > uint64(den) || (twice == uint64(den) && q%2 == 1) {
		if q == math.MaxUint64 {
			// Rounding up would wrap q to 0; the true result is 2^64,
			// which fits no int64.
			return 0, ErrOverflow
		}
		q++
	}
	if neg {
		if q > 1<<63 {
			return 0, ErrOverflow
		}
		return int64(-q), nil
	}
	if q > math.MaxInt64 {
		return 0, ErrOverflow
	}
	return int64(q), nil
}

func abs(v int64) uint64 {
	if v < 0 {
		return uint64(-v)
	}
	return uint64(v)
}

// Pow10 returns 10^n for 0 <= n <= 6.
func Pow10(n int) int64 { return pow10[n] }
