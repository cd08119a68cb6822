package events

import (
	"encoding/binary"
	"math/bits"
)

// A one-pass reader of batch bodies: it checks that the body is JSON
// exactly as json.Valid does and finds the top-level array's elements in
// the same pass. Parse checked the whole body with json.Valid, then went
// over it again to find each element's end (elementEnd), before the SDK's
// decoder read every element a third time.

// maxScanDepth is encoding/json's limit on nesting: json.Valid refuses
// a value nested deeper than 10000 arrays and objects.
const maxScanDepth = 10000

// scanBatch reports whether b is valid JSON (json.Valid(b)) whose
// top-level value is an array, and appends to spans the start and end of
// each of its elements, without the space around them. b is assumed to
// start with '['.
func scanBatch(b []byte, spans [][2]int) ([][2]int, bool) {
	i := skipJSONSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		return spans, skipJSONSpace(b, i+1) == len(b)
	}
	for {
		end := scanValue(b, i, 1)
		if end < 0 {
			return spans, false
		}
		spans = append(spans, [2]int{i, end})
		i = skipJSONSpace(b, end)
		if i >= len(b) {
			return spans, false
		}
		switch b[i] {
		case ',':
			i = skipJSONSpace(b, i+1)
		case ']':
			return spans, skipJSONSpace(b, i+1) == len(b)
		default:
			return spans, false
		}
	}
}

// scanValue returns the end of the JSON value starting at b[i] (no space
// before it), or -1 when there is none; depth is the nesting of the
// arrays and objects around it.
func scanValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{':
		if depth++; depth > maxScanDepth {
			return -1
		}
		i = skipJSONSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return -1
			}
			if i = scanString(b, i); i < 0 {
				return -1
			}
			if i = skipJSONSpace(b, i); i >= len(b) || b[i] != ':' {
				return -1
			}
			if i = scanValue(b, skipJSONSpace(b, i+1), depth); i < 0 {
				return -1
			}
			if i = skipJSONSpace(b, i); i >= len(b) {
				return -1
			}
			switch b[i] {
			case ',':
				i = skipJSONSpace(b, i+1)
			case '}':
				return i + 1
			default:
				return -1
			}
		}
	case c == '[':
		if depth++; depth > maxScanDepth {
			return -1
		}
		i = skipJSONSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		for {
			if i = scanValue(b, i, depth); i < 0 {
				return -1
			}
			if i = skipJSONSpace(b, i); i >= len(b) {
				return -1
			}
			switch b[i] {
			case ',':
				i = skipJSONSpace(b, i+1)
			case ']':
				return i + 1
			default:
				return -1
			}
		}
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	}
	return -1
}

// scanString returns the end of the string starting at b[i] ('"'), or -1:
// no byte below 0x20 inside, and only JSON's escapes. Bytes of 0x80 and
// above are taken as they are, as json.Valid takes them.
//
// The strings of an event are mostly long runs of bytes that need no
// look (ids, base64url signatures and Merkle proofs, the data's values):
// they are skipped eight at a time (stringStops), and only the byte that
// stops a run goes through the switch. FuzzScanStringIsBytewise holds it
// to the byte-by-byte loop it replaces.
func scanString(b []byte, i int) int {
	i++
	for {
		for i+8 <= len(b) {
			if m := stringStops(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		case c < 0x20:
			return -1
		}
		i++
	}
}

// Eight bytes read as one uint64 (little-endian: b[i] is the low byte).
const (
	swarOnes = 0x0101010101010101 // 0x01 in every byte
	swarHigh = 0x8080808080808080 // the high bit of every byte
)

// stringStops returns w, eight bytes of a string, with the high bit of a
// byte set where the byte may stop a run of ordinary bytes: '"', '\\' or
// below 0x20. The lowest bit set is always such a byte (the first of w);
// above it a bit may be set falsely, by the borrow of a subtraction, and
// is never read. x-0x01 &^ x has the high bit of a byte set when x is 0
// (Hacker's Delight, "find the first 0-byte"), x-0x20 &^ x when x is
// below 0x20, neither for a byte of 0x80 and above; '"' and '\\' are 0
// once xored away, and xoring them leaves the high bits of w as they are,
// so the three share one &^ w.
func stringStops(w uint64) uint64 {
	q := w ^ (swarOnes * '"')
	s := w ^ (swarOnes * '\\')
	return ((q - swarOnes) | (s - swarOnes) | (w - swarOnes*0x20)) &^ w & swarHigh
}

// scanNumber returns the end of the number starting at b[i], or -1:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = scanDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := scanDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := scanDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func scanDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// scanLiteral returns the end of lit at b[i], or -1.
func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
