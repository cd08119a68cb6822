package events

import (
	"encoding/json"
)

// unmarshalBatch decodes a batch-mode body (a JSON array of structured
// events) exactly as json.Unmarshal(body, &evs) with evs []Event does,
// without its cost: encoding/json checks the whole body, then scans every
// element again to find its end and reaches (*Event).UnmarshalJSON
// through reflection. Here one pass (scanBatch) checks the body as
// json.Valid does, so the same bodies are refused, and finds the
// top-level array's elements; each element, without the space around it,
// goes to decodeEvent, which is (*Event).UnmarshalJSON, as encoding/json
// hands it (a null element too). A body that is not valid JSON or not an array (null: no
// events, no error; anything else an error) is left to json.Unmarshal
// itself, for its answer and its error. TestParseIsOldParse,
// FuzzParseIsOldParse and FuzzScanBatch hold it to encoding/json.
func unmarshalBatch(body []byte) ([]Event, error) {
	b := trimJSONSpace(body)
	var spans [][2]int
	if len(b) > 0 && b[0] == '[' {
		var buf [64][2]int
		var ok bool
		if spans, ok = scanBatch(b, buf[:0]); !ok {
			spans = nil
		}
	}
	if spans == nil {
		var evs []Event
		err := json.Unmarshal(body, &evs)
		return evs, err
	}
	evs := make([]Event, len(spans))
	for k, sp := range spans {
		if err := decodeEvent(b[sp[0]:sp[1]], &evs[k]); err != nil {
			return nil, err
		}
	}
	return evs, nil
}

// unmarshalStructured decodes a structured-mode body as
// json.Unmarshal(body, &ev) does: a valid JSON body, without the space
// around it, goes to (*Event).UnmarshalJSON (encoding/json hands it any
// JSON value); an invalid one gets json.Unmarshal's own error.
func unmarshalStructured(body []byte, ev *Event) error {
	if !json.Valid(body) {
		return json.Unmarshal(body, ev)
	}
	return decodeEvent(trimJSONSpace(body), ev)
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
// Most calls find none (the bodies billfn writes have no space): a byte
// above ' ' ends it after one comparison instead of four.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && isJSONSpace(b[i]) {
		i++
	}
	return i
}
