package pan

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"
)

// What may stand between a card number and the text around it: nothing of
// a word or a number, so the card number is not part of an identifier.
var (
	fuzzBefore = []string{" ", "\n", ": ", "(", "#", "\t", "x-", "é ", `"`, "/", ".", ",", "=", "ref 1 ", "1/2 ", "€", "carte n° ", "号码："}
	fuzzAfter  = []string{" ", "\n", ".", ",", "/", ")", " 12/27", " 123", " exp", "\t", " - x", "-/", "é", "\r\n", "; cvc 123", "。"}
	// fuzzSeps are the separators a layout picks from, mixed.
	fuzzSeps = []string{" ", "-", ".", "/", "_", " - ", "\u00a0", "\u2013", "\u3000", "\uff0d", "\uff0e", "\uff0f", "\uff3f", "\u200b", ". "}
	// fuzzZeros are the zeros of the digit sets a number is written in.
	fuzzZeros = []rune{'0', '０', '٠', '۰', '०', '০', '๐', '𝟎'}
)

// fuzzPAN makes a Luhn-valid number of 13 to 19 digits from seed.
func fuzzPAN(seed []byte, n uint8) []byte {
	d := make([]byte, 13+int(n)%7)
	for i := range d {
		x := byte(4)
		if len(seed) > 0 {
			x = seed[i%len(seed)] % 10
		}
		d[i] = '0' + x
	}
	if d[0] == '0' {
		d[0] = '1' // no card number starts with 0
	}
	sum := 0
	for i := len(d) - 2; i >= 0; i-- { // the check digit's neighbour is doubled
		x := int(d[i] - '0')
		if (len(d)-1-i)%2 == 1 {
			if x *= 2; x > 9 {
				x -= 9
			}
		}
		sum += x
	}
	d[len(d)-1] = '0' + byte((10-sum%10)%10)
	return d
}

// writePAN writes pan in a style: plain, 4-4-4-4, 4-6-5, or groups of 1
// to 6 digits as layout says, joined by separators layout picks; its
// digits in the script script picks (0: ASCII), some of them mixed in.
func writePAN(pan []byte, style uint8, layout []byte, script uint8) string {
	var sizes []int
	switch style % 4 {
	case 0:
		sizes = []int{len(pan)}
	case 1:
		sizes = []int{4}
	case 2:
		sizes = []int{4, 6, 5}
	case 3:
		for _, b := range layout {
			sizes = append(sizes, 1+int(b)%6)
		}
	}
	if len(sizes) == 0 {
		sizes = []int{4}
	}
	sep := func(g int) string {
		if len(layout) == 0 {
			return " "
		}
		return fuzzSeps[int(layout[g%len(layout)]>>3)%len(fuzzSeps)]
	}
	zero := fuzzZeros[int(script)%len(fuzzZeros)]
	var b strings.Builder
	for i, g := 0, 0; i < len(pan); g++ {
		if g > 0 {
			b.WriteString(sep(g))
		}
		n := min(sizes[g%len(sizes)], len(pan)-i)
		if style%4 == 2 {
			n = min(sizes[min(g, 2)], len(pan)-i)
		}
		for _, c := range pan[i : i+n] {
			if script&0x80 != 0 && c%2 == 0 {
				b.WriteByte(c) // mixed: even digits stay ASCII
			} else {
				b.WriteRune(zero + rune(c-'0'))
			}
		}
		i += n
	}
	return b.String()
}

