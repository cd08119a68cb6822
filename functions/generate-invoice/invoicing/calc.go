package invoicing

import (
	"math/bits"
	"sort"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/money"
)

// The calculation of an invoice, in the invoice currency's minor units with
// exact integer arithmetic. The one rounding rule is half to even
// (money.MulDivHalfEven), applied once per line and per rate. Where an exact
// integer must be split (a fixed invoice discount over lines, an inclusive
// tax over its rates) the split is by largest remainder, which creates no
// rounding difference at all. docs/generate-invoice.md walks through it
// with a worked example.

// TaxRateSnap is what a line keeps of a tax rate: rates are immutable, and
// the snapshot makes an invoice independent of later catalogue changes.
type TaxRateSnap struct {
	TaxRateID    string  `json:"tax_rate_id"`
	DisplayName  string  `json:"display_name"`
	Jurisdiction string  `json:"jurisdiction,omitempty"`
	Percentage   Percent `json:"percentage"`
	Inclusive    bool    `json:"inclusive"`
	Compound     bool    `json:"compound"`
}

// LineTax is one rate applied to one line.
type LineTax struct {
	TaxRateSnap
	TaxableAmount int64 `json:"taxable_amount"`
	Amount        int64 `json:"amount"`
}

// Discount is a percentage or a fixed amount off, on a line or on the whole
// invoice (then possibly from a coupon). Amount is what it took off.
type Discount struct {
	Coupon      string  `json:"coupon,omitempty"`
	Description string  `json:"description,omitempty"`
	PercentOff  Percent `json:"percent_off,omitempty"`
	AmountOff   int64   `json:"amount_off,omitempty"`
	Amount      int64   `json:"amount"`
}

// calcLine is the input of one line.
type calcLine struct {
	Quantity   Quantity
	UnitAmount int64
	Discount   *Discount // line discount, or nil
	Taxes      []TaxRateSnap
}

// lineResult is the outcome for one line.
type lineResult struct {
	Amount         int64 // quantity × unit_amount, half-even
	LineDiscount   int64 // the line's own discount
	DiscountAmount int64 // line discount + share of the invoice discounts
	TaxableAmount  int64 // net of discounts and of every tax
	TaxAmount      int64
	Total          int64 // what the line adds to the invoice total
	Taxes          []LineTax
}

// TaxAmount is one rate's total on the invoice.
type TaxAmount struct {
	TaxRateSnap
	TaxableAmount int64 `json:"taxable_amount"`
	Amount        int64 `json:"amount"`
}

// calcResult is the invoice's totals.
type calcResult struct {
	Lines             []lineResult
	Discounts         []Discount // invoice-level discounts with their amounts
	Subtotal          int64      // Σ line amounts (inclusive taxes included)
	Discount          int64      // every discount
	Tax               int64      // every tax, inclusive and exclusive
	TaxExclusive      int64
	TaxInclusive      int64
	TotalExcludingTax int64 // Σ taxable amounts
	Total             int64 // subtotal − discount + exclusive tax = total_excluding_tax + tax
	Breakdown         []TaxAmount
}

// arith carries the first overflow through a computation.
type arith struct{ err error }

func (a *arith) add(x, y int64) int64 {
	if a.err != nil {
		return 0
	}
	s, err := money.Add(x, y)
	if err != nil {
		a.err = err
	}
	return s
}

func (a *arith) sub(x, y int64) int64 {
	if a.err != nil {
		return 0
	}
	s, err := money.Sub(x, y)
	if err != nil {
		a.err = err
	}
	return s
}

func (a *arith) mulDiv(x, num, den int64) int64 {
	if a.err != nil {
		return 0
	}
	v, err := money.MulDivHalfEven(x, num, den)
	if err != nil {
		a.err = err
	}
	return v
}

// Problem codes of the calculation.
const (
	CodeAmountOverflow = apperr.AmountOverflow
	CodeTotalNegative  = apperr.Code("invoice_total_negative")
)

func OverflowProblem() *apperr.Error {
	return apperr.New(CodeAmountOverflow, "an amount of this invoice does not fit in 64-bit minor units")
}

