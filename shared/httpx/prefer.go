package httpx

import (
	"net/http"
	"strings"
)

// Preference is one preference of a Prefer header (RFC 7240): its name in
// lower case, its value ("" when it has none) and its parameters (names in
// lower case).
type Preference struct {
	Name   string
	Value  string
	Params map[string]string
}

// Preferences parses every Prefer header of h, in order, with RFC 7240's
// grammar:
//
//	preference = token [ BWS "=" BWS word ] *( OWS ";" [ OWS parameter ] )
//	parameter  = token [ BWS "=" BWS word ]
//	word       = token / quoted-string
//
// A preference named twice counts once, the first time (RFC 7240 §2); a
// malformed element is skipped up to the next comma, as a server ignores
// what it does not understand.
func Preferences(h http.Header) []Preference {
	var out []Preference
	seen := map[string]bool{}
	for _, v := range h.Values("Prefer") {
		p := preferParser{s: v}
		for !p.done() {
			pref, ok := p.preference()
			if ok && !seen[pref.Name] {
				seen[pref.Name] = true
				out = append(out, pref)
			}
			p.skipElement()
		}
	}
	return out
}

// Prefer returns the preference name (case-insensitive) of r's Prefer
// headers.
func Prefer(r *http.Request, name string) (Preference, bool) {
	name = strings.ToLower(name)
	for _, p := range Preferences(r.Header) {
		if p.Name == name {
			return p, true
		}
	}
	return Preference{}, false
}

// RespondAsync reports whether the client asked for the asynchronous form
// (Prefer: respond-async); answer it with PreferenceApplied.
func RespondAsync(r *http.Request) bool {
	_, ok := Prefer(r, "respond-async")
	return ok
}

// PreferenceApplied tells the client which preference was honoured
// (Preference-Applied, RFC 7240 §3).
func PreferenceApplied(w http.ResponseWriter, name string) {
	w.Header().Add("Preference-Applied", name)
}

type preferParser struct {
	s   string
	pos int
}

func (p *preferParser) done() bool { return p.pos >= len(p.s) }

func (p *preferParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.pos]
}

func (p *preferParser) skipSpace() {
	for !p.done() && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

// skipElement moves past the next comma outside a quoted string.
func (p *preferParser) skipElement() {
	inQuote := false
	for !p.done() {
		c := p.s[p.pos]
		p.pos++
		switch {
		case inQuote && c == '\\':
			p.pos++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == ',':
			return
		}
	}
}

// isTchar is RFC 9110's tchar.
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (p *preferParser) token() string {
	start := p.pos
	for !p.done() && isTchar(p.s[p.pos]) {
		p.pos++
	}
	return p.s[start:p.pos]
}

// word is a token or a quoted-string (unescaped); ok is false when neither.
func (p *preferParser) word() (string, bool) {
	if p.peek() != '"' {
		t := p.token()
		return t, t != ""
	}
	p.pos++
	var b strings.Builder
	for !p.done() {
		c := p.s[p.pos]
		p.pos++
		switch {
		case c == '"':
			return b.String(), true
		case c == '\\' && !p.done():
			b.WriteByte(p.s[p.pos])
			p.pos++
		case c < 0x20 && c != '\t', c == 0x7f:
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", false // unterminated
}

// pair reads token [ BWS "=" BWS word ].
func (p *preferParser) pair() (name, value string, ok bool) {
	p.skipSpace()
	name = strings.ToLower(p.token())
	if name == "" {
		return "", "", false
	}
	p.skipSpace()
	if p.peek() == '=' {
		p.pos++
		p.skipSpace()
		if value, ok = p.word(); !ok {
			return "", "", false
		}
		p.skipSpace()
	}
	return name, value, true
}

// preference reads one element; the caller skips to the next comma.
func (p *preferParser) preference() (Preference, bool) {
	name, value, ok := p.pair()
	if !ok {
		return Preference{}, false
	}
	pref := Preference{Name: name, Value: value}
	for p.peek() == ';' {
		p.pos++
		p.skipSpace()
		if p.done() || p.peek() == ',' || p.peek() == ';' {
			continue // an empty parameter: allowed
		}
		k, v, ok := p.pair()
		if !ok {
			return Preference{}, false
		}
		if pref.Params == nil {
			pref.Params = map[string]string{}
		}
		if _, dup := pref.Params[k]; !dup {
			pref.Params[k] = v
		}
	}
	p.skipSpace()
	if !p.done() && p.peek() != ',' {
		return Preference{}, false // trailing garbage
	}
	return pref, true
}
