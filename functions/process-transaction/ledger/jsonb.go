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
func Unstorable(raw []byte) string {
	if loneSurrogate(raw) {
		return "must not hold a \\u escape of half a UTF-16 surrogate pair"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		t, err := dec.Token()
		if err != nil {
			return "" // the end, or not JSON: the decoder's rules say so
		}
		if n, ok := t.(json.Number); ok && !numericFits(string(n)) {
			return "must not hold a number beyond 1e131071 or with more than 16383 decimal places"
		}
	}
}

// numericFits reports whether the JSON number n is within Postgres
// numeric's range.
func numericFits(n string) bool {
	if n != "" && n[0] == '-' {
		n = n[1:]
	}
	mant, exp := n, int64(0)
	if i := bytes.IndexAny([]byte(n), "eE"); i >= 0 {
		e, err := strconv.ParseInt(n[i+1:], 10, 64)
		if err != nil || e > 1<<40 || e < -(1<<40) {
			return false
		}
		mant, exp = n[:i], e
	}
	intPart, frac := mant, ""
	if i := bytes.IndexByte([]byte(mant), '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	if int64(len(frac))-exp > numericMaxScale {
		return false
	}
	digits := intPart + frac
	for k := 0; k < len(digits); k++ {
		if digits[k] != '0' {
			return int64(len(intPart)-1-k)+exp <= numericMaxLead
		}
	}
	return true // zero
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
