package events

import (
	"encoding/json"
)

// unmarshalBatch decodes a batch-mode body (a JSON array of structured
// events) exactly as json.Unmarshal(body, &evs) with evs []Event does,
// without its cost: encoding/json checks the whole body, then scans every
// element again to find its end and reaches (*Event).UnmarshalJSON
// through reflection. Here the body is checked once (json.Valid, so the
// same bodies are refused), the top-level array is split by elementEnd,
// and each element, without the space around it, goes to
// (*Event).UnmarshalJSON, as encoding/json hands it (a null element too).
// A body that is not valid JSON or not an array (null: no events, no
// error; anything else an error) is left to json.Unmarshal itself, for
// its answer and its error. TestParseIsOldParse and
// FuzzParseIsOldParse hold it to encoding/json.
func unmarshalBatch(body []byte) ([]Event, error) {
	b := trimJSONSpace(body)
	if len(b) == 0 || b[0] != '[' || !json.Valid(b) {
		var evs []Event
		err := json.Unmarshal(body, &evs)
		return evs, err
	}
	evs := []Event{}
	i := skipJSONSpace(b, 1)
	if b[i] == ']' {
		return evs, nil
	}
	for {
		end := elementEnd(b, i)
		evs = append(evs, Event{})
		if err := evs[len(evs)-1].UnmarshalJSON(b[i:end]); err != nil {
			return nil, err
		}
		i = skipJSONSpace(b, end)
		if b[i] == ']' {
			return evs, nil
		}
		i = skipJSONSpace(b, i+1) // past the comma
	}
}

// unmarshalStructured decodes a structured-mode body as
// json.Unmarshal(body, &ev) does: a valid JSON body, without the space
// around it, goes to (*Event).UnmarshalJSON (encoding/json hands it any
// JSON value); an invalid one gets json.Unmarshal's own error.
func unmarshalStructured(body []byte, ev *Event) error {
	if !json.Valid(body) {
		return json.Unmarshal(body, ev)
	}
	return ev.UnmarshalJSON(trimJSONSpace(body))
}

// isJSONSpace reports the four bytes JSON allows between tokens.
func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func trimJSONSpace(b []byte) []byte {
	for len(b) > 0 && isJSONSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// skipJSONSpace returns the index of the first non-space byte of b from i.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}

// elementEnd returns the end of the JSON value starting at b[i]. b must be
// valid JSON (json.Valid): only strings (whose escapes may hide quotes and
// brackets) and nesting are tracked; a literal ends at the first byte
// that cannot continue it.
func elementEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++ // the escaped byte (\" or \\ too)
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing array
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',':
			if depth == 0 {
				return i
			}
		default:
			if depth == 0 && isJSONSpace(c) {
				return i
			}
		}
	}
	return i
}
