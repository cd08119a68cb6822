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
// them, anywhere (a JSON string or number). Strings with escapes (digits
// written as \u escapes, a number after "\n") are decoded first.
func containsPAN(b []byte) bool {
	if scanPAN(b) {
		return true
	}
	if !bytes.ContainsRune(b, '\\') {
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

// scanPAN looks at every run of digit groups joined by single separators
// (a space or a dash), and at every stretch of consecutive groups of such
// a run: a card number may be written among other numbers ("card 4242…
// 4242 12/27", "ref 1 4242…"). A group glued to a letter or "_" (or to
// "-" and a letter after it) is part of an identifier (a token, a hex id),
// not of a card number; a stretch of several groups never has a group
// longer than 6 digits (cards are written 4-4-4-4, 4-6-5 …; a UUID's
// groups are 8-4-4-4-12).
func scanPAN(b []byte) bool {
	var groups [19][2]int // the run's last groups, [start, end) in b
	for i := 0; i < len(b); {
		if !isDigit(b[i]) {
			i++
			continue
		}
		glued := i > 0 && isWord(b[i-1]) // the run's first group belongs to an identifier
		for n := 0; ; n++ {
			start := i
			for i < len(b) && isDigit(b[i]) {
				i++
			}
			groups[n%len(groups)] = [2]int{start, i}
			last := !(i+1 < len(b) && (b[i] == ' ' || b[i] == '-') && isDigit(b[i+1]))
			gluedEnd := last && i < len(b) && (isWord(b[i]) || b[i] == '-' && i+1 < len(b) && isWord(b[i+1]))
			if !gluedEnd && panEndsAt(b, &groups, n, glued) {
				return true
			}
			if last {
				break
			}
			i++ // the separator
		}
	}
	return false
}

// panEndsAt reports whether a stretch of the run's groups ending with group
// n is a card number: 13 to 19 digits, Luhn-valid, computed from the right
// as the stretch grows to the left.
func panEndsAt(b []byte, groups *[19][2]int, n int, glued bool) bool {
	sum, digits, double := 0, 0, false
	for k := n; k >= 0 && k > n-len(groups); k-- {
		g := groups[k%len(groups)]
		size := g[1] - g[0]
		digits += size
		if digits > 19 || size > 6 && k < n || k == 0 && glued {
			return false
		}
		for j := g[1] - 1; j >= g[0]; j-- {
			x := int(b[j] - '0')
			if double {
				if x *= 2; x > 9 {
					x -= 9
				}
			}
			sum += x
			double = !double
		}
		if digits >= 13 && sum%10 == 0 {
			return true
		}
		if size > 6 {
			return false // a long group stands alone
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWord(c byte) bool { return c == '_' || c|0x20 >= 'a' && c|0x20 <= 'z' }