// compute calculates every line and the invoice totals.
func compute(lines []calcLine, discounts []Discount) (calcResult, error) {
	var a arith
	res := calcResult{Lines: make([]lineResult, len(lines))}
	rest := make([]int64, len(lines)) // the line amount still subject to discounts and taxes

	for i, l := range lines {
		r := &res.Lines[i]
		r.Amount = a.mulDiv(int64(l.Quantity), l.UnitAmount, QuantityScale)
		if d := l.Discount; d != nil && r.Amount > 0 {
			if d.PercentOff > 0 {
				r.LineDiscount = a.mulDiv(r.Amount, int64(d.PercentOff), RateDen)
			} else {
				r.LineDiscount = d.AmountOff
			}
			r.LineDiscount = min(r.LineDiscount, r.Amount) // never below zero
		}
		r.DiscountAmount = r.LineDiscount
		rest[i] = a.sub(r.Amount, r.LineDiscount)
		res.Subtotal = a.add(res.Subtotal, r.Amount)
	}

	// Invoice discounts apply in order to the positive lines, each on what
	// the previous ones left.
	res.Discounts = make([]Discount, len(discounts))
	for k, d := range discounts {
		d.Amount = 0
		var base int64
		for _, v := range rest {
			if v > 0 {
				base = a.add(base, v)
			}
		}
		if base > 0 && a.err == nil {
			if d.PercentOff > 0 {
				for i, v := range rest {
					if v > 0 {
						x := min(a.mulDiv(v, int64(d.PercentOff), RateDen), v)
						rest[i] -= x
						res.Lines[i].DiscountAmount = a.add(res.Lines[i].DiscountAmount, x)
						d.Amount = a.add(d.Amount, x)
					}
				}
			} else {
				total := min(d.AmountOff, base)
				w := make([]int64, len(rest))
				for i, v := range rest {
					w[i] = max(v, 0)
				}
				for i, x := range allocate(total, w, base) {
					rest[i] -= x
					res.Lines[i].DiscountAmount = a.add(res.Lines[i].DiscountAmount, x)
				}
				d.Amount = total
			}
		}
		res.Discounts[k] = d
	}

	for i, l := range lines {
		r := &res.Lines[i]
		taxLine(&a, r, rest[i], l.Taxes)
		res.Discount = a.add(res.Discount, r.DiscountAmount)
		res.Tax = a.add(res.Tax, r.TaxAmount)
		if len(l.Taxes) > 0 && l.Taxes[0].Inclusive {
			res.TaxInclusive = a.add(res.TaxInclusive, r.TaxAmount)
		} else {
			res.TaxExclusive = a.add(res.TaxExclusive, r.TaxAmount)
		}
		res.TotalExcludingTax = a.add(res.TotalExcludingTax, r.TaxableAmount)
		res.Total = a.add(res.Total, r.Total)
	}
	res.Breakdown = breakdown(&a, res.Lines)
	if a.err != nil {
		return calcResult{}, OverflowProblem()
	}
	if res.Total < 0 {
		return calcResult{}, apperr.New(CodeTotalNegative,
			"the invoice total would be %d; credits may not exceed charges", res.Total)
	}
	return res, nil
}

