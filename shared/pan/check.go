package pan

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/billfn/billfn/shared/problem"
)

// Detail is what a rejected field's error says; it never quotes the value.
const Detail = "holds what looks like a card number; billfn takes gateway tokens (pm_…), never card numbers"

// keyDetail is said of an object one of whose keys holds a card number:
// naming the key would echo it.
const keyDetail = "a key of this object holds what looks like a card number; billfn takes gateway tokens (pm_…), never card numbers"

// Reject is the 422 card_number_rejected problem naming the offending
// members (JSON pointers without "#/", as problem.Field takes them).
func Reject(fields ...problem.FieldError) *problem.Error {
	return &problem.Error{Code: problem.CardNumberRejected,
		Detail: "the request holds what looks like a card number; send a gateway token (pm_…) instead, never a card number",
		Errors: fields}
}

// Checker collects the free-text fields of a request that hold a card
// number. A handler checks its decoded fields with it before validating
// them, so no validation message can quote a card number either:
//
//	var c pan.Checker
//	c.Text("description", req.Description)
//	c.Map("metadata", req.Metadata)
//	if err := c.Err(); err != nil {
//		return err
//	}
type Checker struct{ fields []problem.FieldError }

// Text checks one string member at path ("lines/0/description").
func (c *Checker) Text(path, s string) {
	if Contains(s) {
		c.fields = append(c.fields, problem.Field(path, Detail))
	}
}

// Texts checks several string members: Texts("customer", "name", name, "email", email).
func (c *Checker) Texts(prefix string, pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		c.Text(join(prefix, pairs[i]), pairs[i+1])
	}
}

// Map checks the keys and values of a string map at path (metadata).
func (c *Checker) Map(path string, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if Contains(k) {
			c.fields = append(c.fields, problem.Field(path, keyDetail))
			continue
		}
		c.Text(join(path, Escape(k)), m[k])
	}
}

// Value checks a value at path: every string, number and key in it,
// however deep. A decoded JSON value is walked as it is; anything else (a
// request struct) is walked as its JSON, so the pointers follow its json
// tags and a field added to the struct later is checked too.
func (c *Checker) Value(path string, v any) {
	switch v.(type) {
	case nil, string, json.Number, float64, bool, map[string]any, []any:
		c.fields = append(c.fields, find(path, v, nil)...)
	default:
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // "<", ">", "&" as they are: no \u escape to send JSON the slow way
		if enc.Encode(v) == nil {
			c.JSON(path, bytes.TrimSuffix(b.Bytes(), []byte("\n")))
		}
	}
}

// JSON checks a raw JSON member at path (a metadata object kept as
// json.RawMessage): every string, number and key in it. Text that is not
// JSON, or that goes on after its value, is refused at path when its text
// holds a number.
func (c *Checker) JSON(path string, raw []byte) {
	fields, elsewhere := scanJSON(path, raw)
	c.fields = append(c.fields, fields...)
	if elsewhere {
		c.fields = append(c.fields, problem.Field(path, Detail))
	}
}

// scanJSON is JSON text's check, the Middleware's and Checker.JSON's: the
// members that hold a card number (pointers under path), or, when none
// does, whether the text holds one all the same (elsewhere): text that is
// not JSON, or text after the value ("0} 4242…", which the decoder will
// refuse, but not before an idempotency store has kept it).
//
// The raw text is scanned first (cheap, and it covers text that is not
// JSON): JSON without escapes holds a card number in a member only when
// its text holds one, so only text that holds one, or has escapes (whose
// digits or separators may be written as \u escapes), is decoded and
// walked, to name the members.
func scanJSON(path string, raw []byte) (fields []problem.FieldError, elsewhere bool) {
	held := Contains(string(raw))
	if !held && !bytes.ContainsRune(raw, '\\') {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil, held
	}
	if fields = find(path, v, nil); len(fields) > 0 {
		return fields, false
	}
	return nil, held && len(bytes.TrimLeft(raw[dec.InputOffset():], " \t\r\n")) > 0
}

// Err is the card_number_rejected problem, or nil when no field held one.
func (c *Checker) Err() error {
	if len(c.fields) == 0 {
		return nil
	}
	return Reject(c.fields...)
}

// Find returns the members of a decoded JSON value (map[string]any, []any,
// string, json.Number, float64) that hold a card number, as field errors
// whose pointers are relative to the value's root.
func Find(v any) []problem.FieldError { return find("", v, nil) }

func find(path string, v any, out []problem.FieldError) []problem.FieldError {
	switch t := v.(type) {
	case string:
		if Contains(t) {
			out = append(out, problem.Field(path, Detail))
		}
	case json.Number:
		if Contains(string(t)) {
			out = append(out, problem.Field(path, Detail))
		}
	case float64:
		// Without UseNumber a 16-digit number loses no digit below 2^53
		// only; the decoder's callers use UseNumber, this is for others.
		if Contains(strconv.FormatFloat(t, 'f', -1, 64)) {
			out = append(out, problem.Field(path, Detail))
		}
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if Contains(k) {
				out = append(out, problem.Field(path, keyDetail))
				continue
			}
			out = find(join(path, Escape(k)), t[k], out)
		}
	case []any:
		for i, x := range t {
			out = find(join(path, strconv.Itoa(i)), x, out)
		}
	}
	return out
}

func join(path, token string) string {
	if path == "" {
		return token
	}
	return path + "/" + token
}

// Escape escapes one JSON Pointer reference token (RFC 6901).
func Escape(token string) string { return pointerEscaper.Replace(token) }

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
