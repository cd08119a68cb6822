package pan

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/problem"
)

// decimalIn is a request's decimal kept as written, as generate-invoice's
// DecimalText: a JSON Marshaler.
type decimalIn struct {
	s   string
	set bool
}

func (d decimalIn) MarshalJSON() ([]byte, error) {
	if !d.set {
		return []byte("null"), nil
	}
	return json.Marshal(d.s)
}

// invoiceIn has the shape of generate-invoice's CreateInvoiceIn, an input
// of POST /invoices and of its batch endpoint.
type invoiceIn struct {
	AccountID string            `json:"account_id"`
	Currency  string            `json:"currency"`
	Customer  *customerIn       `json:"customer"`
	LineItems []lineIn          `json:"line_items"`
	Coupon    string            `json:"coupon"`
	NetTerms  *int              `json:"net_terms_days"`
	DueDate   *string           `json:"due_date"`
	Memo      string            `json:"memo"`
	Metadata  map[string]string `json:"metadata"`
	Finalize  bool              `json:"auto_finalize"`
}

type customerIn struct {
	Name    string     `json:"name"`
	Email   string     `json:"email"`
	Address *addressIn `json:"address"`
}

type addressIn struct {
	Line1   string `json:"line1"`
	City    string `json:"city"`
	Country string `json:"country"`
}

type lineIn struct {
	Description string            `json:"description"`
	Quantity    decimalIn         `json:"quantity"`
	UnitAmount  *int64            `json:"unit_amount"`
	TaxRateIDs  []string          `json:"tax_rate_ids"`
	Metadata    map[string]string `json:"metadata"`
}

func sampleInvoice(lines int) *invoiceIn {
	terms, due, amount := 30, "2030-01-31", int64(4200)
	in := &invoiceIn{AccountID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Currency: "USD",
		Customer: &customerIn{Name: "Ada Lovelace", Email: "ada@example.com", Address: &addressIn{Line1: "12 St James's Square", City: "London", Country: "GB"}},
		Coupon:   "WELCOME10", NetTerms: &terms, DueDate: &due, Memo: "Thank you for your order 1234-5678.",
		Metadata: map[string]string{"order": "A-1234", "channel": "web"}}
	for i := range lines {
		in.LineItems = append(in.LineItems, lineIn{Description: "Widget, model " + strconv.Itoa(i), Quantity: decimalIn{"2.5", true},
			UnitAmount: &amount, TaxRateIDs: []string{"txr_1"}, Metadata: map[string]string{"sku": "W-" + strconv.Itoa(i)}})
	}
	return in
}

// Checking a request struct walks it as it is, not as its JSON: it was
// marshalled and decoded again (5.2 % of the invoice batch endpoint's CPU
// in make bench), 461 allocations for this invoice of 10 lines; walked,
// 22 (a line's quantity, a JSON Marshaler, still marshals itself). The
// bound is relative to the round trip's, measured alike, so that it holds
// under the race detector too (where Contains allocates: 162 and 614).
func TestValueOfAStructAllocatesLittle(t *testing.T) {
	in := sampleInvoice(10)
	walked := testing.AllocsPerRun(100, func() {
		var c Checker
		c.Value("invoices/3", in)
		if c.Err() != nil {
			t.Fatal(c.Err())
		}
	})
	roundTrip := testing.AllocsPerRun(100, func() { _ = valueByJSON("invoices/3", in) })
	t.Logf("an invoice of %d lines: %.0f allocations, %.0f by its JSON", len(in.LineItems), walked, roundTrip)
	if walked*3 > roundTrip {
		t.Fatalf("an invoice of %d lines: %.0f allocations, want at most a third of its JSON round trip's (%.0f)",
			len(in.LineItems), walked, roundTrip)
	}
}

// valueByJSON is Checker.Value as it was: the value marshalled, decoded
// and walked. The reference of the walker's verdicts.
func valueByJSON(path string, v any) []problem.FieldError {
	var c Checker
	if b, err := json.Marshal(v); err == nil {
		c.JSON(path, b)
	}
	return c.fields
}

func valueByWalk(path string, v any) []problem.FieldError {
	var c Checker
	c.Value(path, v)
	return c.fields
}

type ptrMarshaler struct{ s string }

func (p *ptrMarshaler) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"v": p.s})
}

type failing struct{}

func (failing) MarshalJSON() ([]byte, error) { return nil, errors.New("no") }

type textKey int

func (k textKey) MarshalText() ([]byte, error) { return []byte("k" + strconv.Itoa(int(k))), nil }

type Embedded struct {
	Inner string `json:"inner"`
	Memo  string `json:"memo"`
}

type kitchen struct {
	Embedded
	Memo      string             `json:"memo"`
	Skip      string             `json:"-"`
	Dash      string             `json:"-,"`
	Bad       string             `json:"a\"b"`
	NoTag     string             //
	Quoted    int64              `json:",string"`
	Empty     string             `json:"empty,omitempty"`
	Slash     string             `json:"a/b~c"`
	Any       any                `json:"any"`
	Anys      []any              `json:"anys"`
	Float     float64            `json:"float"`
	Bytes     []byte             `json:"bytes"`
	Number    json.Number        `json:"number"`
	When      time.Time          `json:"when"`
	Ptr       ptrMarshaler       `json:"ptr"`
	Keys      map[textKey]string `json:"keys"`
	Ints      map[int]string     `json:"ints"`
	Nested    map[string]any     `json:"nested"`
	Array     [2]string          `json:"array"`
	Uint      uint64             `json:"uint"`
	Int       int64              `json:"int"`
	Bad8      string             `json:"bad8"`
	Decimal   decimalIn          `json:"decimal"`
	PtrDec    *decimalIn         `json:"ptr_dec"`
	unexposed string
}

