// Package pan keeps card numbers (primary account numbers) out of billfn.
// billfn takes gateway tokens only: a card number in any free-text field —
// a description, a memo, a reference, metadata keys and values, a
// customer's name or address, an account number — is refused with 422
// card_number_rejected before anything reads, stores, logs or publishes
// it, and the answer names the field without echoing the number.
//
// Contains is the detector; Checker applies it to a handler's decoded
// fields; Middleware applies it to a whole JSON body before the handler,
// the idempotency store or the decoder (whose errors may quote a value)
// see it.
package pan

import (
	"unicode"
	"unicode/utf8"
)

// Contains reports whether s holds a card number: 13 to 19 digits that
// pass the Luhn check, written bare or in groups joined by separators.
//
// Digits are any Unicode decimal digits (ASCII, full-width, Arabic-Indic,
// Devanagari, …), read by their value. Between two groups stand one to
// three separators, mixed as they come: spaces (any Unicode space but line
// breaks and tabs), dashes, dots, slashes, underscores (with their
// full-width forms) and invisible format characters.
//
// To keep false positives low, a number is sought in every stretch of
// consecutive groups of a run, but:
//   - a run's first group glued to a letter or "_" before it, or its last
//     group glued to a letter, "_" or "-letter" after it, is part of an
//     identifier ("pm_4242…", "ch_…x"), not a card number;
//   - a stretch of several groups has no group longer than 6 digits
//     (cards are written 4-4-4-4, 4-6-5, 4-4-4-4-3; a UUID's groups are
//     8-4-4-4-12, so a UUID never matches);
//   - a run of more than 19 digits with no separator is not a card number;
//   - a number starting with 0 is not a card number: no card network
//     issues one (the first digit is the major industry identifier, 1-9),
//     and zeros are what placeholders are made of ("0000 0000 0000 00").
func Contains(s string) bool {
	var (
		digits []byte        // the current run's digit values
		groups [][2]int      // the run's groups, [start, end) in digits
		prev   rune     = -1 // the rune before the current position
	)
	for i := 0; i < len(s); {
		r, w := decode(s, i)
		if digit(r) < 0 {
			prev = r
			i += w
			continue
		}
		glued := isWord(prev)
		digits, groups = digits[:0], groups[:0]
		for {
			start := len(digits)
			for i < len(s) {
				r, w := decode(s, i)
				v := digit(r)
				if v < 0 {
					break
				}
				digits = append(digits, byte(v))
				prev = r
				i += w
			}
			groups = append(groups, [2]int{start, len(digits)})
			// Up to three separators and a digit after them join the next group.
			j, n := i, 0
			for j < len(s) && n <= maxSeps {
				r, w := decode(s, j)
				if !isSep(r) {
					break
				}
				j += w
				n++
			}
			joined := n >= 1 && n <= maxSeps && j < len(s) && digit(firstRune(s[j:])) >= 0
			if !joined && gluedAfter(s[i:]) {
				break
			}
			if endsWithPAN(digits, groups, glued) {
				return true
			}
			if !joined {
				break
			}
			i = j
		}
	}
	return false
}

// maxSeps is the most separators between two groups of one number
// ("4242 - 4242" has three).
const maxSeps = 3

// endsWithPAN reports whether a stretch of groups ending with the last one
// is a card number, computing Luhn from the right as the stretch grows to
// the left.
func endsWithPAN(digits []byte, groups [][2]int, glued bool) bool {
	sum, count, double := 0, 0, false
	last := len(groups) - 1
	for k := last; k >= 0; k-- {
		g := groups[k]
		size := g[1] - g[0]
		count += size
		if count > 19 || size > 6 && k < last || k == 0 && glued {
			return false
		}
		for j := g[1] - 1; j >= g[0]; j-- {
			x := int(digits[j])
			if double {
				if x *= 2; x > 9 {
					x -= 9
				}
			}
			sum += x
			double = !double
		}
		if count >= 13 && sum%10 == 0 && digits[g[0]] != 0 {
			return true
		}
		if size > 6 {
			return false // a long group stands alone
		}
	}
	return false
}

// gluedAfter reports whether the text right after a run makes its last
// group part of an identifier: a letter or "_", or "-" and a letter.
func gluedAfter(rest string) bool {
	if rest == "" {
		return false
	}
	r, w := decode(rest, 0)
	if isWord(r) {
		return true
	}
	return r == '-' && isLetter(firstRune(rest[w:]))
}

func decode(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

func firstRune(s string) rune {
	if s == "" {
		return -1
	}
	r, _ := decode(s, 0)
	return r
}

// digit is the value of a Unicode decimal digit, or -1. Unicode writes
// every decimal digit set as ten consecutive code points from its zero, and
// Go's table of them (unicode.Nd) is made of whole sets with stride 1, so
// the offset in a range modulo 10 is the value.
func digit(r rune) int {
	if r >= '0' && r <= '9' {
		return int(r - '0')
	}
	if r < utf8.RuneSelf || !unicode.IsDigit(r) {
		return -1
	}
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return -1
}

// isSep reports whether r may stand between two groups of a card number.
func isSep(r rune) bool {
	switch r {
	case ' ', '-', '.', '/', '_',
		'\u00a0',                               // no-break space
		'\u00b7', '\u2024', '\u30fb', '\u3002', // middle dot, one dot leader, katakana middle dot, ideographic full stop
		'\u2044', '\u2215', // fraction slash, division slash
		'\u2212',                               // minus sign
		'\uff0d', '\uff0e', '\uff0f', '\uff3f': // full-width - . / _
		return true
	}
	if r < utf8.RuneSelf {
		return false
	}
	return unicode.Is(unicode.Zs, r) || unicode.Is(unicode.Pd, r) || unicode.Is(unicode.Cf, r)
}

// isWord reports whether r glues a digit group into an identifier.
func isWord(r rune) bool { return r == '_' || isLetter(r) }

// isLetter is an ASCII letter: "é4242…" is text, "pm4242…" an identifier.
func isLetter(r rune) bool { return r|0x20 >= 'a' && r|0x20 <= 'z' }
