package pan

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/problem"
)

func TestContains(t *testing.T) {
	yes := []string{
		"4242424242424242",
		"card 4242 4242 4242 4242 please",
		"4000-0566-5566-5556",
		"4242.4242.4242.4242",       // dots
		"4242/4242/4242/4242",       // slashes
		"4242_4242_4242_4242",       // underscores
		"4242-4242 4242.4242",       // mixed
		"4242 - 4242 / 4242 . 4242", // several separators between groups
		"3782 822463 10005",         // Amex 4-6-5
		"4222222222222",             // Visa, 13
		"6205500000000000004",       // 19
		"４２４２４２４２４２４２４２４２",          // full-width digits
		"４２４２　４２４２　４２４２　４２４２",                               // full-width, ideographic spaces
		"４２４２－４２４２．４２４２／４２４２",                               // full-width separators
		"٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢",                                  // Arabic-Indic digits
		"۴۲۴۲ ۴۲۴۲ ۴۲۴۲ ۴۲۴۲",                               // Extended Arabic-Indic
		"४२४२४२४२४२४२४२४२",                                  // Devanagari
		"4242\u00a04242\u00a04242\u00a04242",                // no-break spaces
		"4242\u20134242\u20134242\u20134242",                // en dashes
		"4242\u200b4242\u200b4242\u200b4242",                // zero-width spaces
		"42４２4242٤٢٤٢4242",                                  // mixed scripts
		"my card is 4242 4242 4242 4242, exp 12/27, thanks", // inside a sentence
		"4242 4242 4242 4242 12/27",                         // followed by the expiry
		"ref 1 4000-0566-5566-5556 cvc 123",                 // among other numbers
		"card:\n4242424242424242",
		"x-4242424242424242",
		"é4242424242424242é",
		"(5555 5555 5555 4444)",
	}
	no := []string{
		"",
		"pm_card_visa",
		"1050",
		"123e4567-e89b-12d3-a456-426614174000",
		"73625508-2962-4106-a925-e0e02156fa08", // digit groups, Luhn-valid
		"12345678-1234-1234-1234-123456789012", // all digits
		"4242424242424241",                     // fails Luhn
		"4242 4242 4242 4241",
		"424242424242",         // 12 digits
		"4242 4242 4242",       // 12 digits, grouped
		"42424242424242424242", // 20 digits
		"4242424242424242424242",
		"2026-11-23T12:00:00Z", // a time
		"2026-11-23",
		"2026/11/23 2026.11.24",
		"pm_4242424242424242", // part of an identifier
		"ch_1234567890123452x",
		"4242424242424242_x",
		"4242424242424242-abc",
		"+1 415-555-0100",
		"+44 20 7946 0958",
		"+1 (415) 555-0100 ext 1234", // fails Luhn anyway, and brackets split it
		"1234.56",
		"USD 1,234,567.89",
		"DE89 3704 0044 0532 0130 00",  // IBAN: its digits fail Luhn
		"GB82 WEST 1234 5698 7654 32",  // IBAN
		"4242    4242    4242    4242", // four spaces: not one number
		"4242\n4242\n4242\n4242",       // one per line: a list
		"192.168.100.200",
		"v1.2.3",
		"IBAN GB00 BILL 0000 0000 0000 00", // zeros: a placeholder, and no card starts with 0
		"0000 0000 0000 0000",
		"0424242424242424",
	}
	for _, s := range yes {
		if !Contains(s) {
			t.Errorf("missed a card number in %q", s)
		}
	}
	for _, s := range no {
		if Contains(s) {
			t.Errorf("false card number in %q", s)
		}
	}
	// Random UUIDs never look like card numbers.
	for i := 0; i < 20000; i++ {
		if s := uuid.NewString(); Contains(s) || Contains(strings.ToUpper(s)) {
			t.Fatalf("false card number in %s", s)
		}
	}
}

// TestDigitValues: every Unicode decimal digit is read by its value, so a
// card number in any script is the same number.
func TestDigitValues(t *testing.T) {
	n := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !unicode.IsDigit(r) {
			if digit(r) != -1 {
				t.Fatalf("digit(%U) = %d for a non-digit", r, digit(r))
			}
			continue
		}
		n++
		v := digit(r)
		if v < 0 || v > 9 {
			t.Fatalf("digit(%U) = %d", r, v)
		}
		// The zero of r's set is v code points before it.
		if z := r - rune(v); !unicode.IsDigit(z) || digit(z) != 0 {
			t.Fatalf("%U: value %d but %U is not a zero", r, v, z)
		}
	}
	if n < 600 {
		t.Fatalf("only %d digits", n)
	}
	for i, r := range "０１２３４５６７８９" {
		if digit(r) != i/3 {
			t.Fatalf("full-width %c = %d", r, digit(r))
		}
	}
}