// taxLine applies a line's rates to its discounted amount g. All rates of
// a line are either exclusive or inclusive (validation enforces it).
func taxLine(a *arith, r *lineResult, g int64, rates []TaxRateSnap) {
	r.Taxes = make([]LineTax, len(rates))
	for j, t := range rates {
		r.Taxes[j].TaxRateSnap = t
	}
	if len(rates) == 0 {
		r.TaxableAmount, r.Total = g, g
		return
	}
	var ps, pc int64 // Σ simple and Σ compound percentages
	for _, t := range rates {
		if t.Compound {
			pc += int64(t.Percentage)
		} else {
			ps += int64(t.Percentage)
		}
	}
	if !rates[0].Inclusive {
		// Exclusive: each simple rate on g, each compound rate on g plus
		// the simple taxes; one half-even rounding per rate.
		var simple int64
		for j, t := range rates {
			if !t.Compound {
				r.Taxes[j].TaxableAmount = g
				r.Taxes[j].Amount = a.mulDiv(g, int64(t.Percentage), RateDen)
				simple = a.add(simple, r.Taxes[j].Amount)
			}
		}
		cbase := a.add(g, simple)
		tax := simple
		for j, t := range rates {
			if t.Compound {
				r.Taxes[j].TaxableAmount = cbase
				r.Taxes[j].Amount = a.mulDiv(cbase, int64(t.Percentage), RateDen)
				tax = a.add(tax, r.Taxes[j].Amount)
			}
		}
		r.TaxableAmount, r.TaxAmount, r.Total = g, tax, a.add(g, tax)
		return
	}
	// Inclusive: g already holds the taxes. g = net × (1+Ps) × (1+Pc), so
	// the net is one half-even division and the tax is exactly g − net;
	// that tax is then split over the rates, so the line reconciles to the
	// minor unit.
	var net int64
	if pc == 0 {
		net = a.mulDiv(g, RateDen, RateDen+ps)
	} else {
		net = a.mulDiv(g, RateDen*RateDen, (RateDen+ps)*(RateDen+pc))
	}
	total := a.sub(g, net)
	ts := total
	if pc > 0 {
		ts = a.mulDiv(net, ps, RateDen)
		if (total >= 0 && (ts > total || ts < 0)) || (total < 0 && (ts < total || ts > 0)) {
			ts = total // a rounding extreme: the compound part cannot change sign
		}
	}
	tc := a.sub(total, ts)
	splitTax(r.Taxes, false, ts, net, ps)
	splitTax(r.Taxes, true, tc, a.add(net, ts), pc)
	r.TaxableAmount, r.TaxAmount, r.Total = net, total, g
}

// splitTax spreads amount over the rates of one kind (simple or compound)
// in proportion to their percentages.
func splitTax(taxes []LineTax, compound bool, amount, taxable, sumPct int64) {
	idx := make([]int, 0, len(taxes))
	w := make([]int64, 0, len(taxes))
	for j := range taxes {
		if taxes[j].Compound == compound {
			idx = append(idx, j)
			w = append(w, int64(taxes[j].Percentage))
			taxes[j].TaxableAmount = taxable
		}
	}
	if len(idx) == 0 || sumPct == 0 {
		return
	}
	neg := amount < 0
	if neg {
		amount = -amount
	}
	for k, x := range allocate(amount, w, sumPct) {
		if neg {
			x = -x
		}
		taxes[idx[k]].Amount = x
	}
}

// allocate splits total (≥ 0) over weights (≥ 0, summing to sum > 0) in
// proportion, by largest remainder: each share is floor(total×w/sum), and
// the units left go to the largest remainders, earliest first on ties. The
// shares sum to total exactly, and no share exceeds its weight when
// total ≤ sum.
func allocate(total int64, weights []int64, sum int64) []int64 {
	out := make([]int64, len(weights))
	if total <= 0 || sum <= 0 {
		return out
	}
	rem := make([]uint64, len(weights))
	var given int64
	for i, w := range weights {
		if w <= 0 {
			continue
		}
		hi, lo := bits.Mul64(uint64(total), uint64(w))
		if hi >= uint64(sum) {
			// w > sum cannot happen for callers; guard the division anyway.
			out[i] = total
			given += total
			continue
		}
		q, r := bits.Div64(hi, lo, uint64(sum))
		out[i], rem[i] = int64(q), r
		given += int64(q)
	}
	left := total - given
	if left <= 0 {
		return out
	}
	order := make([]int, 0, len(weights))
	for i, w := range weights {
		if w > 0 {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(x, y int) bool { return rem[order[x]] > rem[order[y]] })
	for k := 0; left > 0 && len(order) > 0; k = (k + 1) % len(order) {
		out[order[k]]++
		left--
	}
	return out
}

// breakdown sums the taxes per rate, in order of first appearance.
func breakdown(a *arith, lines []lineResult) []TaxAmount {
	var out []TaxAmount
	pos := map[string]int{}
	for _, l := range lines {
		for _, t := range l.Taxes {
			i, ok := pos[t.TaxRateID]
			if !ok {
				i = len(out)
				pos[t.TaxRateID] = i
				out = append(out, TaxAmount{TaxRateSnap: t.TaxRateSnap})
			}
			out[i].TaxableAmount = a.add(out[i].TaxableAmount, t.TaxableAmount)
			out[i].Amount = a.add(out[i].Amount, t.Amount)
		}
	}
	return out
}
