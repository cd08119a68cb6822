package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
)

// What may stand between a card number and the text around it: nothing of
// a word or a number, so the card number is not part of an identifier.
var (
	panBefore = []string{" ", "\n", ": ", "(", "#", "\t", "x-", "é ", `"`, "/", ".", ",", "=", "ref 1 ", "1/2 ", "€"}
	panAfter  = []string{" ", "\n", ".", ",", "/", ")", " 12/27", " 123", " exp", "\t", " - x", "-/", "é", "\r\n", "; cvc 123"}
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

// groupPAN writes pan in a separator style: plain, 4-4-4-4 with spaces or
// dashes, Amex's 4-6-5, or groups of 1 to 6 digits joined by spaces or
// dashes as layout says.
func groupPAN(pan []byte, style uint8, layout []byte) string {
	var sizes []int
	sep := func(int) byte { return ' ' }
	switch style % 5 {
	case 0:
		return string(pan)
	case 1:
		sizes = []int{4}
	case 2:
		sizes, sep = []int{4}, func(int) byte { return '-' }
	case 3:
		sizes = []int{4, 6, 5}
	case 4:
		for _, b := range layout {
			sizes = append(sizes, 1+int(b)%6)
		}
		sep = func(i int) byte {
			if len(layout) > 0 && layout[i%len(layout)]&0x80 != 0 {
				return '-'
			}
			return ' '
		}
	}
	if len(sizes) == 0 {
		sizes = []int{4}
	}
	var b strings.Builder
	for i, g := 0, 0; i < len(pan); g++ {
		if g > 0 {
			b.WriteByte(sep(g))
		}
		n := min(sizes[min(g, len(sizes)-1)], len(pan)-i)
		if g >= len(sizes) && style%5 != 3 {
			n = min(sizes[g%len(sizes)], len(pan)-i)
		}
		b.Write(pan[i : i+n])
		i += n
	}
	return b.String()
}

// unicodeDigits rewrites every digit of a JSON text outside escapes as a
// \u escape.
func unicodeDigits(js []byte) []byte {
	var out []byte
	for i := 0; i < len(js); i++ {
		c := js[i]
		switch {
		case c == '\\' && i+1 < len(js):
			n := 2
			if js[i+1] == 'u' {
				n = 6
			}
			end := min(i+n, len(js))
			out = append(out, js[i:end]...)
			i = end - 1
		case c >= '0' && c <= '9':
			out = append(out, `\u003`...)
			out = append(out, c)
		default:
			out = append(out, c)
		}
	}
	return out
}

// FuzzContainsPAN: a Luhn-valid number of 13 to 19 digits, in any
// separator style, among any text, anywhere in a body (a JSON string, a
// key, deep in arrays, with its digits \u-escaped, a bare JSON number, or
// a body that is not JSON) is always found.
func FuzzContainsPAN(f *testing.F) {
	f.Add([]byte("4242424242424242"), uint8(3), uint8(1), []byte{}, "card", uint8(0), "please", uint8(0), uint8(0))
	f.Add([]byte("378282246310005"), uint8(2), uint8(3), []byte{}, "", uint8(2), "", uint8(6), uint8(3))
	f.Add([]byte{9, 1, 7}, uint8(6), uint8(4), []byte{1, 0x83, 5}, "x", uint8(1), "y", uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, seed []byte, n, style uint8, layout []byte, prefix string, before uint8, suffix string, after, embed uint8) {
		pan := fuzzPAN(seed, n)
		text := prefix + panBefore[int(before)%len(panBefore)] + groupPAN(pan, style, layout) + panAfter[int(after)%len(panAfter)] + suffix
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
			body = unicodeDigits(js)
		case 4:
			body = []byte(`{"amount":` + string(pan) + `}`)
		case 5:
			body = []byte(text)
		}
		if !containsPAN(body) {
			t.Fatalf("card number %s (as %q) missed in %s", pan, groupPAN(pan, style, layout), body)
		}
	})
}

// maxRun is the most digits in a run of digits joined by single spaces or
// dashes.
func maxRun(s []byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			n++
			best = max(best, n)
		case (c == ' ' || c == '-') && n > 0 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
		default:
			n = 0
		}
	}
	return best
}

