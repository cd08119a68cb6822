package render

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/bojanz/currency"

	"github.com/billfn/billfn/shared/money"
)

// libraryMoney is FormatMoneyIn as it was before its templates (money.go):
// bojanz/currency's Formatter.Format of every amount.
func libraryMoney(amount int64, c money.Currency, locale string, byCode bool) string {
	if locale == "" {
		locale = "en"
	}
	display := currency.DisplaySymbol
	if byCode {
		display = currency.DisplayCode
	}
	exp := c.Exponent()
	a, err := currency.NewAmount(money.Format(amount, c), string(c))
	if exp < 0 || exp > 4 || err != nil {
		return money.Format(amount, c) + " " + string(c)
	}
	return formatter(locale, exp, display).Format(a) // as it was built
}

// FormatMoneyIn writes every amount as the library does: every currency
// (money's and the library's, some one knows and the other not) in three
// locales, and a few currencies (two, zero, three and four decimals, a
// symbol of letters, one the core fonts lack, one money does not know) in
// locales of every grouping, separator, sign and digits the data has
// (Indian grouping, Arabic, Persian, Bengali, Devanagari and Burmese
// digits, signs after the number, apostrophes, non-breaking spaces), by
// symbol and by code, for amounts of every length and sign; the locales
// formatted at once, from goroutines that learn the same templates
// together.
func TestFormatMoneyIsTheLibrarys(t *testing.T) {
	defer func(n int64) { maxTemplates = n }(maxTemplates)
	maxTemplates = math.MaxInt64 // every kind of amount learnt
	all := map[money.Currency]bool{"XTS": true, "ZZZ": true}
	for _, c := range currency.GetCurrencyCodes() {
		all[money.Currency(c)] = true
	}
	few := map[money.Currency]bool{"USD": true, "EUR": true, "JPY": true, "BHD": true, "CLF": true, "CHF": true, "INR": true, "XTS": true}
	locales := map[string]map[money.Currency]bool{"": all, "ar": all}
	for _, l := range []string{"en-US", "en-GB", "en-IN", "de-DE", "de-CH", "fr", "fr-CH", "es", "pt-BR", "pl", "ru", "ja", "hi", "bn", "mr",
		"ar-EG", "fa", "ur", "he", "my", "th", "xx-Zzzz-ZZ"} {
		locales[l] = few
	}
	r := rand.New(rand.NewPCG(20, 20))
	// Every currency: amounts of a few lengths; the few: of many more.
	some := []int64{0, -1, 99, -12345, 1234567, math.MinInt64}
	amounts := []int64{0, 1, -1, 5, -5, 99, -99, 100, -1000, 12345, -1234567, math.MaxInt64, math.MinInt64}
	for range 12 {
		a := r.Int64N(math.MaxInt64) >> r.UintN(63)
		if r.IntN(2) == 0 {
			a = -a
		}
		amounts = append(amounts, a)
	}
	var wg sync.WaitGroup
	for range 2 {
		for loc, codes := range locales {
			wg.Go(func() {
				for c := range codes {
					as := amounts
					if len(codes) == len(all) {
						as = some
					}
					for _, byCode := range []bool{false, true} {
						for _, a := range as {
							if got, want := FormatMoneyIn(a, c, loc, byCode), libraryMoney(a, c, loc, byCode); got != want {
								t.Errorf("%d %s in %q (by code %v): %q, the library writes %q", a, c, loc, byCode, got, want)
								return
							}
						}
					}
				}
			})
		}
	}
	wg.Wait()
	lib := 0
	templates.Range(func(k, v any) bool {
		if v.(*moneyTemplate).lib {
			lib++
			t.Logf("left to the library: %+v", k)
		}
		return true
	})
	t.Logf("%d templates, %d left to the library", learnt.Load(), lib)
}

// BenchmarkFormatMoney formats an amount as the PDF's lines do: with the
// templates, and with the library alone (as before them).
func BenchmarkFormatMoney(b *testing.B) {
	b.Run("templates", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			FormatMoneyIn(123450, "USD", "", false)
		}
	})
	b.Run("library", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			libraryMoney(123450, "USD", "", false)
		}
	})
}
