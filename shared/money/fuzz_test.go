package money

import (
	"errors"
	"math"
	"math/big"
	"testing"
)

// FuzzParse checks that Parse never panics, fails only with this package's
// errors, and that whatever it accepts means what it says: the value equals
// the decimal read exactly, and Format writes it back in a form Parse reads
// to the same value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"12.34", "-0.05", "1.500", "0", "-92233720368547758.08", "1e3", ".5", "00001.0000"} {
		for _, c := range []string{"USD", "JPY", "bhd", "CLF", "XXX"} {
			f.Add(s, c)
		}
	}
	f.Fuzz(func(t *testing.T, s, code string) {
		checkParse(t, s, Currency(code))
		if c, err := ParseCurrency(code); err == nil {
			if !c.Valid() {
				t.Fatalf("ParseCurrency(%q) = %q, which is not Valid", code, c)
			}
			checkParse(t, s, c)
		}
	})
}

func checkParse(t *testing.T, s string, c Currency) {
	t.Helper()
	v, err := Parse(s, c)
	if err != nil {
		if v != 0 {
			t.Fatalf("Parse(%q, %q) = %d alongside error %v, want 0", s, c, v, err)
		}
		for _, known := range []error{ErrSyntax, ErrPrecision, ErrOverflow, ErrUnknownCurrency} {
			if errors.Is(err, known) {
				return
			}
		}
		t.Fatalf("Parse(%q, %q): unexpected error %v", s, c, err)
	}
	if !c.Valid() {
		t.Fatalf("Parse(%q, %q) = %d: accepted an unknown currency", s, c, v)
	}
	// The value must be exactly the decimal that was written.
	want, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("Parse(%q, %q) = %d, but %q is not a decimal number", s, c, v, s)
	}
	got := new(big.Rat).SetFrac(big.NewInt(v), big.NewInt(Pow10(c.Exponent())))
	if got.Cmp(want) != 0 {
		t.Fatalf("Parse(%q, %q) = %d minor units = %s, want %s", s, c, v, got.FloatString(c.Exponent()), want.FloatString(c.Exponent()))
	}
	out := Format(v, c)
	back, err := Parse(out, c)
	if err != nil {
		t.Fatalf("Parse(Format(%d, %q) = %q): %v", v, c, out, err)
	}
	if back != v {
		t.Fatalf("Parse(Format(%d, %q) = %q) = %d", v, c, out, back)
	}
	if again := Format(back, c); again != out {
		t.Fatalf("Format is not canonical: %q then %q", out, again)
	}
}

// FuzzMulDivHalfEven compares MulDivHalfEven with exact big.Int arithmetic.
func FuzzMulDivHalfEven(f *testing.F) {
	f.Add(int64(25), int64(1), int64(10))
	f.Add(int64(-35), int64(1), int64(10))
	f.Add(int64(math.MaxInt64), int64(3), int64(3))
	f.Add(int64(math.MinInt64), int64(-1), int64(1))
	f.Add(int64(31), int64(1190112520884487201), int64(2))
	f.Add(int64(1999), int64(825), int64(10000))
	f.Fuzz(func(t *testing.T, a, num, den int64) {
		got, err := MulDivHalfEven(a, num, den)
		if den <= 0 {
			if err == nil {
				t.Fatalf("MulDivHalfEven(%d, %d, %d) = %d, want an error for den <= 0", a, num, den, got)
			}
			return
		}
		want := halfEvenRef(a, num, den)
		if !want.IsInt64() {
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("MulDivHalfEven(%d, %d, %d) = %d, %v; want ErrOverflow (exact %s)", a, num, den, got, err, want)
			}
			return
		}
		if err != nil || got != want.Int64() {
			t.Fatalf("MulDivHalfEven(%d, %d, %d) = %d, %v; want %s", a, num, den, got, err, want)
		}
	})
}
