package invoicing

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/billfn/billfn/shared/apperr"
)

func rate(id string, pct string, inclusive, compound bool) TaxRateSnap {
	p, err := parseScaled(pct, PercentDecimals)
	if err != nil {
		panic(err)
	}
	return TaxRateSnap{TaxRateID: id, DisplayName: id, Percentage: Percent(p), Inclusive: inclusive, Compound: compound}
}

func qty(s string) Quantity {
	v, err := parseScaled(s, quantityDecimals)
	if err != nil {
		panic(err)
	}
	return Quantity(v)
}

func pct(s string) Percent {
	v, err := parseScaled(s, PercentDecimals)
	if err != nil {
		panic(err)
	}
	return Percent(v)
}

// TestComputeTable is the calculation table of the issue: plain and
// fractional quantities, JPY (0 decimals) and BHD (3 decimals) amounts,
// inclusive, exclusive and compound taxes, fixed and percentage discounts on
// lines and invoices, a 100% discount.
func TestComputeTable(t *testing.T) {
	vat20 := rate("vat20", "20", false, false)
	gst := rate("gst", "5", false, false)
	qst := rate("qst", "9.975", false, true)
	cases := []struct {
		name      string
		lines     []calcLine
		discounts []Discount
		// want
		subtotal, discount, tax, total int64
		lineTaxes                      [][]int64 // per line, per rate
	}{
		{name: "USD 2 x 10.50 with 20% exclusive VAT",
			lines:    []calcLine{{Quantity: qty("2"), UnitAmount: 1050, Taxes: []TaxRateSnap{vat20}}},
			subtotal: 2100, tax: 420, total: 2520, lineTaxes: [][]int64{{420}}},
		{name: "fractional quantities round half to even per line",
			lines: []calcLine{
				{Quantity: qty("1.5"), UnitAmount: 999},            // 1498.5 -> 1498
				{Quantity: qty("2.5"), UnitAmount: 3},              // 7.5 -> 8
				{Quantity: qty("0.5"), UnitAmount: 1},              // 0.5 -> 0
				{Quantity: qty("0.000001"), UnitAmount: 1_500_000}, // 1.5 -> 2
			},
			subtotal: 1498 + 8 + 0 + 2, total: 1508},
		{name: "JPY 3 x 1000 with 10% inclusive consumption tax",
			lines:    []calcLine{{Quantity: qty("3"), UnitAmount: 1000, Taxes: []TaxRateSnap{rate("jct", "10", true, false)}}},
			subtotal: 3000, tax: 273, total: 3000, lineTaxes: [][]int64{{273}}}, // net 2727.27 -> 2727
		{name: "BHD 3 x 1.250 with 10% exclusive VAT",
			lines:    []calcLine{{Quantity: qty("3"), UnitAmount: 1250, Taxes: []TaxRateSnap{rate("vat10", "10", false, false)}}},
			subtotal: 3750, tax: 375, total: 4125, lineTaxes: [][]int64{{375}}},
		{name: "BHD 0.333 x 1.001 rounds to fils",
			lines:    []calcLine{{Quantity: qty("0.333"), UnitAmount: 1001}}, // 333.333 -> 333
			subtotal: 333, total: 333},
		{name: "compound exclusive: QST on net plus GST",
			lines:    []calcLine{{Quantity: qty("1"), UnitAmount: 10000, Taxes: []TaxRateSnap{gst, qst}}},
			subtotal: 10000, tax: 500 + 1047, total: 11547, lineTaxes: [][]int64{{500, 1047}}}, // 10500 x 9.975% = 1047.375
		{name: "compound inclusive reconciles to the cent",
			lines: []calcLine{{Quantity: qty("1"), UnitAmount: 11547, Taxes: []TaxRateSnap{
				rate("gst", "5", true, false), rate("qst", "9.975", true, true)}}},
			subtotal: 11547, tax: 1547, total: 11547, lineTaxes: [][]int64{{500, 1047}}},
		{name: "two inclusive rates split by percentage",
			lines: []calcLine{{Quantity: qty("1"), UnitAmount: 1150, Taxes: []TaxRateSnap{
				rate("a", "10", true, false), rate("b", "5", true, false)}}},
			subtotal: 1150, tax: 150, total: 1150, lineTaxes: [][]int64{{100, 50}}},
		{name: "100% discount leaves nothing to tax",
			lines:    []calcLine{{Quantity: qty("4"), UnitAmount: 2500, Discount: &Discount{PercentOff: pct("100")}, Taxes: []TaxRateSnap{vat20}}},
			subtotal: 10000, discount: 10000, tax: 0, total: 0, lineTaxes: [][]int64{{0}}},
		{name: "100% invoice coupon",
			lines:     []calcLine{{Quantity: qty("1"), UnitAmount: 999, Taxes: []TaxRateSnap{vat20}}},
			discounts: []Discount{{Coupon: "FREE", PercentOff: pct("100")}},
			subtotal:  999, discount: 999, total: 0, lineTaxes: [][]int64{{0}}},
		{name: "fixed line discount never goes below zero",
			lines:    []calcLine{{Quantity: qty("1"), UnitAmount: 500, Discount: &Discount{AmountOff: 800}}},
			subtotal: 500, discount: 500, total: 0},
		{name: "fixed invoice discount allocated by largest remainder before tax",
			lines: []calcLine{
				{Quantity: qty("1"), UnitAmount: 1000, Taxes: []TaxRateSnap{rate("t10", "10", false, false)}},
				{Quantity: qty("1"), UnitAmount: 2000, Taxes: []TaxRateSnap{rate("t10", "10", false, false)}},
			},
			discounts: []Discount{{AmountOff: 1000}},
			// shares 333 and 667; taxes 66.7 -> 67 and 133.3 -> 133
			subtotal: 3000, discount: 1000, tax: 200, total: 2200, lineTaxes: [][]int64{{67}, {133}}},
		{name: "percent invoice discount rounds per line",
			lines: []calcLine{
				{Quantity: qty("1"), UnitAmount: 5},  // 10% = 0.5 -> 0
				{Quantity: qty("1"), UnitAmount: 15}, // 10% = 1.5 -> 2
			},
			discounts: []Discount{{PercentOff: pct("10")}},
			subtotal:  20, discount: 2, total: 18},
		{name: "line then invoice discounts stack",
			lines:     []calcLine{{Quantity: qty("1"), UnitAmount: 10000, Discount: &Discount{PercentOff: pct("10")}}},
			discounts: []Discount{{AmountOff: 1000}, {PercentOff: pct("50")}},
			// 10000 -> 9000 -> 8000 -> 4000
			subtotal: 10000, discount: 6000, total: 4000},
		{name: "credit line reverses its tax",
			lines: []calcLine{
				{Quantity: qty("1"), UnitAmount: 3000, Taxes: []TaxRateSnap{vat20}},
				{Quantity: qty("1"), UnitAmount: -1000, Taxes: []TaxRateSnap{vat20}},
			},
			subtotal: 2000, tax: 400, total: 2400, lineTaxes: [][]int64{{600}, {-200}}},
		{name: "zero-rated VAT is reported",
			lines:    []calcLine{{Quantity: qty("1"), UnitAmount: 700, Taxes: []TaxRateSnap{rate("zero", "0", false, false)}}},
			subtotal: 700, total: 700, lineTaxes: [][]int64{{0}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := compute(tc.lines, tc.discounts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Subtotal != tc.subtotal || res.Discount != tc.discount || res.Tax != tc.tax || res.Total != tc.total {
				t.Fatalf("subtotal/discount/tax/total = %d/%d/%d/%d, want %d/%d/%d/%d",
					res.Subtotal, res.Discount, res.Tax, res.Total, tc.subtotal, tc.discount, tc.tax, tc.total)
			}
			for i, want := range tc.lineTaxes {
				for j, w := range want {
					if got := res.Lines[i].Taxes[j].Amount; got != w {
						t.Errorf("line %d rate %d tax = %d, want %d", i, j, got, w)
					}
				}
			}
			checkInvariants(t, tc.lines, res)
		})
	}
}

func TestComputeRejectsNegativeTotal(t *testing.T) {
	_, err := compute([]calcLine{{Quantity: qty("1"), UnitAmount: -1}}, nil)
	var pe *apperr.Error
	if !errors.As(err, &pe) || pe.Code != CodeTotalNegative {
		t.Fatalf("err = %v, want invoice_total_negative", err)
	}
}

func TestComputeReportsOverflow(t *testing.T) {
	for _, lines := range [][]calcLine{
		{{Quantity: qty("9000000000000"), UnitAmount: math.MaxInt64 / 2}},
		{{Quantity: qty("1"), UnitAmount: math.MaxInt64}, {Quantity: qty("1"), UnitAmount: math.MaxInt64}},
		{{Quantity: qty("1"), UnitAmount: math.MaxInt64 - 10, Taxes: []TaxRateSnap{rate("v", "20", false, false)}}},
	} {
		_, err := compute(lines, nil)
		var pe *apperr.Error
		if !errors.As(err, &pe) || pe.Code != CodeAmountOverflow {
			t.Fatalf("err = %v, want amount_overflow", err)
		}
	}
}

func TestAllocateSumsExactlyAndRespectsWeights(t *testing.T) {
	got := allocate(10, []int64{1, 1, 1}, 3)
	if got[0]+got[1]+got[2] != 10 || got[0] != 4 {
		t.Fatalf("allocate = %v", got)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := 1 + r.IntN(8)
		w := make([]int64, n)
		var sum int64
		for i := range w {
			w[i] = r.Int64N(1_000_000)
			sum += w[i]
		}
		if sum == 0 {
			continue
		}
		total := r.Int64N(sum + 1)
		var s int64
		for i, x := range allocate(total, w, sum) {
			if x < 0 || x > w[i] {
				t.Fatalf("share %d of %d over %v exceeds weight", x, total, w)
			}
			s += x
		}
		if s != total {
			t.Fatalf("shares sum to %d, want %d", s, total)
		}
	}
}

// checkInvariants holds for every computed invoice:
// total = Σ lines − discounts + exclusive taxes = total_excluding_tax + tax,
// every inclusive line reconciles (net + tax = discounted gross), the tax
// breakdown adds up, no discount exceeds its line.
func checkInvariants(t *testing.T, lines []calcLine, res calcResult) {
	t.Helper()
	var sumLines, sumDisc, sumTax, sumTotal, excl int64
	for i, l := range res.Lines {
		sumLines += l.Amount
		sumDisc += l.DiscountAmount
		sumTax += l.TaxAmount
		sumTotal += l.Total
		if l.Amount > 0 && (l.DiscountAmount < 0 || l.DiscountAmount > l.Amount) {
			t.Fatalf("line %d discount %d outside [0, %d]", i, l.DiscountAmount, l.Amount)
		}
		gross := l.Amount - l.DiscountAmount
		var rateSum int64
		for _, x := range l.Taxes {
			rateSum += x.Amount
		}
		if rateSum != l.TaxAmount {
			t.Fatalf("line %d: rates sum to %d, tax is %d", i, rateSum, l.TaxAmount)
		}
		if len(lines[i].Taxes) > 0 && lines[i].Taxes[0].Inclusive {
			if l.TaxableAmount+l.TaxAmount != gross || l.Total != gross {
				t.Fatalf("inclusive line %d does not reconcile: net %d + tax %d != %d", i, l.TaxableAmount, l.TaxAmount, gross)
			}
		} else {
			excl += l.TaxAmount
			if l.TaxableAmount != gross || l.Total != gross+l.TaxAmount {
				t.Fatalf("exclusive line %d: taxable %d total %d for gross %d tax %d", i, l.TaxableAmount, l.Total, gross, l.TaxAmount)
			}
		}
	}
	if sumLines != res.Subtotal || sumDisc != res.Discount || sumTax != res.Tax || sumTotal != res.Total {
		t.Fatalf("totals do not add up: %+v", res)
	}
	if res.Total != res.Subtotal-res.Discount+res.TaxExclusive || excl != res.TaxExclusive {
		t.Fatalf("total %d != subtotal %d - discount %d + exclusive tax %d", res.Total, res.Subtotal, res.Discount, res.TaxExclusive)
	}
	if res.Total != res.TotalExcludingTax+res.Tax || res.Tax != res.TaxInclusive+res.TaxExclusive {
		t.Fatalf("total %d != total_excluding_tax %d + tax %d", res.Total, res.TotalExcludingTax, res.Tax)
	}
	var bd int64
	for _, b := range res.Breakdown {
		bd += b.Amount
	}
	if bd != res.Tax {
		t.Fatalf("breakdown sums to %d, tax is %d", bd, res.Tax)
	}
	var invDisc int64
	for _, d := range res.Discounts {
		invDisc += d.Amount
	}
	var lineDisc int64
	for _, l := range res.Lines {
		lineDisc += l.LineDiscount
	}
	if lineDisc+invDisc != res.Discount {
		t.Fatalf("line discounts %d + invoice discounts %d != discount %d", lineDisc, invDisc, res.Discount)
	}
}

// randomInvoice builds a random but valid invoice from r.
func randomInvoice(r *rand.Rand) ([]calcLine, []Discount) {
	pool := []TaxRateSnap{
		rate("s1", "20", false, false), rate("s2", "8.875", false, false), rate("c1", "9.975", false, true),
		rate("i1", "10", true, false), rate("i2", "7.7", true, false), rate("ic", "2.5", true, true),
		rate("z", "0", false, false),
	}
	n := 1 + r.IntN(12)
	lines := make([]calcLine, n)
	for i := range lines {
		l := calcLine{Quantity: Quantity(1 + r.Int64N(50*QuantityScale)), UnitAmount: r.Int64N(2_000_000)}
		if r.IntN(6) == 0 {
			l.UnitAmount = -r.Int64N(1000) // a small credit
		}
		switch r.IntN(4) {
		case 0:
			l.Discount = &Discount{PercentOff: Percent(1 + r.Int64N(RateDen))}
		case 1:
			l.Discount = &Discount{AmountOff: 1 + r.Int64N(100_000)}
		}
		inclusive := r.IntN(2) == 0
		for _, t := range pool {
			if t.Inclusive == inclusive && r.IntN(3) == 0 {
				l.Taxes = append(l.Taxes, t)
			}
		}
		lines[i] = l
	}
	var ds []Discount
	for range r.IntN(3) {
		if r.IntN(2) == 0 {
			ds = append(ds, Discount{PercentOff: Percent(1 + r.Int64N(RateDen))})
		} else {
			ds = append(ds, Discount{AmountOff: 1 + r.Int64N(1_000_000)})
		}
	}
	return lines, ds
}

// TestComputeProperties checks the invariants on many random invoices.
func TestComputeProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(20, 26))
	for i := range 20000 {
		lines, ds := randomInvoice(r)
		res, err := compute(lines, ds)
		if err != nil {
			var pe *apperr.Error
			if errors.As(err, &pe) && pe.Code == CodeTotalNegative {
				continue
			}
			t.Fatalf("invoice %d: %v", i, err)
		}
		checkInvariants(t, lines, res)
	}
}

