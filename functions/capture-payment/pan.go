package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/billfn/billfn/shared/problem"
)

// rejectPAN refuses, before anything else reads or stores it, a request
// whose body holds what looks like a card number: billfn takes gateway
// tokens only. The answer is a 422 problem that does not echo the number,
// and nothing of the body is logged or stored (not even the idempotency
// fingerprint, which is taken after this check).
func rejectPAN(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			problem.Write(w, r, err)
			return
		}
		if containsPAN(body) {
			problem.Write(w, r, problem.New(codeCardNumber,
				"the body holds what looks like a card number; send a gateway token (pm_…) instead, never a card number"))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// containsPAN reports whether b holds a card number: 13 to 19 digits that
// pass the Luhn check, with or without single spaces or dashes between
// them, anywhere (a JSON string or number). Digits written as \u escapes
// are decoded first.
func containsPAN(b []byte) bool {
	if scanPAN(b) {
		return true
	}
	if !bytes.Contains(b, []byte(`\u`)) {
		return false
	}
	var v any
	if json.Unmarshal(b, &v) != nil {
		return false
	}
	return walkPAN(v)
}

func walkPAN(v any) bool {
	switch t := v.(type) {
	case string:
		return scanPAN([]byte(t))
	case map[string]any:
		for k, x := range t {
			if scanPAN([]byte(k)) || walkPAN(x) {
				return true
			}
		}
	case []any:
		for _, x := range t {
			if walkPAN(x) {
				return true
			}
		}
	}
	return false
}

// scanPAN looks at every run of digits joined by single separators (a
// space or a dash). A run glued to a letter or "_" is part of an
// identifier (a token, a hex id), not a card number; so is a separated run
// with a group longer than 6 digits (cards are written 4-4-4-4, 4-6-5 …;
// a UUID's groups are 8-4-4-4-12).
func scanPAN(b []byte) bool {
	var digits [19]byte
	n := 0         // digits in the current run
	group := 0     // digits in the current group
	longest := 0   // the longest group of the run
	seps := false  // the run has separators
	sep := false   // the previous byte was a separator inside the run
	glued := false // the run follows a letter
	for i := 0; i <= len(b); i++ {
		var c byte
		if i < len(b) {
			c = b[i]
			if c >= '0' && c <= '9' {
				if n == 0 {
					glued = i > 0 && isWord(b[i-1])
					longest, seps = 0, false
				}
				if n < len(digits) {
					digits[n] = c
				}
				n++
				if sep {
					group = 0
				}
				group++
				longest = max(longest, group)
				sep = false
				continue
			}
			if (c == ' ' || c == '-') && n > 0 && !sep {
				sep, seps = true, true
				continue
			}
		}
		identifier := glued || (isWord(c) && (!sep || b[i-1] == '-')) || (seps && longest > 6)
		if n >= 13 && n <= 19 && !identifier && luhn(digits[:n]) {
			return true
		}
		n, group, sep = 0, 0, false
	}
	return false
}

func isWord(c byte) bool { return c == '_' || c|0x20 >= 'a' && c|0x20 <= 'z' }

// luhn is the Luhn (mod 10) check.
func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		x := int(d[i] - '0')
		if double {
			x *= 2
			if x > 9 {
				x -= 9
			}
		}
		sum += x
		double = !double
	}
	return sum%10 == 0
}
