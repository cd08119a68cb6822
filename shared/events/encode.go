package events

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"time"

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
	OriginKid       string          `json:"originkid,omitempty"`
	OriginSig       string          `json:"originsig,omitempty"`
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
	return encode(nil, tp, ts, function, typ, subject, data)
}

// EncodeIn is events.EncodeIn with s's origin proof (originkid, originsig)
// in the payload, as Sign then Marshal would put it there: the signed
// bytes are built from the fields in hand (OriginBytes of the event the
// payload decodes to), so nothing is decoded or encoded a second time. The
// outbox writes such a payload with its key id and relays it as it is
// (outbox.Writer), instead of decoding every row to sign it at publish.
// A nil s encodes the event unsigned, as events.EncodeIn does.
func (s *OriginSigner) EncodeIn(tp, ts, function, typ, subject string, data any) (id string, payload []byte, err error) {
	return encode(s, tp, ts, function, typ, subject, data)
}

func encode(s *OriginSigner, tp, ts, function, typ, subject string, data any) (id string, payload []byte, err error) {
	u, err := uuid.NewV7()
	if err != nil {
		return "", nil, err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return "", nil, err
	}
	if tp == "" {
		tp, ts = NewTraceParent(), ""
	}
	id = u.String()
	e := structured{SpecVersion: "1.0", ID: id, Source: Source(function), Type: typ, Subject: subject,
		Time: time.Now().UTC().Format(time.RFC3339Nano), DataContentType: "application/json", TraceParent: tp,
		TraceState: ts, Data: raw}
	if s != nil {
		msg := originBytes(e.ID, e.Source, e.Type, e.Time, e.DataContentType, e.Subject, canonicalJSON(raw))
		e.OriginKid, e.OriginSig = s.kid, base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.key, msg))
	}
	return id, e.appendJSON(make([]byte, 0, 420+len(raw))), nil
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
	b = appendJSONField(b, "originkid", e.OriginKid, true)
	b = appendJSONField(b, "originsig", e.OriginSig, true)
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
