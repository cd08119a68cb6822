package events

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
)

// structured is the JSON envelope of a structured-mode CloudEvent with
// billfn's attributes.
type structured struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	TraceParent     string          `json:"traceparent"`
	TraceState      string          `json:"tracestate,omitempty"`
	Data            json.RawMessage `json:"data"`
}

// Encode builds the same event as New and returns its id and its
// structured-mode JSON in one step, without the SDK's intermediate
// representation: half the work on the outbox's hot path. Decoding the
// payload with the SDK (Unmarshal) gives back the event New would build.
func Encode(ctx context.Context, function, typ, subject string, data any) (id string, payload []byte, err error) {
	return EncodeIn(TraceParent(ctx), TraceState(ctx), function, typ, subject, data)
}

// EncodeIn is Encode continuing the trace of traceparent tp and tracestate
// ts (a work that builds events away from the context that asked for them,
// as a group commit does, keeps each caller's); with tp "" the event starts
// a new trace, as New does.
func EncodeIn(tp, ts, function, typ, subject string, data any) (id string, payload []byte, err error) {
	id, payload, _, err = encode(tp, ts, function, typ, subject, data, false)
	return id, payload, err
}

// EncodeLater is EncodeIn for an event that OriginSigner.SignAll signs,
// with the others written beside it: payload is what EncodeIn writes
// (unsigned), msg the OriginBytes of the event it decodes to, built from
// the fields in hand, so nothing is decoded or encoded a second time. The
// outbox writes such rows with their key id and relays them as they are
// (process-transaction's group commit), instead of decoding every row to
// sign it at publish.
func EncodeLater(tp, ts, function, typ, subject string, data any) (id string, payload, msg []byte, err error) {
	return encode(tp, ts, function, typ, subject, data, true)
}

func encode(tp, ts, function, typ, subject string, data any, signed bool) (id string, payload, msg []byte, err error) {
	e, err := envelope(tp, ts, function, typ, subject, data)
	if err != nil {
		return "", nil, nil, err
	}
	if signed {
		msg = originBytes(e.ID, e.Source, e.Type, e.Time, e.DataContentType, e.Subject, canonicalJSON(e.Data))
	}
	return e.ID, e.appendJSON(make([]byte, 0, 420+len(e.Data))), msg, nil
}

// envelope is the unsigned event of Encode.
func envelope(tp, ts, function, typ, subject string, data any) (structured, error) {
	u, err := uuid.NewV7()
	if err != nil {
		return structured{}, err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return structured{}, err
	}
	if tp == "" {
		tp, ts = NewTraceParent(), ""
	}
	return structured{SpecVersion: "1.0", ID: u.String(), Source: Source(function), Type: typ, Subject: subject,
		Time: time.Now().UTC().Format(time.RFC3339Nano), DataContentType: "application/json", TraceParent: tp,
		TraceState: ts, Data: raw}, nil
}

// appendJSON appends what json.Marshal(e) writes, byte for byte, without
// its reflection and without its second pass over Data (which json.Marshal
// validates and compacts again): Data must be what json.Marshal wrote,
// compact and escaped already.
func (e *structured) appendJSON(b []byte) []byte {
	b = append(b, `{"specversion":`...)
	b = appendJSONString(b, e.SpecVersion)
	b = appendJSONField(b, "id", e.ID, false)
	b = appendJSONField(b, "source", e.Source, false)
	b = appendJSONField(b, "type", e.Type, false)
	b = appendJSONField(b, "subject", e.Subject, true)
	b = appendJSONField(b, "time", e.Time, false)
	b = appendJSONField(b, "datacontenttype", e.DataContentType, false)
	b = appendJSONField(b, "traceparent", e.TraceParent, false)
	b = appendJSONField(b, "tracestate", e.TraceState, true)
	b = append(b, `,"data":`...)
	if e.Data == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Data...)
	}
	return append(b, '}')
}

// appendJSONField appends a member after the first: a comma, the name (no
// byte of which needs escaping) and v; nothing for an empty v when
// omitEmpty, as the field's omitempty tag does.
func appendJSONField(b []byte, name, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return appendJSONString(b, v)
}

