package events

import (
	"bytes"
	"context"
	"net/http"
	"net/textproto"
	"strings"
	"unicode"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
)

// This file reads a binary-mode delivery (the attributes in Ce-* headers,
// the body the data) into an Event with the SDK's binding package, as the
// SDK's own protocol/http does (NewEventFromHTTPRequest): a binding.Message
// of our own that reads the headers as that call does in sdk-go v2.16.2
// (protocol/http/message.go and headers.go). Importing protocol/http
// would link go.uber.org/zap and sdk-go's context and protocol packages
// into every function (more executable, more idle RSS, issue 20), for
// this one call. Header values are taken as they are, not percent-decoded:
// that version does not decode them. TestParseIsOldParse and
// FuzzParseIsOldParse (parse_test.go) hold this reader to the SDK's; run
// them again when go.mod moves sdk-go.

// ceHeaderPrefix prefixes the header of every attribute but
// datacontenttype, which is Content-Type.
const ceHeaderPrefix = "Ce-"

// ceSpecs are the spec versions with their attributes under their header
// names ("Ce-Id", "Content-Type"), as protocol/http's specs.
var ceSpecs = spec.WithPrefixMatchExact(
	func(s string) string {
		if s == "datacontenttype" {
			return "Content-Type"
		}
		return textproto.CanonicalMIMEHeaderKey(ceHeaderPrefix + s)
	},
	ceHeaderPrefix,
)

// ceAttributeHeaders maps an attribute's name to its header's name.
var ceAttributeHeaders = func() map[string]string {
	m := map[string]string{}
	for _, v := range ceSpecs.Versions() {
		for _, a := range v.Attributes() {
			if a.Kind() == spec.DataContentType {
				m[a.Name()] = "Content-Type"
			} else {
				m[a.Name()] = textproto.CanonicalMIMEHeaderKey(ceHeaderPrefix + a.Name())
			}
		}
	}
	return m
}()

// httpMessage is a delivery as a binding.Message: its headers and body.
// Headers without a value are skipped (the SDK would index their first
// value and panic). Like protocol/http's Message, a Content-Type naming a
// structured format (application/cloudevents+json) makes the body the
// structured event, whatever the Ce-* headers say.
type httpMessage struct {
	header  http.Header
	body    []byte
	format  format.Format
	version spec.Version
}

var (
	_ binding.Message               = (*httpMessage)(nil)
	_ binding.MessageMetadataReader = (*httpMessage)(nil)
)

func newHTTPMessage(header http.Header, body []byte) *httpMessage {
	m := &httpMessage{header: header, body: body}
	if m.format = format.Lookup(header.Get("Content-Type")); m.format == nil {
		m.version = ceSpecs.Version(header.Get(ceSpecs.PrefixedSpecVersionName()))
	}
	return m
}

// ReadEncoding says binary when the headers name a known spec version.
func (m *httpMessage) ReadEncoding() binding.Encoding {
	if m.version != nil {
		return binding.EncodingBinary
	}
	if m.format != nil {
		if m.format == format.JSONBatch {
			return binding.EncodingBatch
		}
		return binding.EncodingStructured
	}
	return binding.EncodingUnknown
}

// ReadStructured hands the body to the format the Content-Type names.
func (m *httpMessage) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	if m.format == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, m.format, bytes.NewReader(m.body))
}

// ReadBinary writes each attribute header as its attribute, each other
// Ce-* header as an extension named by the rest of the header's name with
// its first byte lower-cased, and the body as the data.
func (m *httpMessage) ReadBinary(ctx context.Context, w binding.BinaryWriter) (err error) {
	if m.version == nil {
		return binding.ErrNotBinary
	}
	for k, v := range m.header {
		if len(v) == 0 {
			continue
		}
		if attr := m.version.Attribute(k); attr != nil {
			err = w.SetAttribute(attr, v[0])
		} else if strings.HasPrefix(k, ceHeaderPrefix) {
			// The SDK's own conversion: the byte after the prefix as a
			// rune, lower-cased, then the rest.
			var b strings.Builder
			b.Grow(len(k) - len(ceHeaderPrefix))
			b.WriteRune(unicode.ToLower(rune(k[len(ceHeaderPrefix)])))
			b.WriteString(k[len(ceHeaderPrefix)+1:])
			err = w.SetExtension(b.String(), v[0])
		}
		if err != nil {
			return err
		}
	}
	// The SDK's builder copies what it reads unless it is a *bytes.Buffer:
	// a reader keeps the event's data from sharing the request's body.
	return w.SetData(bytes.NewReader(m.body))
}

// GetAttribute returns the attribute of kind k and its header's value (nil
// when absent); nil, nil when the spec version has no such attribute.
func (m *httpMessage) GetAttribute(k spec.Kind) (spec.Attribute, interface{}) {
	attr := m.version.AttributeFromKind(k)
	if attr == nil {
		return nil, nil
	}
	if h := m.header[ceAttributeHeaders[attr.Name()]]; len(h) > 0 {
		return attr, h[0]
	}
	return attr, nil
}

// GetExtension returns the value of extension name's header, nil when absent.
func (m *httpMessage) GetExtension(name string) interface{} {
	if name == "" {
		return nil
	}
	var b strings.Builder
	b.Grow(len(name) + len(ceHeaderPrefix))
	b.WriteString(ceHeaderPrefix)
	b.WriteRune(unicode.ToUpper(rune(name[0])))
	b.WriteString(name[1:])
	if h := m.header[b.String()]; len(h) > 0 {
		return h[0]
	}
	return nil
}

// Finish has nothing to release.
func (m *httpMessage) Finish(error) error { return nil }

// eventFromBinary is binding.ToEvent over the delivery's headers and body:
// what cehttp.NewEventFromHTTPRequest returns for the same request.
func eventFromBinary(header http.Header, body []byte) (*Event, error) {
	return binding.ToEvent(context.Background(), newHTTPMessage(header, body))
}