type holder struct {
	Ptr   ptrMarshaler                   `json:"ptr"`
	Dec   decimalIn                      `json:"dec"`
	PDec  *decimalIn                     `json:"pdec"`
	Fails any                            `json:"fails,omitempty"`
	Deep  map[string][]map[string]string `json:"deep"`
}

type plain struct {
	Memo   string            `json:"memo"`
	Any    any               `json:"any"`
	Meta   map[string]string `json:"meta"`
	Lines  []lineIn          `json:"lines"`
	Float  float64           `json:"float"`
	Amount int64             `json:"amount"`
	Raw    json.RawMessage   `json:"raw"`
}

// The walker's verdicts are the round trip's: the same members named, in
// the same order, for values of every kind encoding/json writes.
func TestValueWalksAsTheJSONWouldRead(t *testing.T) {
	const card, spaced = "4242424242424242", "4000 0566 5566 5556"
	amount := int64(4242424242424242)
	values := []any{
		sampleInvoice(3),
		func() any {
			in := sampleInvoice(3)
			in.Memo = "card " + spaced
			in.Customer.Address.City = card
			in.LineItems[1].Quantity = decimalIn{card, true}
			in.LineItems[2].UnitAmount = &amount
			in.LineItems[0].Metadata = map[string]string{spaced: "x", "b/~": card, "ok": "1"}
			in.Metadata["z"+card] = "y"
			return in
		}(),
		*sampleInvoice(1),
		&kitchen{Embedded: Embedded{Inner: card}, Memo: card, Skip: card, Dash: card, Bad: card, NoTag: card, Quoted: amount,
			Slash: card, Any: map[string]any{"x": []any{1, card}}, Anys: []any{json.Number(card), 3.5, card},
			Float: 4242424242424242, Bytes: []byte(card), Number: json.Number(card), When: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
			Ptr: ptrMarshaler{card}, Keys: map[textKey]string{1: card}, Ints: map[int]string{4242424242424242: "x", 2: card},
			Nested: map[string]any{"a": map[string]any{card: 1, "b": []any{map[string]any{"c": card}}}}, Array: [2]string{"", card},
			Uint: 4242424242424242, Int: -4242424242424242, Bad8: "4242 4242\xff 4242 4242\xfe" + card, Decimal: decimalIn{card, true},
			PtrDec: &decimalIn{spaced, true}, unexposed: card},
		kitchen{Ptr: ptrMarshaler{card}, Memo: card},
		&plain{Memo: card, Any: &plain{Memo: card}, Meta: map[string]string{"k": card, card: "v"}, Float: math.NaN()},
		&plain{Memo: "fine", Raw: json.RawMessage(`{"a":"` + card + `"}`), Lines: []lineIn{{Description: card}}},
		&plain{Any: failing{}, Memo: card},
		&plain{Any: map[string]any{"x\xffy" + card: 1, "": map[string]any{"": card}}},
		[]string{card, "x"},
		map[string]int64{"a": amount},
		struct{ A, B string }{card, spaced},
		&holder{Ptr: ptrMarshaler{card}, Dec: decimalIn{card, true}, PDec: &decimalIn{}, Fails: failing{}},
		&holder{Ptr: ptrMarshaler{card}, Dec: decimalIn{card, true}},
		holder{Ptr: ptrMarshaler{card}, Dec: decimalIn{card, true}},
		&holder{Deep: map[string][]map[string]string{"a": {{"b": card, card: ""}, nil}}},
	}
	for i, v := range values {
		for _, path := range []string{"", "invoices/2", "a~1b"} {
			want, got := valueByJSON(path, v), valueByWalk(path, v)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("value %d at %q: walked %v, want %v", i, path, got, want)
			}
		}
	}
	if len(valueByWalk("", values[1])) != 6 {
		t.Fatalf("the invoice's card numbers: %v", valueByWalk("", values[1]))
	}
}

// FuzzValueWalksAsTheJSONWouldRead: any texts, numbers and keys in an
// invoice's members give the round trip's verdicts.
func FuzzValueWalksAsTheJSONWouldRead(f *testing.F) {
	f.Add("4242 4242 4242 4242", "pm_4242424242424242", "k", "4000056655665556", int64(4242424242424242), 1.5)
	f.Add("x", "", "", "", int64(0), 0.0)
	f.Fuzz(func(t *testing.T, memo, desc, key, val string, n int64, fl float64) {
		in := sampleInvoice(2)
		in.Memo, in.LineItems[0].Description, in.LineItems[1].Quantity = memo, desc, decimalIn{val, true}
		in.Metadata[key] = val
		in.LineItems[1].UnitAmount = &n
		in.Customer.Name = key
		for _, v := range []any{in, &plain{Memo: memo, Float: fl, Amount: n, Any: map[string]any{key: []any{val, desc}}, Meta: map[string]string{val: key}}} {
			want, got := valueByJSON("invoices/0", v), valueByWalk("invoices/0", v)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("walked %v, want %v", got, want)
			}
		}
	})
}
