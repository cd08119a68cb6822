package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/problem"
)

// oldParse is events.Parse as it was before it read batches without
// encoding/json's reflection and binary mode without the SDK's
// protocol/http package (issue 20): the reference the new one must match.
func oldParse(r *http.Request, body []byte) ([]events.Event, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var evs []events.Event
	switch {
	case mt == events.ContentTypeBatch:
		if err := json.Unmarshal(body, &evs); err != nil {
			return nil, problem.New(problem.BadRequest, "malformed CloudEvents batch: %v", err)
		}
	case r.Header.Get("Ce-Specversion") != "":
		req := r.Clone(r.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		for k, v := range req.Header {
			if strings.EqualFold(k, "Ce-") {
				return nil, problem.New(problem.BadRequest, "malformed binary-mode CloudEvent: a Ce- header without an attribute name")
			}
			if len(v) == 0 {
				delete(req.Header, k)
			}
		}
		ev, err := cehttp.NewEventFromHTTPRequest(req)
		if err != nil {
			return nil, problem.New(problem.BadRequest, "malformed binary-mode CloudEvent: %v", err)
		}
		if d := ev.Data(); len(d) > 0 && oldJSONMedia(ev.DataContentType()) && !ev.DataBase64 &&
			ev.Context.DeprecatedGetDataContentEncoding() != event.Base64 && !json.Valid(d) {
			return nil, problem.New(problem.BadRequest, "malformed binary-mode CloudEvent: the data is not the JSON its content type says")
		}
		evs = []events.Event{*ev}
	default:
		var ev events.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			return nil, problem.New(problem.BadRequest, "the body is not a structured CloudEvent: %v", err)
		}
		evs = []events.Event{ev}
	}
	if len(evs) == 0 {
		return nil, problem.New(problem.BadRequest, "the batch holds no events")
	}
	for i := range evs {
		if err := evs[i].Validate(); err != nil {
			return nil, problem.New(problem.BadRequest, "event %d is not a valid CloudEvent: %v", i, err)
		}
		// Added after the refactor, in both: an extension named as a
		// member of the format (TestParseRefusesExtensionsNamedAsTheFormatsMembers).
		for name := range evs[i].Extensions() {
			switch name {
			case "specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema",
				"data", "data_base64", "schemaurl", "datacontentencoding":
				return nil, problem.New(problem.BadRequest, "event %d has an extension named %q", i, name)
			}
		}
		// And, in both: an attribute holding U+0000 or bytes that are
		// not UTF-8 (TestAnEventAttributeNoTextColumnCanHoldIsMalformed).
		bad := func(s string) bool { return strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) }
		texts := []string{evs[i].ID(), evs[i].Type(), evs[i].Subject(), evs[i].DataContentType()}
		for _, v := range evs[i].Extensions() {
			if s, ok := v.(string); ok {
				texts = append(texts, s)
			}
		}
		if slices.ContainsFunc(texts, bad) {
			return nil, problem.New(problem.BadRequest, "event %d: an attribute holds U+0000 or bytes that are not UTF-8", i)
		}
	}
	return evs, nil
}

func oldJSONMedia(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "", event.ApplicationJSON, event.TextJSON, event.ApplicationCloudEventsJSON, event.ApplicationCloudEventsBatchJSON:
		return true
	}
	return false
}

// outcome is what a parse answered: the events, or the error's problem
// code and status (its wording may differ).
func outcome(evs []events.Event, err error) (string, []events.Event) {
	if err == nil {
		return "ok", evs
	}
	var pe *problem.Error
	if !errors.As(err, &pe) {
		return "not a problem: " + err.Error(), nil
	}
	return string(pe.Code) + " " + strconv.Itoa(problem.Common.Status(pe)), nil
}

// sameAsOldParse fails t unless Parse and oldParse answer r the same. When
// two headers name the same attribute or extension the SDK's answer
// depends on Go's map order, so oldParse gets several tries to match.
func sameAsOldParse(t *testing.T, r *http.Request, body []byte) {
	t.Helper()
	got, gotEvs := outcome(events.Parse(r, body))
	var want string
	var wantEvs []events.Event
	for range 500 {
		want, wantEvs = outcome(oldParse(r, body))
		if got == want && reflect.DeepEqual(gotEvs, wantEvs) {
			return
		}
	}
	t.Fatalf("Content-Type %q, headers %q, body %q:\nParse:    %s %v\noldParse: %s %v",
		r.Header.Get("Content-Type"), r.Header, body, got, gotEvs, want, wantEvs)
}

