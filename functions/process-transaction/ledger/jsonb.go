package ledger

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Postgres numeric's range (src/include/utils/numeric.h): at most 131072
// digits before the decimal point (a base-10000 weight of 32767) and
// 16383 after it. A jsonb number beyond either is refused with
// "value overflows numeric format".
const (
	numericMaxLead  = 131071 // the decimal exponent of the leading digit
	numericMaxScale = 16383  // digits after the decimal point
)

// Unstorable says why Postgres would refuse raw, a valid JSON text, as
// jsonb, "" when it would store it: a \u escape of half a UTF-16
// surrogate pair (jsonb refuses what encoding/json turns into U+FFFD), or
// a number beyond numeric's range (1e200000). U+0000 is refused before,
// where the body is decoded (httpx.HasNULEscape). Metadata is stored as
// the caller wrote it, so a request holding either is the caller's
// mistake, refused as one — not a failed group commit that every other
// transfer of the group shares.
//
// Nor may its numbers, written out in full, take more than MaxMetadata
// digits together: jsonb keeps a number as numeric and writes it out in
// full whenever it is read, so 8 KiB of "9e131071" came back as 116 MB
// of digits on every read of the transfer — its GET, and the history of
// both accounts, the payee's too — which ran out of time (504) for good.
func Unstorable(raw []byte) string {
	if loneSurrogate(raw) {
		return "must not hold a \\u escape of half a UTF-16 surrogate pair"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var digits int64
	for {
		t, err := dec.Token()
		if err != nil {
			return "" // the end, or not JSON: the decoder's rules say so
		}
		n, ok := t.(json.Number)
		if !ok {
			continue
		}
		d, fits := numericDigits(string(n))
		if !fits {
			return "must not hold a number beyond 1e131071 or with more than 16383 decimal places"
		}
		if digits += d; digits > MaxMetadata {
			return "must not hold numbers that take more than 8192 digits written out in full (1e300 is 301 digits)"
		}
	}
}

// numericDigits reports whether the JSON number n is within Postgres
// numeric's range and, if so, how many digits numeric writes it out with
// (before and after the decimal point).
func numericDigits(n string) (digits int64, fits bool) {
	if n != "" && n[0] == '-' {
		n = n[1:]
	}
	mant, exp := n, int64(0)
	if i := bytes.IndexAny([]byte(n), "eE"); i >= 0 {
		e, err := strconv.ParseInt(n[i+1:], 10, 64)
		if err != nil || e > 1<<40 || e < -(1<<40) {
			return 0, false
		}
		mant, exp = n[:i], e
	}
	intPart, frac := mant, ""
	if i := bytes.IndexByte([]byte(mant), '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	scale := max(int64(len(frac))-exp, 0)
	if scale > numericMaxScale {
		return 0, false
	}
	digits = 1 + scale // zero, or a number below 1: "0" before the point
	all := intPart + frac
	for k := 0; k < len(all); k++ {
		if all[k] != '0' {
			lead := int64(len(intPart)-1-k) + exp
			if lead > numericMaxLead {
				return 0, false
			}
			return max(lead+1, 1) + scale, true
		}
	}
	return digits, true
}

// loneSurrogate reports whether a string of the JSON text raw holds a
// \uD800-\uDFFF escape that is not half of a high-low pair.
func loneSurrogate(raw []byte) bool {
	in := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '"':
			in = !in
		case !in || c != '\\':
		case i+1 < len(raw) && raw[i+1] != 'u':
			i++ // a two-character escape (\" \\ …)
		default:
			r, ok := hex4(raw, i+2)
			i += 5
			switch {
			case !ok || r < 0xD800 || r > 0xDFFF:
			case r >= 0xDC00:
				return true // a low half alone
			default:
				lo, ok := hex4(raw, i+3)
				if i+2 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' || !ok || lo < 0xDC00 || lo > 0xDFFF {
					return true // a high half not followed by a low one
				}
				i += 6
			}
		}
	}
	return false
}

// hex4 reads the four hex digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(raw) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(raw[i:i+4]), 16, 32)
	return rune(v), err == nil
}