// maxDecodedRun is maxRun over every string and key of a JSON value.
func maxDecodedRun(v any) int {
	switch t := v.(type) {
	case string:
		return maxRun([]byte(t))
	case map[string]any:
		m := 0
		for k, x := range t {
			m = max(m, maxRun([]byte(k)), maxDecodedRun(x))
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

// FuzzNoFalsePAN: a body whose every run of digits (raw, or in its decoded
// JSON strings) is shorter than 13 digits holds no card number; nor does
// a UUID, whatever its digits.
func FuzzNoFalsePAN(f *testing.F) {
	f.Add([]byte(`{"phone":"+1 415-555-0100","zip":"94107","n":42}`))
	f.Add([]byte(`{"id":"12345678-1234-1234-1234-123456789012"}`))
	f.Add([]byte(`{"d":"2026-11-23T12:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) >= 16 {
			id, _ := uuid.FromBytes(body[:16])
			for _, s := range []string{id.String(), strings.ToUpper(id.String()), "urn:uuid:" + id.String()} {
				if b := []byte(`{"id":"` + s + `","n":1}`); containsPAN(b) {
					t.Fatalf("a UUID taken for a card number: %s", b)
				}
			}
		}
		short := maxRun(body) < 13
		if short && strings.Contains(string(body), `\`) {
			var v any
			if json.Unmarshal(body, &v) == nil {
				short = maxDecodedRun(v) < 13
			}
		}
		if short && containsPAN(body) {
			t.Fatalf("a card number found in %q, which has no run of 13 digits", body)
		}
	})
}

// stubGateway is a configured gateway that is never called.
type stubGateway struct{ Gateway }

// FuzzCreatePaymentBody: a POST /payments body is decoded and checked as
// createPayment does, for a customer and for a service. It is either a 4xx
// problem, or a payment to create whose ids are canonical UUIDs (what the
// uuid columns take, and what ownership is compared with), whose amount is
// in range, currency canonical, capture method known, payment method
// well-formed and present when confirming, and whose texts are in limits.
func FuzzCreatePaymentBody(f *testing.F) {
	f.Add([]byte(`{"account_id":"6f1c7e0a-0000-4000-8000-000000000001","user_id":"8f14e45f-ceea-467a-9575-6b9d1b2ce1a7","amount":1050,"currency":"usd","payment_method":"pm_card_visa","confirm":true}`))
	f.Add([]byte(`{"account_id":"{6F1C7E0A-0000-4000-8000-000000000001}","amount":1,"currency":"JPY","capture_method":"manual","invoice_id":"urn:uuid:6f1c7e0a-0000-4000-8000-000000000009"}`))
	f.Add([]byte(`{"amount":999999999999999,"currency":"XXX","metadata":{"":"x"}}`))
	s := &service{gateways: map[string]Gateway{gwSandbox: stubGateway{}, gwStripe: stubGateway{}}}
	customer := auth.Principal{Subject: "8f14e45f-ceea-467a-9575-6b9d1b2ce1a7", Role: auth.RoleCustomer}
	service := auth.Principal{Subject: "c9f0f895-fb98-4b91-a0e9-2f5e4e3a2b1c", Role: auth.RoleService}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, pr := range []auth.Principal{customer, service} {
			var req createRequest
			err := httpx.Unmarshal(body, &req)
			var in createInput
			if err == nil {
				in, err = s.parseCreate(pr, &req)
			}
			if err != nil {
				var pe *problem.Error
				if !errors.As(err, &pe) || pe.Status() < 400 || pe.Status() >= 500 {
					t.Fatalf("body %q: %v is not a 4xx problem", body, err)
				}
				continue
			}
			canonical := func(field, s string) {
				if id, err := uuid.Parse(s); err != nil || id.String() != s {
					t.Fatalf("body %q: %s %q is not a canonical UUID", body, field, s)
				}
			}
			canonical("account_id", in.AccountID)
			if in.UserID != "" {
				canonical("user_id", in.UserID) // only a claim: authorizeAccount compares it with the owner
			}
			if in.InvoiceID != nil {
				canonical("invoice_id", *in.InvoiceID)
			}
			if in.Amount <= 0 || in.Amount > maxAmount {
				t.Fatalf("body %q: amount %d", body, in.Amount)
			}
			if c, err := money.ParseCurrency(string(in.Currency)); err != nil || c != in.Currency || !in.Currency.Valid() {
				t.Fatalf("body %q: currency %q", body, in.Currency)
			}
			if in.CaptureMethod != CaptureAutomatic && in.CaptureMethod != CaptureManual {
				t.Fatalf("body %q: capture method %q", body, in.CaptureMethod)
			}
			if in.PaymentMethod != "" {
				if _, err := uuid.Parse(in.PaymentMethod); err == nil {
					canonical("payment_method", in.PaymentMethod)
				} else if !tokenRE.MatchString(in.PaymentMethod) {
					t.Fatalf("body %q: payment method %q", body, in.PaymentMethod)
				}
			} else if in.Confirm {
				t.Fatalf("body %q: confirm without a payment method", body)
			}
			if in.Gateway != "" && s.gateways[in.Gateway] == nil {
				t.Fatalf("body %q: gateway %q", body, in.Gateway)
			}
			if utf8.RuneCountInString(in.Description) > 1000 || len(in.Metadata) > 50 || in.Metadata == nil {
				t.Fatalf("body %q: description or metadata out of limits", body)
			}
		}
	})
}