// rawRequest is fuzzRequest, but a header line "~Name: value" is stored
// under Name as it is (not canonicalised) and "!Name" as a header with no
// value: what a handler can be given that net/http's parser never makes.
func rawRequest(form uint8, contentType, headers string, body []byte) *http.Request {
	var plain []string
	var raw [][2]string
	for _, line := range strings.Split(headers, "\n") {
		switch {
		case strings.HasPrefix(line, "~"):
			k, v, _ := strings.Cut(line[1:], ":")
			raw = append(raw, [2]string{k, strings.TrimSpace(v)})
		case strings.HasPrefix(line, "!"):
			raw = append(raw, [2]string{line[1:], "\x00none"})
		default:
			plain = append(plain, line)
		}
	}
	r := fuzzRequest(form, contentType, strings.Join(plain, "\n"), body)
	for _, kv := range raw {
		if kv[1] == "\x00none" {
			r.Header[kv[0]] = []string{}
		} else {
			r.Header[kv[0]] = append(r.Header[kv[0]], kv[1])
		}
	}
	return r
}

// parseCorpus is FuzzParse's corpus (testdata/fuzz/FuzzParse): its
// deliveries seed the comparison.
func parseCorpus(t testing.TB) [][4]string {
	files, err := filepath.Glob("testdata/fuzz/FuzzParse/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("FuzzParse's corpus: %v %v", files, err)
	}
	var out [][4]string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
		var vals [4]string
		for i, l := range lines {
			_, lit, _ := strings.Cut(l, "(")
			v, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
			if err != nil {
				t.Fatalf("%s line %q: %v", f, l, err)
			}
			vals[i] = v
		}
		out = append(out, vals)
	}
	return out
}

const validEvent = `{"specversion":"1.0","id":"0190a6f0-0000-7000-8000-000000000001","source":"/functions/capture-payment",` +
	`"type":"billfn.payment.captured","subject":"p1","time":"2026-03-01T10:30:00Z","datacontenttype":"application/json",` +
	`"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","data":{"amount":1050,"note":"a \"],[{\" b\\\\"}}`

