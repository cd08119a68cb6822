package money

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseCurrencyIsCaseInsensitive(t *testing.T) {
	tests := []struct {
		in   string
		want Currency
	}{
		{"USD", "USD"},
		{"usd", "USD"},
		{"Usd", "USD"},
		{"jpy", "JPY"},
		{"bHd", "BHD"},
		{"clf", "CLF"},
	}
	for _, tt := range tests {
		got, err := ParseCurrency(tt.in)
		if err != nil {
			t.Fatalf("ParseCurrency(%q): unexpected error %v", tt.in, err)
		}
		if got != tt.want {
			t.Fatalf("ParseCurrency(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !got.Valid() {
			t.Fatalf("ParseCurrency(%q) returned %q, which is not Valid", tt.in, got)
		}
	}
}

func TestParseCurrencyRejectsUnknownCodes(t *testing.T) {
	for _, in := range []string{
		"XXX",  // ISO "no currency": deliberately not money
		"XAU",  // gold has no minor unit
		"ABC",  // not a code at all
		"us",   // too short
		"USDD", // too long
		"",
		" USD",
		"US ",
		"U$D",
		"ÜSD",
	} {
		got, err := ParseCurrency(in)
		if !errors.Is(err, ErrUnknownCurrency) {
			t.Fatalf("ParseCurrency(%q) = %q, %v; want ErrUnknownCurrency", in, got, err)
		}
		if got != "" {
			t.Fatalf("ParseCurrency(%q) returned %q alongside an error, want empty", in, got)
		}
	}
}

func TestCurrencyExponentFollowsISO4217(t *testing.T) {
	tests := []struct {
		c    Currency
		want int
	}{
		{"JPY", 0},
		{"KRW", 0},
		{"USD", 2},
		{"EUR", 2},
		{"BHD", 3},
		{"KWD", 3},
		{"CLF", 4},
		{"UYW", 4},
		{"XXX", -1},
		{"usd", -1}, // only the canonical upper-case form is a Currency
		{"", -1},
	}
	for _, tt := range tests {
		if got := tt.c.Exponent(); got != tt.want {
			t.Fatalf("Currency(%q).Exponent() = %d, want %d", tt.c, got, tt.want)
		}
		if got, want := tt.c.Valid(), tt.want >= 0; got != want {
			t.Fatalf("Currency(%q).Valid() = %v, want %v", tt.c, got, want)
		}
	}
}

func TestEveryKnownCurrencyHasASupportedExponent(t *testing.T) {
	for c, e := range exponents {
		if len(c) != 3 || strings.ToUpper(string(c)) != string(c) {
			t.Fatalf("currency %q is not a canonical three-letter code", c)
		}
		if e < 0 || e >= len(pow10) {
			t.Fatalf("currency %q has exponent %d outside 0..%d", c, e, len(pow10)-1)
		}
	}
}

func TestParseReadsDecimalAsMinorUnits(t *testing.T) {
	tests := []struct {
		s    string
		c    Currency
		want int64
	}{
		{"1000", "JPY", 1000},
		{"0", "JPY", 0},
		{"-5", "JPY", -5},
		{"5.0", "JPY", 5},   // zero decimals beyond the exponent are fine
		{"5.000", "JPY", 5}, // ...however many
		{"12.34", "USD", 1234},
		{"12", "USD", 1200},
		{"1.5", "USD", 150},
		{"1.50", "USD", 150},
		{"1.500", "USD", 150},
		{"0.05", "USD", 5},
		{"-0.05", "USD", -5},
		{"+0.05", "USD", 5},
		{"-0", "USD", 0},
		{"0.00", "USD", 0},
		{"007.10", "USD", 710},
		{"1.234", "BHD", 1234},
		{"0.001", "BHD", 1},
		{"1.2", "BHD", 1200},
		{"-1.001", "BHD", -1001},
		{"1.2345", "CLF", 12345},
		{"0.0001", "CLF", 1},
		{"-3", "CLF", -30000},
	}
	for _, tt := range tests {
		got, err := Parse(tt.s, tt.c)
		if err != nil {
			t.Fatalf("Parse(%q, %s): unexpected error %v", tt.s, tt.c, err)
		}
		if got != tt.want {
			t.Fatalf("Parse(%q, %s) = %d, want %d", tt.s, tt.c, got, tt.want)
		}
	}
}

func TestParseRejectsMorePrecisionThanCurrency(t *testing.T) {
	tests := []struct {
		s string
		c Currency
	}{
		{"1.5", "JPY"},
		{"0.1", "JPY"},
		{"1.001", "USD"},
		{"0.005", "USD"},
		{"1.0010", "USD"}, // the trailing zero does not hide the third digit
		{"-0.001", "USD"},
		{"0.0001", "BHD"},
		{"0.00001", "CLF"},
		{"92233720368547758.071", "USD"}, // precision is checked before range
	}
	for _, tt := range tests {
		got, err := Parse(tt.s, tt.c)
		if !errors.Is(err, ErrPrecision) {
			t.Fatalf("Parse(%q, %s) = %d, %v; want ErrPrecision", tt.s, tt.c, got, err)
		}
	}
}

func TestParseRejectsMalformedInput(t *testing.T) {
	for _, s := range []string{
		"",
		".",
		"1.",
		".5",
		"-.5",
		"-",
		"+",
		"1e3",
		" 1",
		"1 ",
		"1,00",
		"1_000",
		"--1",
		"+-1",
		"-+1",
		"0x10",
		"1.2.3",
		"1..2",
		"NaN",
		"Inf",
		"١٢", // Arabic-Indic digits are not ASCII digits
		"12\x00",
	} {
		got, err := Parse(s, "USD")
		if !errors.Is(err, ErrSyntax) {
			t.Fatalf("Parse(%q, USD) = %d, %v; want ErrSyntax", s, got, err)
		}
	}
}

func TestParseRejectsUnknownCurrency(t *testing.T) {
	for _, c := range []Currency{"XXX", "usd", "", "EURO"} {
		got, err := Parse("1", c)
		if !errors.Is(err, ErrUnknownCurrency) {
			t.Fatalf("Parse(\"1\", %q) = %d, %v; want ErrUnknownCurrency", c, got, err)
		}
	}
}

func TestParseAcceptsTheInt64Edges(t *testing.T) {
	tests := []struct {
		s    string
		c    Currency
		want int64
	}{
		{"9223372036854775807", "JPY", math.MaxInt64},
		{"-9223372036854775808", "JPY", math.MinInt64},
		{"92233720368547758.07", "USD", math.MaxInt64},
		{"-92233720368547758.08", "USD", math.MinInt64},
		{"9223372036854775.807", "BHD", math.MaxInt64},
		{"-9223372036854775.808", "BHD", math.MinInt64},
		{"922337203685477.5807", "CLF", math.MaxInt64},
		{"-922337203685477.5808", "CLF", math.MinInt64},
		{"000000000000000000000000009223372036854775807", "JPY", math.MaxInt64},
	}
	for _, tt := range tests {
		got, err := Parse(tt.s, tt.c)
		if err != nil {
			t.Fatalf("Parse(%q, %s): unexpected error %v", tt.s, tt.c, err)
		}
		if got != tt.want {
			t.Fatalf("Parse(%q, %s) = %d, want %d", tt.s, tt.c, got, tt.want)
		}
	}
}

func TestParseReportsOverflow(t *testing.T) {
	tests := []struct {
		s string
		c Currency
	}{
		{"9223372036854775808", "JPY"},   // MaxInt64 + 1
		{"-9223372036854775809", "JPY"},  // MinInt64 - 1
		{"18446744073709551615", "JPY"},  // MaxUint64: fits the magnitude, not int64
		{"18446744073709551616", "JPY"},  // 2^64: overflows the uint64 magnitude
		{"-18446744073709551616", "JPY"}, // ...also negative
		{"184467440737095516160", "JPY"}, // overflow in the multiply-by-ten step
		{"92233720368547758.08", "USD"},
		{"-92233720368547758.09", "USD"},
		{"92233720368547759", "USD"}, // fits as digits, not once scaled to cents
		{"922337203685477.5808", "CLF"},
		{"99999999999999999999999999999999999999.99", "USD"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.s, tt.c)
		if !errors.Is(err, ErrOverflow) {
			t.Fatalf("Parse(%q, %s) = %d, %v; want ErrOverflow", tt.s, tt.c, got, err)
		}
	}
}

func TestFormatWritesPlainDecimal(t *testing.T) {
	tests := []struct {
		minor int64
		c     Currency
		want  string
	}{
		{1000, "JPY", "1000"},
		{0, "JPY", "0"},
		{-5, "JPY", "-5"},
		{0, "USD", "0.00"},
		{5, "USD", "0.05"},
		{-5, "USD", "-0.05"},
		{99, "USD", "0.99"},
		{100, "USD", "1.00"},
		{-100, "USD", "-1.00"},
		{123450, "USD", "1234.50"},
		{1, "BHD", "0.001"},
		{1234, "BHD", "1.234"},
		{-1200, "BHD", "-1.200"},
		{12345, "CLF", "1.2345"},
		{-1, "CLF", "-0.0001"},
		{math.MaxInt64, "JPY", "9223372036854775807"},
		{math.MinInt64, "JPY", "-9223372036854775808"},
		{math.MaxInt64, "USD", "92233720368547758.07"},
		{math.MinInt64, "USD", "-92233720368547758.08"},
		{math.MinInt64, "CLF", "-922337203685477.5808"},
		{1234, "XXX", "12.34"}, // unknown currencies format with two decimals
		{-1, "", "-0.01"},
	}
	for _, tt := range tests {
		if got := Format(tt.minor, tt.c); got != tt.want {
			t.Fatalf("Format(%d, %q) = %q, want %q", tt.minor, tt.c, got, tt.want)
		}
	}
}

func TestMoneyStringShowsAmountAndCode(t *testing.T) {
	tests := []struct {
		m    Money
		want string
	}{
		{Money{Amount: 1234, Currency: "USD"}, "12.34 USD"},
		{Money{Amount: -7, Currency: "JPY"}, "-7 JPY"},
		{Money{Amount: 1, Currency: "BHD"}, "0.001 BHD"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Fatalf("%#v.String() = %q, want %q", tt.m, got, tt.want)
		}
	}
}

var roundTripCurrencies = []Currency{"JPY", "USD", "BHD", "CLF"}

func TestFormatThenParseRoundTripsEdgeValues(t *testing.T) {
	values := []int64{
		0, 1, -1, 9, 10, 99, 100, 101, 999, 1000, 1001, 9999, 10000, -10000,
		math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1,
		math.MaxInt32, math.MinInt32, 1 << 53, -(1 << 53),
	}
	for _, c := range roundTripCurrencies {
		for _, v := range values {
			s := Format(v, c)
			got, err := Parse(s, c)
			if err != nil {
				t.Fatalf("Parse(Format(%d, %s) = %q): %v", v, c, s, err)
			}
			if got != v {
				t.Fatalf("Parse(Format(%d, %s) = %q) = %d", v, c, s, got)
			}
		}
	}
}

// TestFormatThenParseRoundTripsRandomValues is a property test: for any
// int64 and any currency, Parse(Format(x)) == x.
func TestFormatThenParseRoundTripsRandomValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(20240501, 4217))
	currencies := append([]Currency{"KWD", "EUR", "KRW", "UYW"}, roundTripCurrencies...)
	for i := 0; i < 20000; i++ {
		v := int64(rng.Uint64())
		if i%2 == 1 {
			// Small magnitudes exercise the zero-padding branch of Format.
			v >>= rng.IntN(64)
		}
		c := currencies[i%len(currencies)]
		s := Format(v, c)
		got, err := Parse(s, c)
		if err != nil {
			t.Fatalf("Parse(Format(%d, %s) = %q): %v", v, c, s, err)
		}
		if got != v {
			t.Fatalf("Parse(Format(%d, %s) = %q) = %d", v, c, s, got)
		}
	}
}

