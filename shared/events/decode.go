package events

import (
	"encoding/binary"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// decodeEvent is ev.UnmarshalJSON(obj) for obj, one valid JSON value
// without space around it (scanBatch's element, a structured body that
// json.Valid took): the events billfn writes (CloudEvents 1.0, every
// attribute and extension a plain string) are read by decodeCommon, any
// other by the SDK's decoder, which gives the same Event for those
// (FuzzDecodeEventIsTheSDKs). The SDK's generic path was most of Parse:
// 33 of its 46 allocations per event (a string for every member name and
// value, a copy of the data), make bench's consumers reading every event
// of every delivery through it (TestParseAllocationsPerEvent).
func decodeEvent(obj []byte, ev *Event) error {
	if decodeCommon(obj, ev) {
		return nil
	}
	return ev.UnmarshalJSON(obj)
}

// The attributes decodeCommon reads, each at most once.
const (
	seenSpec = 1 << iota
	seenID
	seenType
	seenSource
	seenSubject
	seenTime
	seenContentType
	seenData
)

// decodeCommon decodes obj (valid JSON, no space around it) into ev as
// the SDK would, and reports true, when obj is a CloudEvents 1.0 object
// whose members are each present once, with names and string values
// without escapes or bytes outside printable ASCII, every attribute a
// non-empty string that the SDK takes (a source url.Parse takes, an
// RFC 3339 time, a JSON datacontenttype without parameters), no
// dataschema nor data_base64 (nor 0.3's members), and extensions named
// in lower-case letters and digits with string values. Otherwise it
// leaves ev alone and reports false, and the SDK decodes obj. The
// strings are cut from one copy of obj; the data is obj's own bytes as
// the SDK captures them (from after the colon), with no capacity beyond
// them.
func decodeCommon(obj []byte, ev *Event) bool {
	if len(obj) < 2 || obj[0] != '{' {
		return false
	}
	var (
		s     string // obj as a string, made when the first string value is taken
		ec    event.EventContextV1
		data  []byte
		exts  map[string]any
		seen  uint
		nexts int
	)
	i := skipJSONSpace(obj, 1)
	if obj[i] == '}' {
		return false
	}
	for {
		if obj[i] != '"' {
			return false
		}
		kend := scanString(obj, i)
		if kend < 0 {
			return false
		}
		key := obj[i+1 : kend-1]
		colon := skipJSONSpace(obj, kend)
		if colon >= len(obj) || obj[colon] != ':' {
			return false
		}
		vstart := skipJSONSpace(obj, colon+1)
		vend := scanValue(obj, vstart, 1)
		if vend < 0 {
			return false
		}
		// val is the member's value when it is a plain string.
		var val string
		plain := obj[vstart] == '"' && plainASCII(obj[vstart+1:vend-1]) && vend-vstart > 2
		if plain {
			if s == "" {
				s = string(obj)
			}
			val = s[vstart+1 : vend-1]
		}
		bit := uint(0)
		switch string(key) {
		case "specversion":
			bit = seenSpec
			if !plain || val != event.CloudEventsVersionV1 {
				return false
			}
		case "id":
			bit, ec.ID = seenID, val
		case "type":
			bit, ec.Type = seenType, val
		case "source":
			bit = seenSource
			if plain {
				u, ok := parseSource(val)
				if !ok {
					return false
				}
				ec.Source = types.URIRef{URL: u}
			}
		case "subject":
			bit = seenSubject
			ec.Subject = stringPtr(val)
		case "time":
			bit = seenTime
			if plain {
				t, err := time.Parse(time.RFC3339Nano, val)
				if err != nil {
					return false
				}
				ec.Time = &types.Timestamp{Time: t}
			}
		case "datacontenttype":
			bit = seenContentType
			switch val {
			case event.ApplicationJSON, event.TextJSON, event.ApplicationCloudEventsJSON, event.ApplicationCloudEventsBatchJSON:
				ec.DataContentType = stringPtr(val)
			default:
				return false
			}
		case "data":
			if seen&seenData != 0 {
				return false
			}
			seen |= seenData
			if !plainData(obj[vstart:vend]) {
				return false
			}
			data = obj[colon+1 : vend : vend]
		default:
			if !plain || !extensionName(key) {
				return false
			}
			if exts == nil {
				exts = make(map[string]any, 4)
			}
			name := s[i+1 : kend-1]
			if _, dup := exts[name]; dup {
				return false
			}
			exts[name] = val
			nexts++
		}
		if bit != 0 {
			if !plain || seen&bit != 0 {
				return false
			}
			seen |= bit
		}
		i = skipJSONSpace(obj, vend)
		if i >= len(obj) {
			return false
		}
		if obj[i] == '}' {
			break
		}
		i = skipJSONSpace(obj, i+1) // past the comma
		if i >= len(obj) {
			return false
		}
	}
	if seen&seenSpec == 0 {
		return false
	}
	if nexts > 0 {
		ec.Extensions = exts
	}
	*ev = Event{Context: &ec, DataEncoded: data}
	return true
}

func stringPtr(s string) *string { return &s }

// maxDataDepth is the deepest nesting of data decodeCommon takes.
const maxDataDepth = 64

// plainData reports whether the SDK's decoder skips v, valid JSON, as it
// is: nested at most maxDataDepth deep, and every number of it digits
// with at most a dot, which its skip takes without parsing the number, or
// a negative one of at most 15 digits, which its float parse takes (an
// exponent or more digits may be refused: 1e999999).
func plainData(v []byte) bool {
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"':
			i = scanString(v, i) - 1
			if i < 0 {
				return false
			}
		case '{', '[':
			if depth++; depth > maxDataDepth {
				return false
			}
		case '}', ']':
			depth--
		case 't', 'n':
			i += 3
		case 'f':
			i += 4
		case '-':
			// A negative number goes through the SDK's float parse,
			// which takes any of at most 15 digits and a dot.
			j := i + 1
			for j < len(v) && (v[j] >= '0' && v[j] <= '9' || v[j] == '.') {
				j++
			}
			if j-i > 16 || j < len(v) && (v[j] == 'e' || v[j] == 'E') {
				return false
			}
			i = j - 1
		case '+', 'e', 'E':
			return false
		}
	}
	return true
}