// appendJSONString appends s as encoding/json writes a string: as it is
// when no byte needs escaping (printable ASCII other than ", \, <, >, &),
// else through json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// MarshalEvent returns what Marshal(ev) writes, followed, when s is not
// nil, by s's origin proof as SignEncoded appends it: the outbox's payload
// of an SDK event (outbox.Writer), byte for byte. Marshal goes through
// encoding/json, which calls the SDK's MarshalJSON (json-iterator, a sort
// of the extensions' names) and then scans the whole result again to
// compact it; SignEncoded then rebuilds OriginBytes from the event. For
// an event as New builds it, MarshalEvent writes the envelope by hand
// instead, in the SDK's member order (specversion, id, source, type,
// subject, datacontenttype, time, data, then the extensions by name,
// then originkid and originsig), and signs the fields in hand, as encode
// does.
//
// ok is false, and nothing is written, for any other event: then use
// Marshal and SignEncoded (or Sign) as before. MarshalEvent takes an
// event whose
//
//   - context is CloudEvents 1.0 without dataschema;
//   - datacontenttype is exactly application/json and data is JSON (not
//     data_base64, possibly absent);
//   - time is set (not the zero time);
//   - extensions are traceparent and, optionally, tracestate, both
//     strings, and nothing else (no origin proof: Sign replaces one);
//   - id, source, type, subject and extension values are printable ASCII
//     (encoding/json and the SDK escape other bytes differently).
//
// The data is written as encoding/json writes a Marshaler's output:
// compact, with <, >, &, U+2028 and U+2029 escaped (canonicalJSON); data
// that is not valid JSON is refused (Marshal fails on it).
func (s *OriginSigner) MarshalEvent(ev Event) (payload []byte, ok bool) {
	payload, msg, ok := marshalEvent(ev, s != nil)
	if !ok || s == nil {
		return payload, ok
	}
	return appendProof(payload, s.kid, ed25519.Sign(s.key, msg), ""), true
}

// MarshalLater is MarshalEvent for an event that OriginSigner.SignAll
// signs with others: payload is what MarshalEvent writes unsigned, msg the
// OriginBytes of the event (nil when ok is false).
func MarshalLater(ev Event) (payload, msg []byte, ok bool) { return marshalEvent(ev, true) }

func marshalEvent(ev Event, signed bool) (payload, msg []byte, ok bool) {
	ec, isV1 := ev.Context.(*event.EventContextV1)
	if !isV1 || ec == nil || ec.DataSchema != nil || ev.DataBase64 ||
		ec.DataContentType == nil || *ec.DataContentType != event.ApplicationJSON ||
		ec.Time == nil || ec.Time.IsZero() {
		return nil, nil, false
	}
	var tp, ts string
	hasTS := false
	for name, v := range ec.Extensions {
		str, isString := v.(string)
		switch {
		case !isString || !printableASCII(str):
			return nil, nil, false
		case name == TraceParentExt:
			tp = str
		case name == TraceStateExt:
			ts, hasTS = str, true
		default:
			return nil, nil, false
		}
	}
	if _, has := ec.Extensions[TraceParentExt]; !has {
		return nil, nil, false
	}
	source := ec.Source.String()
	subject := ""
	if ec.Subject != nil {
		subject = *ec.Subject
	}
	if !printableASCII(ec.ID) || !printableASCII(source) || !printableASCII(ec.Type) || !printableASCII(subject) {
		return nil, nil, false
	}
	data := ev.DataEncoded
	if data != nil {
		if !json.Valid(data) {
			return nil, nil, false
		}
		data = canonicalJSON(data)
	}
	t := ec.Time.Time.UTC().Format(time.RFC3339Nano)

	b := make([]byte, 0, 400+len(data))
	b = append(b, `{"specversion":"1.0"`...)
	b = appendJSONField(b, "id", ec.ID, false)
	b = appendJSONField(b, "source", source, false)
	b = appendJSONField(b, "type", ec.Type, false)
	if ec.Subject != nil {
		b = appendJSONField(b, "subject", subject, false)
	}
	b = appendJSONField(b, "datacontenttype", event.ApplicationJSON, false)
	b = appendJSONField(b, "time", t, false)
	if data != nil {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	b = appendJSONField(b, TraceParentExt, tp, false)
	if hasTS {
		b = appendJSONField(b, TraceStateExt, ts, false)
	}
	if signed {
		msg = originBytes(ec.ID, source, ec.Type, t, event.ApplicationJSON, subject, data)
	}
	return append(b, '}'), msg, true
}

// printableASCII reports whether s holds only bytes 0x20–0x7e, which the
// SDK's encoder followed by encoding/json's compaction write exactly as
// appendJSONString does.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