func FuzzComputeInvariants(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(2026), uint64(6))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		lines, ds := randomInvoice(rand.New(rand.NewPCG(a, b)))
		res, err := compute(lines, ds)
		if err != nil {
			return
		}
		checkInvariants(t, lines, res)
	})
}

func TestParseScaled(t *testing.T) {
	for _, c := range []struct {
		in   string
		dec  int
		want int64
		err  bool
	}{
		{"2", 6, 2_000_000, false}, {"0.25", 6, 250_000, false}, {"8.875", 4, 88_750, false},
		{"1.2500000", 4, 12_500, false}, {"-3.5", 6, -3_500_000, false},
		{"1e3", 6, 0, true}, {".5", 6, 0, true}, {"5.", 6, 0, true}, {"0.0000001", 6, 0, true},
		{"99999999999999999999", 6, 0, true}, {"", 4, 0, true}, {"1,5", 4, 0, true},
	} {
		got, err := parseScaled(c.in, c.dec)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseScaled(%q) = %d, %v", c.in, got, err)
		}
	}
	if s := Quantity(2_500_000).String(); s != "2.5" {
		t.Errorf("Quantity.String = %q", s)
	}
	if s := Percent(88_750).String(); s != "8.875" {
		t.Errorf("Percent.String = %q", s)
	}
}

// BenchmarkCompute10Lines: the calculation alone.
func BenchmarkCompute10Lines(b *testing.B) {
	vat := rate("vat", "20", false, false)
	lines := make([]calcLine, 10)
	for i := range lines {
		lines[i] = calcLine{Quantity: qty("1.5"), UnitAmount: int64(1999 + i), Taxes: []TaxRateSnap{vat}}
	}
	ds := []Discount{{PercentOff: pct("10")}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := compute(lines, ds); err != nil {
			b.Fatal(err)
		}
	}
}
