package main

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// envelopeHead is what the trigger reads of a structured-mode record: the
// top-level members routing needs, found without decoding the rest.
type envelopeHead struct {
	object bool // a JSON object (when the value is valid JSON)
	// whole: the object's closing brace is found and only space follows
	// it. In a batch body (a JSON array of the records' values) that is
	// valid JSON, a record that is whole is exactly one of its elements:
	// its bytes cannot carry a second event ("{…},{…}") into the batch.
	whole bool
	// The raw JSON of the last top-level member of each name (the names
	// compared exactly, as the CloudEvents SDK reads them), nil when absent.
	typ, traceParent, traceState []byte
}

// walkHead walks the top-level members of v, skipping each value by its
// brackets and strings without decoding it, and without validating v
// (json.Unmarshal into a struct, which this replaced, scanned a record
// twice: a third of the trigger's CPU). For valid JSON it finds exactly
// what decoding finds; for any other bytes it finds something, never
// reads past v and always ends. The trigger reads a record's type this way
// and validates none of it (inspectFor).
func walkHead(v []byte) envelopeHead {
	var h envelopeHead
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' {
		return h
	}
	h.object = true
	i++
	for {
		i = skipSpace(v, i)
		if i >= len(v) {
			return h
		}
		if v[i] == '}' {
			h.whole = skipSpace(v, i+1) == len(v)
			return h
		}
		if v[i] == ',' {
			i = skipSpace(v, i+1)
			if i >= len(v) {
				return h
			}
		}
		kEnd := skipString(v, i)
		key := v[i:kEnd]
		i = skipSpace(v, kEnd) + 1 // past ':'
		i = skipSpace(v, i)
		if i >= len(v) {
			return h
		}
		end := skipValue(v, i)
		switch {
		case keyIs(key, "type"):
			h.typ = v[i:end]
		case keyIs(key, "traceparent"):
			h.traceParent = v[i:end]
		case keyIs(key, "tracestate"):
			h.traceState = v[i:end]
		}
		i = end
	}
}

// keyIs reports whether the raw JSON string key (quotes included) is name.
// A key spelled with escapes is decoded first.
func keyIs(key []byte, name string) bool {
	if len(key) == len(name)+2 && string(key[1:len(key)-1]) == name {
		return true
	}
	if bytes.IndexByte(key, '\\') < 0 {
		return false
	}
	var s string
	return json.Unmarshal(key, &s) == nil && s == name
}

// jsonString is the string a raw JSON value holds, as encoding/json reads
// it (invalid UTF-8 replaced); "" when it is not a string.
func jsonString(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	in := raw[1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return string(in)
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// jsonBytes is jsonString without a copy when the string holds no escape:
// the bytes between its quotes; nil when raw is not a string.
func jsonBytes(raw []byte) []byte {
	if len(raw) < 2 || raw[0] != '"' {
		return nil
	}
	if in := raw[1 : len(raw)-1]; bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return in
	}
	return []byte(jsonString(raw))
}

// The helpers below walk JSON: exactly when it is valid; for any other
// bytes they stay within v and move forward.

func skipSpace(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at v[i] ('"'):
// past the next quote that an even run of backslashes precedes (found with
// bytes.IndexByte, which skips long strings — signatures, ids — many bytes
// at a time), or len(v).
func skipString(v []byte, i int) int {
	for i++; i < len(v); {
		q := bytes.IndexByte(v[i:], '"')
		if q < 0 {
			return len(v)
		}
		q += i
		n := 0
		for j := q - 1; j >= i && v[j] == '\\'; j-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		i = q + 1
	}
	return len(v)
}

// skipValue returns the index just past the value starting at v[i].
func skipValue(v []byte, i int) int {
	switch v[i] {
	case '"':
		return skipString(v, i)
	case '{', '[':
		depth := 0
		for i < len(v) {
			switch v[i] {
			case '"':
				i = skipString(v, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // a number, true, false or null
		for i < len(v) {
			switch v[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}