// plainASCII reports whether b, a JSON string's inside, holds no escape
// and only printable ASCII: the string is then the bytes themselves.
// decodeCommon asks it of every member's value, signatures and proofs
// included, so it reads eight bytes at a time as scanString does
// (TestPlainASCIIIsBytewise).
func plainASCII(b []byte) bool {
	for ; len(b) >= 8; b = b[8:] {
		if notPlainASCII(binary.LittleEndian.Uint64(b)) != 0 {
			return false
		}
	}
	for _, c := range b {
		if c == '\\' || c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// notPlainASCII is not 0 when one of w's eight bytes is '\\', below 0x20
// or 0x7f and above. Below the first such byte nothing borrows nor
// carries, so no byte is flagged when there is none: a byte x of 0x20 to
// 0x7e but '\\' leaves the high bit clear in x, x+1, x-0x20 and
// (x^'\\')-1. The first such byte sets it in one of them: x itself when
// x >= 0x80, x+1 when 0x7f, x-0x20 when below 0x20, (x^'\\')-1 when '\\'.
func notPlainASCII(w uint64) uint64 {
	s := w ^ (swarOnes * '\\')
	return ((s - swarOnes) | (w - swarOnes*0x20) | (w + swarOnes) | w) & swarHigh
}

// extensionName reports whether the SDK keeps name as an extension under
// that very name: lower-case letters and digits (it lower-cases others),
// not one of the members the 1.0 decoder reads otherwise, within the
// SDK's length limit.
func extensionName(name []byte) bool {
	if len(name) == 0 || event.MaxExtensionNameLength > 0 && len(name) > event.MaxExtensionNameLength {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	switch string(name) {
	case "dataschema", "schemaurl", "datacontentencoding":
		return false
	}
	return true
}

// lastSource is the source decodeCommon parsed last: a delivery's events,
// and a producer's, mostly share one, and url.Parse costs an allocation
// and about 6 % of parsing a batch (BenchmarkParsePostedBatch).
var lastSource atomic.Pointer[parsedSource]

type parsedSource struct {
	s string
	u url.URL
}

// parseSource is url.Parse(s) as a value, from lastSource when s is its.
// A miss parses a copy of s: s is cut from a whole delivery's body, which
// lastSource would otherwise keep alive.
func parseSource(s string) (url.URL, bool) {
	if p := lastSource.Load(); p != nil && p.s == s {
		return p.u, true
	}
	s = strings.Clone(s)
	u, err := url.Parse(s)
	if err != nil {
		return url.URL{}, false
	}
	lastSource.Store(&parsedSource{s, *u})
	return *u, true
}