// FuzzContains: a Luhn-valid number of 13 to 19 digits, in any digit
// script and separator style, among any text, anywhere in a body (a JSON
// string, a key, deep in arrays, \u-escaped, a bare JSON number, or a
// body that is not JSON) is always found.
func FuzzContains(f *testing.F) {
	f.Add([]byte("4242424242424242"), uint8(3), uint8(1), []byte{}, uint8(0), "card", uint8(0), "please", uint8(0), uint8(0))
	f.Add([]byte("378282246310005"), uint8(2), uint8(2), []byte{}, uint8(1), "", uint8(2), "", uint8(6), uint8(3))
	f.Add([]byte{9, 1, 7}, uint8(6), uint8(3), []byte{1, 0x83, 5, 0x40}, uint8(0x82), "x", uint8(1), "y", uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, seed []byte, n, style uint8, layout []byte, script uint8, prefix string, before uint8, suffix string, after, embed uint8) {
		if !utf8.ValidString(prefix) || !utf8.ValidString(suffix) {
			return // JSON would replace the invalid bytes; the test is about the number
		}
		pan := fuzzPAN(seed, n)
		written := writePAN(pan, style, layout, script)
		text := prefix + fuzzBefore[int(before)%len(fuzzBefore)] + written + fuzzAfter[int(after)%len(fuzzAfter)] + suffix
		if !Contains(text) {
			t.Fatalf("card number %s (as %q) missed in %q", pan, written, text)
		}
		var body []byte
		switch embed % 6 {
		case 0:
			body, _ = json.Marshal(map[string]string{"description": text})
		case 1:
			body, _ = json.Marshal(map[string]int{text: 1})
		case 2:
			body, _ = json.Marshal(map[string]any{"metadata": map[string]any{"a": []any{[]any{1, text}}}})
		case 3:
			js, _ := json.Marshal(map[string]string{"note": text})
			body = escapeAll(js)
		case 4:
			body = []byte(`{"amount":` + string(pan) + `}`)
		case 5:
			body = []byte(text)
		}
		if CheckBody(body) == nil {
			t.Fatalf("card number %s (as %q) missed in %s", pan, written, body)
		}
		// A handler's Checker walks a request struct by its JSON, scanned raw first.
		var c Checker
		c.Value("in", struct {
			Memo  string              `json:"memo"`
			Lines []map[string]string `json:"lines"`
		}{Memo: "ok <&>", Lines: []map[string]string{{"d": "x"}, {"d": text}}})
		if c.Err() == nil {
			t.Fatalf("card number %s (as %q) missed by Checker.Value in %q", pan, written, text)
		}
	})
}

// escapeAll rewrites every character of a JSON text's strings but quotes
// and escapes as a \u escape.
func escapeAll(js []byte) []byte {
	var out strings.Builder
	in := false
	s := string(js)
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\':
			n := 2
			if s[i+1] == 'u' {
				n = 6
			}
			out.WriteString(s[i : i+n])
			i += n
			continue
		case r == '"':
			in = !in
			out.WriteRune(r)
		case in && r < 0x10000:
			out.WriteString(`\u` + hex4(r))
		default:
			out.WriteRune(r)
		}
		i += w
	}
	return []byte(out.String())
}

func hex4(r rune) string {
	const hex = "0123456789abcdef"
	return string([]byte{hex[r>>12&15], hex[r>>8&15], hex[r>>4&15], hex[r&15]})
}

// maxRun is the most digits in a run of digit groups joined by one to
// three separators.
func maxRun(s string) int {
	best, n := 0, 0
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		if digit(rs[i]) >= 0 {
			n++
			best = max(best, n)
			continue
		}
		j := i
		for j < len(rs) && j-i < 4 && isSep(rs[j]) {
			j++
		}
		if n > 0 && j > i && j-i <= 3 && j < len(rs) && digit(rs[j]) >= 0 {
			i = j - 1
			continue
		}
		n = 0
	}
	return best
}

// maxDecodedRun is maxRun over every string and key of a JSON value.
func maxDecodedRun(v any) int {
	switch t := v.(type) {
	case string:
		return maxRun(t)
	case json.Number:
		return maxRun(string(t))
	case map[string]any:
		m := 0
		for k, x := range t {
			m = max(m, maxRun(k), maxDecodedRun(x))
		}
		return m
	case []any:
		m := 0
		for _, x := range t {
			m = max(m, maxDecodedRun(x))
		}
		return m
	}
	return 0
}

// FuzzNoFalsePositive: text whose every run of digits (raw, or in its
// decoded JSON strings) is shorter than 13 digits holds no card number;
// nor does a UUID, whatever its digits.
func FuzzNoFalsePositive(f *testing.F) {
	f.Add([]byte(`{"phone":"+1 415-555-0100","zip":"94107","n":42}`))
	f.Add([]byte(`{"id":"12345678-1234-1234-1234-123456789012"}`))
	f.Add([]byte(`{"d":"2026-11-23T12:00:00Z"}`))
	f.Add([]byte("４２４２ ４２４２ ４２４２"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) >= 16 {
			id, _ := uuid.FromBytes(body[:16])
			for _, s := range []string{id.String(), strings.ToUpper(id.String()), "urn:uuid:" + id.String()} {
				if Contains(s) || CheckBody([]byte(`{"id":"`+s+`","n":1}`)) != nil {
					t.Fatalf("a UUID taken for a card number: %s", s)
				}
			}
		}
		short := maxRun(string(body)) < 13
		if short && Contains(string(body)) {
			t.Fatalf("a card number found in %q, which has no run of 13 digits", body)
		}
		if short && strings.Contains(string(body), `\`) {
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.UseNumber()
			var v any
			if dec.Decode(&v) == nil {
				short = maxDecodedRun(v) < 13
			}
		}
		if short && CheckBody(body) != nil {
			t.Fatalf("a card number found in %q, which has no run of 13 digits", body)
		}
	})
}
