package render

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/bojanz/currency"
)

// Money in words of a locale, fast and as bojanz/currency writes it.
//
// Formatter.Format builds a strings.Replacer for every amount it formats
// (the pattern's "0.00", signs and "¤" replaced at once): about 4 µs and
// 23 allocations an amount (BenchmarkFormatMoney), and an invoice's PDF
// and email format about 80 (ten lines): a third of composing the email.
// Yet what it writes around and between the digits depends only on the
// locale, the currency, the sign and the count of digits before the
// decimal separator (the pattern, the symbol, the grouping): a template of
// literal text and digit slots, which writes an amount in a tenth of the
// time, with 3 allocations. Each template is learnt once from the library
// itself, from amounts whose digits are all 1, all 2… all 9 (the slots are
// where they differ; every other character is the template's), and the
// locale's 0 from 10…0; then it is checked against the library on amounts
// of mixed digits, and if it writes one of them differently, the library
// formats that kind of amount from then on. TestFormatMoneyIsTheLibrarys
// compares the two for every currency in many locales.

// templateKey is the kind of amount a template writes.
type templateKey struct {
	formatterKey
	currency string
	neg      bool
	major    int // digits before the decimal separator
}

// moneyTemplate writes an amount of its kind: lits[0], the first digit,
// lits[1], the second… lits[len(lits)-1].
type moneyTemplate struct {
	lits   []string
	digits [10]string // the locale's; "" where not learnt
	lib    bool       // the library formats this kind of amount
}

var (
	templates sync.Map // templateKey → *moneyTemplate
	// learnt counts the templates: a customer's locale is any well-formed
	// tag, so past maxTemplates (a few locales in use × their currencies ×
	// signs × lengths is far fewer) the library formats the kinds of
	// amount not learnt yet, and memory stays bounded.
	learnt atomic.Int64
)

var maxTemplates int64 = 4096 // a variable for TestFormatMoneyIsTheLibrarys

// formatAmount writes number (money.Format's: "-1234.50") of currency
// code, valid for bojanz/currency, with the formatter of k.
func formatAmount(k formatterKey, number, code string) string {
	neg := strings.HasPrefix(number, "-")
	digits := strings.TrimPrefix(number, "-")
	major, _, _ := strings.Cut(digits, ".")
	tk := templateKey{k, code, neg, len(major)}
	v, ok := templates.Load(tk)
	if !ok {
		if learnt.Load() >= maxTemplates {
			return libFormat(k, number, code)
		}
		var loaded bool
		if v, loaded = templates.LoadOrStore(tk, learn(tk)); !loaded {
			learnt.Add(1)
		}
	}
	t := v.(*moneyTemplate)
	if !t.lib {
		if s, ok := t.format(digits); ok {
			return s
		}
	}
	return libFormat(k, number, code)
}

// libFormat is bojanz/currency's Formatter.Format of number.
func libFormat(k formatterKey, number, code string) string {
	a, err := currency.NewAmount(number, code)
	if err != nil {
		return number + " " + code
	}
	return formatter(k.locale, k.exp, k.display).Format(a)
}

// probe is an amount of k's kind whose first digit is first and every
// other one rest.
func probe(k templateKey, first, rest byte) string {
	var b strings.Builder
	if k.neg {
		b.WriteByte('-')
	}
	b.WriteByte(first)
	for range k.major - 1 {
		b.WriteByte(rest)
	}
	if k.exp > 0 {
		b.WriteByte('.')
		for range k.exp {
			b.WriteByte(rest)
		}
	}
	return b.String()
}

// learn makes the template of k's amounts from the library, and checks it;
// a template that cannot be learnt, or writes a checked amount otherwise
// than the library, leaves k's amounts to the library.
func learn(k templateKey) *moneyTemplate {
	lib := &moneyTemplate{lib: true}
	slots := k.major + k.exp
	var out [10][]rune
	for d := byte(1); d <= 9; d++ {
		out[d] = []rune(libFormat(k.formatterKey, probe(k, '0'+d, '0'+d), k.currency))
		if len(out[d]) != len(out[1]) {
			return lib
		}
	}
	// The slots are where the amounts of ones and twos differ.
	var at []int
	for i := range out[1] {
		if out[1][i] != out[2][i] {
			at = append(at, i)
		}
	}
	if len(at) != slots {
		return lib
	}
	isSlot := make([]bool, len(out[1]))
	for _, i := range at {
		isSlot[i] = true
	}
	t := &moneyTemplate{}
	for d := 1; d <= 9; d++ {
		digit := out[d][at[0]]
		for i, r := range out[d] {
			if (isSlot[i] && r != digit) || (!isSlot[i] && r != out[1][i]) {
				return lib
			}
		}
		t.digits[d] = string(digit)
	}
	// The locale's 0: from 10…0 (every slot but the first), or from the
	// amount 0 (a single slot; a negative amount of one digit has no 0).
	var zero []rune
	switch {
	case slots > 1:
		zero = []rune(libFormat(k.formatterKey, probe(k, '1', '0'), k.currency))
	case !k.neg:
		zero = []rune(libFormat(k.formatterKey, "0", k.currency))
	}
	if zero != nil {
		if len(zero) != len(out[1]) {
			return lib
		}
		z := zero[at[len(at)-1]]
		for i, r := range zero {
			want := out[1][i]
			if isSlot[i] && (slots == 1 || i != at[0]) {
				want = z
			}
			if r != want {
				return lib
			}
		}
		t.digits[0] = string(z)
	}
	prev := 0
	for _, i := range at {
		t.lits = append(t.lits, string(out[1][prev:i]))
		prev = i + 1
	}
	t.lits = append(t.lits, string(out[1][prev:]))
	// Checked on amounts of mixed digits (never all zeros, no leading 0).
	for c := range 4 {
		var b strings.Builder
		for i := range slots {
			if i == k.major {
				b.WriteByte('.')
			}
			d := byte((i*7 + c*3 + 5) % 10)
			if i == 0 && k.major > 1 && d == 0 {
				d = 9
			}
			b.WriteByte('0' + d)
		}
		number := b.String()
		if k.neg {
			number = "-" + number
		}
		got, ok := t.format(b.String())
		if !ok || got != libFormat(k.formatterKey, number, k.currency) {
			return lib
		}
	}
	return t
}

// format writes the digits of number (a "." aside) with t; not ok when
// it has other digits than t's slots or one t has not learnt.
func (t *moneyTemplate) format(number string) (string, bool) {
	n := 0
	for _, l := range t.lits {
		n += len(l) + 3
	}
	var b strings.Builder
	b.Grow(n)
	slot := 0
	for i := 0; i < len(number); i++ {
		c := number[i]
		if c == '.' {
			continue
		}
		if c < '0' || c > '9' || slot >= len(t.lits)-1 || t.digits[c-'0'] == "" {
			return "", false
		}
		b.WriteString(t.lits[slot])
		b.WriteString(t.digits[c-'0'])
		slot++
	}
	if slot != len(t.lits)-1 {
		return "", false
	}
	b.WriteString(t.lits[slot])
	return b.String(), true
}