func TestAdd(t *testing.T) {
	tests := []struct {
		a, b    int64
		want    int64
		wantErr error
	}{
		{2, 3, 5, nil},
		{-2, -3, -5, nil},
		{math.MaxInt64, math.MinInt64, -1, nil},
		{math.MaxInt64, -1, math.MaxInt64 - 1, nil},
		{math.MinInt64, 0, math.MinInt64, nil},
		{math.MaxInt64 - 1, 1, math.MaxInt64, nil},
		{math.MaxInt64, 1, 0, ErrOverflow},
		{1, math.MaxInt64, 0, ErrOverflow},
		{math.MinInt64, -1, 0, ErrOverflow},
		{math.MinInt64, math.MinInt64, 0, ErrOverflow},
		{math.MaxInt64, math.MaxInt64, 0, ErrOverflow},
	}
	for _, tt := range tests {
		got, err := Add(tt.a, tt.b)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Fatalf("Add(%d, %d) error = %v, want %v", tt.a, tt.b, err, tt.wantErr)
		}
		if got != tt.want {
			t.Fatalf("Add(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestSub(t *testing.T) {
	tests := []struct {
		a, b    int64
		want    int64
		wantErr error
	}{
		{5, 3, 2, nil},
		{3, 5, -2, nil},
		{-1, math.MinInt64, math.MaxInt64, nil},
		{math.MinInt64, math.MinInt64, 0, nil},
		{-1, math.MaxInt64, math.MinInt64, nil},
		{math.MinInt64, -1, math.MinInt64 + 1, nil},
		{0, math.MinInt64, 0, ErrOverflow},
		{1, math.MinInt64, 0, ErrOverflow},
		{math.MinInt64, 1, 0, ErrOverflow},
		{-2, math.MaxInt64, 0, ErrOverflow},
		{math.MaxInt64, -1, 0, ErrOverflow},
	}
	for _, tt := range tests {
		got, err := Sub(tt.a, tt.b)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Fatalf("Sub(%d, %d) error = %v, want %v", tt.a, tt.b, err, tt.wantErr)
		}
		if got != tt.want {
			t.Fatalf("Sub(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestMul(t *testing.T) {
	tests := []struct {
		a, b    int64
		want    int64
		wantErr error
	}{
		{6, 7, 42, nil},
		{-6, 7, -42, nil},
		{0, math.MinInt64, 0, nil},
		{math.MinInt64, 0, 0, nil},
		{math.MinInt64, 1, math.MinInt64, nil},
		{math.MaxInt64, -1, -math.MaxInt64, nil},
		{1 << 32, -(1 << 31), math.MinInt64, nil},
		{3037000499, 3037000499, 9223372030926249001, nil}, // largest square that fits
		{math.MinInt64, -1, 0, ErrOverflow},
		{-1, math.MinInt64, 0, ErrOverflow},
		{1 << 32, 1 << 31, 0, ErrOverflow}, // exactly 2^63
		{3037000500, 3037000500, 0, ErrOverflow},
		{math.MaxInt64, 2, 0, ErrOverflow},
		{math.MinInt64, 2, 0, ErrOverflow},
		{math.MinInt64, math.MinInt64, 0, ErrOverflow},
		{math.MaxInt64, math.MaxInt64, 0, ErrOverflow},
	}
	for _, tt := range tests {
		got, err := Mul(tt.a, tt.b)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Fatalf("Mul(%d, %d) error = %v, want %v", tt.a, tt.b, err, tt.wantErr)
		}
		if got != tt.want {
			t.Fatalf("Mul(%d, %d) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// interestingInt64 returns a random int64 biased towards the values where
// overflow checks go wrong: the extremes, small numbers and powers of two.
func interestingInt64(rng *rand.Rand) int64 {
	switch rng.IntN(6) {
	case 0:
		return []int64{0, 1, -1, 2, -2, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1}[rng.IntN(9)]
	case 1:
		v := int64(1) << rng.IntN(63)
		if rng.IntN(2) == 0 {
			v = -v
		}
		return v + int64(rng.IntN(3)) - 1
	case 2:
		return int64(rng.Uint64()) >> rng.IntN(64)
	default:
		return int64(rng.Uint64())
	}
}

// TestCheckedArithmeticMatchesBigInt compares Add, Sub and Mul with exact
// big.Int arithmetic: the result must be exact or ErrOverflow, never wrapped.
func TestCheckedArithmeticMatchesBigInt(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	minI, maxI := big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)
	ops := []struct {
		name string
		fn   func(a, b int64) (int64, error)
		ref  func(z, a, b *big.Int) *big.Int
	}{
		{"Add", Add, (*big.Int).Add},
		{"Sub", Sub, (*big.Int).Sub},
		{"Mul", Mul, (*big.Int).Mul},
	}
	for i := 0; i < 30000; i++ {
		a, b := interestingInt64(rng), interestingInt64(rng)
		for _, op := range ops {
			want := op.ref(new(big.Int), big.NewInt(a), big.NewInt(b))
			fits := want.Cmp(minI) >= 0 && want.Cmp(maxI) <= 0
			got, err := op.fn(a, b)
			switch {
			case fits && err != nil:
				t.Fatalf("%s(%d, %d): unexpected error %v, want %s", op.name, a, b, err, want)
			case fits && got != want.Int64():
				t.Fatalf("%s(%d, %d) = %d, want %s", op.name, a, b, got, want)
			case !fits && !errors.Is(err, ErrOverflow):
				t.Fatalf("%s(%d, %d) = %d, %v; want ErrOverflow (exact %s)", op.name, a, b, got, err, want)
			}
		}
	}
}

func TestSum(t *testing.T) {
	tests := []struct {
		in      []int64
		want    int64
		wantErr error
	}{
		{nil, 0, nil},
		{[]int64{5}, 5, nil},
		{[]int64{100, 250, -50}, 300, nil},
		{[]int64{math.MaxInt64, math.MinInt64, 1}, 0, nil},
		{[]int64{math.MaxInt64, 1}, 0, ErrOverflow},
		{[]int64{math.MinInt64, -1, 5}, 0, ErrOverflow},
		// The running total must fit at every step, even if the final sum would.
		{[]int64{math.MaxInt64, 1, -1}, 0, ErrOverflow},
	}
	for _, tt := range tests {
		got, err := Sum(tt.in...)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
			t.Fatalf("Sum(%v) error = %v, want %v", tt.in, err, tt.wantErr)
		}
		if got != tt.want {
			t.Fatalf("Sum(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestMulDivHalfEven(t *testing.T) {
	tests := []struct {
		name         string
		a, num, den  int64
		want         int64
		wantOverflow bool
	}{
		{"exact", 1000, 3, 4, 750, false},
		{"exact negative", -1000, 3, 4, -750, false},
		{"zero amount", 0, 7, 3, 0, false},
		{"zero numerator", 12345, 0, 7, 0, false},
		{"below half rounds down", 14, 1, 10, 1, false},
		{"above half rounds up", 16, 1, 10, 2, false},
		{"half of odd rounds up to even: 0.5 -> 0", 1, 1, 2, 0, false},
		{"5*1/2 = 2.5 -> 2", 5, 1, 2, 2, false},
		{"7*1/2 = 3.5 -> 4", 7, 1, 2, 4, false},
		{"15*1/10 = 1.5 -> 2", 15, 1, 10, 2, false},
		{"25/10 = 2.5 -> 2", 25, 1, 10, 2, false},
		{"35/10 = 3.5 -> 4", 35, 1, 10, 4, false},
		{"-15/10 = -1.5 -> -2", -15, 1, 10, -2, false},
		{"-25/10 = -2.5 -> -2", -25, 1, 10, -2, false},
		{"-35/10 = -3.5 -> -4", -35, 1, 10, -4, false},
		{"negative numerator", 25, -1, 10, -2, false},
		{"both negative", -35, -1, 10, 4, false},
		{"just below half of negative", -14, 1, 10, -1, false},
		{"tax 8.25% of 19.99", 1999, 825, 10000, 165, false}, // 164.9175
		{"one third", 100, 1, 3, 33, false},
		{"two thirds", 200, 1, 3, 67, false},
		{"MaxInt64*3/3 needs 128 bits", math.MaxInt64, 3, 3, math.MaxInt64, false},
		{"MinInt64*3/3 needs 128 bits", math.MinInt64, 3, 3, math.MinInt64, false},
		{"MinInt64*-1/1 overflows", math.MinInt64, -1, 1, 0, true},
		{"MinInt64*-1/2 fits", math.MinInt64, -1, 2, 1 << 62, false},
		{"MaxInt64*MaxInt64/MaxInt64", math.MaxInt64, math.MaxInt64, math.MaxInt64, math.MaxInt64, false},
		{"MinInt64*MinInt64/MaxInt64 overflows", math.MinInt64, math.MinInt64, math.MaxInt64, 0, true},
		{"MaxInt64*2/1 overflows", math.MaxInt64, 2, 1, 0, true},
		{"quotient 2^63 overflows positive", 1 << 62, 2, 1, 0, true},
		{"quotient -2^63 fits negative", -(1 << 62), 2, 1, math.MinInt64, false},
		// 65535 * 281479271743489 = 2^64 - 1; halved that is 2^63 - 0.5,
		// which rounds half-even to 2^63: too big positive, exactly MinInt64
		// negative.
		{"rounding up to 2^63 overflows", 65535, 281479271743489, 2, 0, true},
		{"rounding down to -2^63 fits", -65535, 281479271743489, 2, math.MinInt64, false},
		{"(2^64-2^32)/1 overflows", 1 << 32, (1 << 32) - 1, 1, 0, true},
		// 31 * 1190112520884487201 = 2^65 - 1, so the quotient by 2 is
		// 2^64 - 1 remainder 1, which rounds half-even up to 2^64: the
		// rounding step must not wrap to 0.
		{"round up past 2^64 overflows", 31, 1190112520884487201, 2, 0, true},
		{"round up past 2^64 overflows negative", -31, 1190112520884487201, 2, 0, true},
		{"MaxInt64*MaxInt64/(MaxInt64-1) overflows", math.MaxInt64, math.MaxInt64, math.MaxInt64 - 1, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MulDivHalfEven(tt.a, tt.num, tt.den)
			if tt.wantOverflow {
				if !errors.Is(err, ErrOverflow) {
					t.Fatalf("MulDivHalfEven(%d, %d, %d) = %d, %v; want ErrOverflow", tt.a, tt.num, tt.den, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("MulDivHalfEven(%d, %d, %d): unexpected error %v", tt.a, tt.num, tt.den, err)
			}
			if got != tt.want {
				t.Fatalf("MulDivHalfEven(%d, %d, %d) = %d, want %d", tt.a, tt.num, tt.den, got, tt.want)
			}
		})
	}
}

func TestMulDivHalfEvenRejectsNonPositiveDenominator(t *testing.T) {
	for _, den := range []int64{0, -1, -10, math.MinInt64} {
		got, err := MulDivHalfEven(100, 1, den)
		if err == nil {
			t.Fatalf("MulDivHalfEven(100, 1, %d) = %d, want an error", den, got)
		}
		if errors.Is(err, ErrOverflow) {
			t.Fatalf("MulDivHalfEven(100, 1, %d): error %v should be about the denominator, not overflow", den, err)
		}
	}
}

// halfEvenRef computes round_half_even(a*num/den) exactly with big.Int.
func halfEvenRef(a, num, den int64) *big.Int {
	p := new(big.Int).Mul(big.NewInt(a), big.NewInt(num))
	d := big.NewInt(den)
	q, r := new(big.Int).QuoRem(p, d, new(big.Int)) // truncated toward zero
	twice := new(big.Int).Abs(r)
	twice.Lsh(twice, 1)
	c := twice.Cmp(d)
	if c > 0 || (c == 0 && q.Bit(0) == 1) {
		if p.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return q
}

// TestMulDivHalfEvenMatchesBigInt is a property test against an exact
// reference: the result is the correctly rounded quotient or ErrOverflow.
func TestMulDivHalfEvenMatchesBigInt(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 9001))
	minI, maxI := big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)
	for i := 0; i < 50000; i++ {
		a, num := interestingInt64(rng), interestingInt64(rng)
		den := interestingInt64(rng)
		switch {
		case den == math.MinInt64:
			den = math.MaxInt64
		case den < 0:
			den = -den
		case den == 0:
			den = 1
		}
		if i%3 == 0 {
			den = int64(rng.IntN(1000)) + 1 // percentages and prorations
		}
		want := halfEvenRef(a, num, den)
		fits := want.Cmp(minI) >= 0 && want.Cmp(maxI) <= 0
		got, err := MulDivHalfEven(a, num, den)
		switch {
		case fits && err != nil:
			t.Fatalf("MulDivHalfEven(%d, %d, %d): unexpected error %v, want %s", a, num, den, err, want)
		case fits && got != want.Int64():
			t.Fatalf("MulDivHalfEven(%d, %d, %d) = %d, want %s", a, num, den, got, want)
		case !fits && !errors.Is(err, ErrOverflow):
			t.Fatalf("MulDivHalfEven(%d, %d, %d) = %d, %v; want ErrOverflow (exact %s)", a, num, den, got, err, want)
		}
	}
}

func TestPow10(t *testing.T) {
	want := int64(1)
	for n := 0; n <= 6; n++ {
		if got := Pow10(n); got != want {
			t.Fatalf("Pow10(%d) = %d, want %d", n, got, want)
		}
		want *= 10
	}
}