// parseCases are deliveries at the edges of each mode: form, content
// type, headers, body.
var parseCases = [][4]string{
	{"\x01", "", "", "null"},
	{"\x01", "", "", " \t\r\n null \n"},
	{"\x01", "", "", "[]"},
	{"\x01", "", "", " [ \n ] "},
	// The edges of scanBatch's one pass (FuzzScanBatch holds it to json.Valid).
	{"\x01", "", "", "[" + validEvent + " \n,\t" + validEvent + "\r\n]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"amount":1050`, `"amount":-1.5e+3,"n":[0,-0,1E9,{"x":null}]`, 1) + "]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"amount":1050`, `"amount":01`, 1) + "]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"amount":1050`, `"amount":1.`, 1) + "]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"p1"`, `"\u00e9\/\b"`, 1) + "]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"p1"`, `"\x"`, 1) + "]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"p1"`, "\"p\x011\"", 1) + "]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"amount":1050`, `"amount":`+strings.Repeat("[", 9998)+strings.Repeat("]", 9998), 1) + "]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"amount":1050`, `"amount":`+strings.Repeat("[", 9997)+strings.Repeat("]", 9997), 1) + "]"},
	{"\x01", "", "", "[" + validEvent + "] x"},
	{"\x01", "", "", "[" + validEvent},
	{"\x01", "", "", "[null]"},
	{"\x01", "", "", "[" + validEvent + ",null]"},
	{"\x01", "", "", "[1]"},
	{"\x01", "", "", `["x"]`},
	{"\x01", "", "", `[true, false]`},
	{"\x01", "", "", `[[` + validEvent + `]]`},
	{"\x01", "", "", `[{}]`},
	{"\x01", "", "", validEvent},
	{"\x01", "", "", `"x"`},
	{"\x01", "", "", `12`},
	{"\x01", "", "", `[` + validEvent + `,]`},
	{"\x01", "", "", `[` + validEvent + `]]`},
	{"\x01", "", "", `[` + validEvent + `] x`},
	{"\x01", "", "", ""},
	{"\x01", "", "", " \n[\n " + validEvent + " \r\n,\t" + validEvent + "\n]\n "},
	{"\x01", "", "", "[" + validEvent + "," + strings.Replace(validEvent, `"1.0"`, `"0.3"`, 1) + "]"},
	{"\x01", "", "", "[" + strings.Replace(validEvent, `"id":`, `"idx":`, 1) + "]"},
	{"\x01", "", "", "[" + validEvent + ",\"\\u005d\"]"},
	{"\x01", "", "", "[\xff]"},
	{"\x00", "", "", validEvent},
	{"\x00", "", "", " \n" + validEvent + "\n "},
	{"\x00", "", "", "[" + validEvent + "]"},
	{"\x00", "", "", "null"},
	{"\x00", "", "", validEvent + "x"},
	{"\x03", "text/plain", "", validEvent},
	{"\x02", "application/json", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Time: 2026-03-01T10:30:00Z\nCe-Myext: v", `{"amount":1}`},
	{"\x02", "application/json", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x", `{"amount":`},
	{"\x02", "text/plain", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x", `{"amount":`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x", ``},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Specversion: 0.3\nCe-Schemaurl: http://x/y", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Specversion: 2.0", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Time: yesterday", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Bad_ext: v", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Id: 2", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Id: %41%zz", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Ext: %41", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\n~Ce-: v", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\n!ce-", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\n!Ce-Subject", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\n!Ce-Id", `1`},
	{"\x02", "", "Ce-Source: /x\nCe-Type: t.x\n~Ce-id: 1", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\n~Ce-\xc3x: 1", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\n~Ce-Xy: 1\n~Ce-xy: 2", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\n~ce-specversion: 1.0", `1`},
	{"\x02", "application/cloudevents+json", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x", validEvent},
	{"\x02", "application/cloudevents+json", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x", `{`},
	{"\x02", "APPLICATION/CLOUDEVENTS-BATCH+JSON;;", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x", "[" + validEvent + "]"},
	{"\x02", "application/cloudevents-batch+json;;", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x", "[" + validEvent + "]"},
	{"\x02", "application/json", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\nCe-Datacontentencoding: base64", `{"a"`},
	{"\x02", "", "~Ce-Id: caf\xe9\nCe-Source: /x\nCe-Type: t.x", `1`},
	{"\x02", "", "Ce-Id: 1\nCe-Source: /x\nCe-Type: t.x\n~Ce-Note: \xff", `1`},
	{"\x01", "", "", strings.Replace(validEvent, `"subject":"p1"`, `"subject":"p\u0000"`, 1)},
	{"\x01", "application/cloudevents-batch+json", "", "[" + validEvent + "," + strings.Replace(validEvent, `"id":"0190a6f0`, `"id":"\u00000190a6f0`, 1) + "]"},
}

// TestParseIsOldParse: on FuzzParse's corpus and on the edges of each
// mode, Parse answers as oldParse did: the same events, or an error of
// the same problem code and status.
func TestParseIsOldParse(t *testing.T) {
	for _, c := range append(parseCorpus(t), parseCases...) {
		body := []byte(c[3])
		sameAsOldParse(t, rawRequest(c[0][0], c[1], c[2], body), body)
	}
}

// FuzzParseIsOldParse is TestParseIsOldParse for any delivery (headers as
// rawRequest reads them).
func FuzzParseIsOldParse(f *testing.F) {
	for _, c := range append(parseCorpus(f), parseCases...) {
		f.Add(c[0][0], c[1], c[2], []byte(c[3]))
	}
	f.Fuzz(func(t *testing.T, form uint8, contentType, headers string, body []byte) {
		sameAsOldParse(t, rawRequest(form, contentType, headers, body), body)
	})
}

// BenchmarkParseBatch: Parse against oldParse on a batch of 50 events, as
// the kafka-trigger delivers them.
func BenchmarkParseBatch(b *testing.B) {
	body := []byte("[" + strings.Repeat(validEvent+",", 49) + validEvent + "]")
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	r.Header.Set("Content-Type", events.ContentTypeBatch)
	for _, p := range []struct {
		name  string
		parse func(*http.Request, []byte) ([]events.Event, error)
	}{{"Parse", events.Parse}, {"oldParse", oldParse}} {
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.parse(r, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// An extension named as one of the format's own members (the SDK lower-
// cases the names it does not know: "dAtA", "iD", a Ce-Data header) would
// be written back as that member — a second "id", or a "data" that
// replaces the data — whenever the event is encoded again (parked, relayed
// to an endpoint), so the event would change in a round trip. Such a
// delivery is refused, whatever its mode, before anything runs.
func TestParseRefusesExtensionsNamedAsTheFormatsMembers(t *testing.T) {
	valid := `"specversion":"1.0","id":"1","source":"/x","type":"billfn.payment.captured"`
	cases := []struct {
		name, contentType, headers, body string
	}{
		{"structured dAtA", "application/cloudevents+json", "", `{` + valid + `,"dAtA":"00000000"}`},
		{"structured iD", "application/cloudevents+json", "", `{` + valid + `,"iD":"2"}`},
		{"structured DATA", "application/cloudevents+json", "", `{` + valid + `,"data":{},"DATA":"x"}`},
		{"batch TYPE", events.ContentTypeBatch, "", `[{` + valid + `},{` + valid + `,"TYPE":"other"}]`},
		{"binary Ce-Data", "application/json", "Ce-Specversion: 1.0\nCe-Id: 1\nCe-Source: /x\nCe-Type: billfn.payment.captured\nCe-Data: {}", `{"amount":1}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.body))
			r.Header.Set("Content-Type", c.contentType)
			for _, line := range strings.Split(c.headers, "\n") {
				if k, v, ok := strings.Cut(line, ": "); ok {
					r.Header.Set(k, v)
				}
			}
			evs, err := events.Parse(r, []byte(c.body))
			var pe *problem.Error
			if !errors.As(err, &pe) || problem.Common.Status(pe) != http.StatusBadRequest {
				t.Fatalf("Parse = %d events, %v; want a 400 problem", len(evs), err)
			}
			if !strings.Contains(pe.Detail, "extension") {
				t.Errorf("the detail does not say what is wrong: %q", pe.Detail)
			}
		})
	}
}