func TestCheckBody(t *testing.T) {
	yes := []struct{ body, pointer string }{
		{`{"payment_method":"4242424242424242"}`, "#/payment_method"},
		{`{"description":"card 4242 4242 4242 4242 please"}`, "#/description"},
		{`{"metadata":{"x":"4000-0566-5566-5556"}}`, "#/metadata/x"},
		{`{"amount":4242424242424242}`, "#/amount"},
		{`{"metadata":{"378282246310005":"amex as a key"}}`, "#/metadata"},
		{`{"d":"\u0034\u0032\u0034\u0032\u0034\u0032\u0034\u0032\u0034\u0032\u0034\u0032\u0034\u0032\u0034\u0032"}`, "#/d"},
		{`{"d":"my card:\n4242424242424242"}`, "#/d"},
		{`{"d":"4242\/4242\/4242\/4242"}`, "#/d"},
		{`{"lines":[{"description":"x"},{"description":"4242.4242.4242.4242"}]}`, "#/lines/1/description"},
		{`{"a/b":{"c~d":"4242_4242_4242_4242"}}`, "#/a~1b/c~0d"},
		{`{"d":"\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12"}`, "#/d"},
		{`card 4242 4242 4242 4242, not JSON`, ""},
		{`0} card 4242 4242 4242 4242`, ""},         // a JSON value, then text that is not JSON
		{`{"a":1}] 4242424242424242`, ""},           // the same after an object
		{`{"a":1} {"b":"4242 4242 4242 4242"}`, ""}, // a second value
	}
	for _, c := range yes {
		err := CheckBody([]byte(c.body))
		var pe *problem.Error
		if !errors.As(err, &pe) || pe.Code != problem.CardNumberRejected || problem.Common.Status(pe) != http.StatusUnprocessableEntity {
			t.Errorf("%s: %v", c.body, err)
			continue
		}
		if c.pointer != "" && (len(pe.Errors) != 1 || pe.Errors[0].Pointer != c.pointer) {
			t.Errorf("%s: fields %+v, want %s", c.body, pe.Errors, c.pointer)
		}
		doc, _ := json.Marshal(pe)
		for _, f := range pe.Errors {
			if Contains(f.Pointer) || Contains(f.Detail) {
				t.Errorf("%s: the field error echoes the number: %+v (%s)", c.body, f, doc)
			}
		}
	}
	no := []string{
		`{"payment_method":"pm_card_visa"}`,
		`{"amount":1050,"currency":"USD"}`,
		`{"account_id":"123e4567-e89b-12d3-a456-426614174000"}`,
		`{"id":"73625508-2962-4106-a925-e0e02156fa08"}`,
		`{"d":"4242424242424241"}`,
		`{"d":"2026-11-23T12:00:00Z","n":"\u00e9"}`,
		`{"d":"pm_4242424242424242"}`,
		`{"phone":"+1 415-555-0100","zip":"94107","n":42}`,
		`{"amounts":[1.5,2.25,10]}`,
		`not json at all`,
	}
	for _, b := range no {
		if err := CheckBody([]byte(b)); err != nil {
			t.Errorf("false card number in %s: %v", b, err)
		}
	}
}

func TestChecker(t *testing.T) {
	var c Checker
	c.Text("description", "fine")
	c.Text("memo", "pay with 4242 4242 4242 4242")
	c.Texts("customer", "name", "Ada", "email", "4242424242424242@example.com")
	c.Map("metadata", map[string]string{"ok": "1", "ref": "4000-0566-5566-5556", "5555555555554444": "x"})
	c.Value("extra", map[string]any{"n": json.Number("378282246310005")})
	c.JSON("raw", []byte(`{"a":[1,{"b":"6011 1111 1111 1117"}]}`))
	c.JSON("bad", []byte(`{"a":"4242424242424242`))
	c.JSON("trail", []byte(`{"a":1} 4242 4242 4242 4242`)) // text after the value, as CheckBody's "0} 4242…"
	c.Value("in", struct {
		Memo  string               `json:"memo"`
		Lines []struct{ D string } `json:"lines"`
	}{Memo: "ok", Lines: []struct{ D string }{{"x"}, {"4242 4242 4242 4242"}}})
	c.JSON("fine", []byte(`{"a":"73625508-2962-4106-a925-e0e02156fa08"}`))
	var pe *problem.Error
	if !errors.As(c.Err(), &pe) || pe.Code != problem.CardNumberRejected {
		t.Fatalf("Err = %v", c.Err())
	}
	var got []string
	for _, f := range pe.Errors {
		got = append(got, f.Pointer)
	}
	want := "#/memo #/customer/email #/metadata #/metadata/ref #/extra/n #/raw/a/1/b #/bad #/trail #/in/lines/1/D"
	if strings.Join(got, " ") != want {
		t.Fatalf("fields %v, want %s", got, want)
	}
	var ok Checker
	ok.Text("d", "order 12")
	if ok.Err() != nil {
		t.Fatal(ok.Err())
	}
}

func TestMiddleware(t *testing.T) {
	var reached []string
	h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		_ = json.NewDecoder(r.Body).Decode(&v)
		reached = append(reached, v["d"].(string))
	}))
	for _, body := range []string{`{"d":"ok 12"}`, `{"d":"4242 4242 4242 4242"}`} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/x", strings.NewReader(body)))
		if strings.Contains(body, "4242") {
			if rec.Code != 422 || strings.Contains(rec.Body.String(), "4242") || !strings.Contains(rec.Body.String(), `"card_number_rejected"`) {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		} else if rec.Code != 200 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	if len(reached) != 1 || reached[0] != "ok 12" {
		t.Fatalf("the handler saw %q", reached)
	}
	// A request without a body passes.
	rec := httptest.NewRecorder()
	Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })).ServeHTTP(rec, httptest.NewRequest("DELETE", "/x", nil))
	if rec.Code != 204 {
		t.Fatal(rec.Code)
	}
}
