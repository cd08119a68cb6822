// Package htmlesc writes HTML from plain Go: the values a page shows are
// escaped exactly as html/template escapes them in text and in quoted
// attribute values, the markup around them is written as it is.
//
// The functions render their pages (the dashboard's panels, the invoice's
// HTML, the emails) with it instead of html/template: text/template calls
// reflect.Value.MethodByName with a name known only at run time, which
// makes the linker keep every exported method of every type in the binary
// (all of go-redis's commands among them), 10 MB more executable and about
// 3 MB more resident memory in every idle instance (issue 20).
// TestNoFunctionLinksTheTemplateEngine keeps it that way.
package htmlesc

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Escape returns s for HTML text, an RCDATA element (<title>) or a quoted
// attribute value, as html/template's escaper does: & < > " ' and + become
// entities, NUL becomes U+FFFD, everything else (invalid UTF-8 included)
// stays as it is.
func Escape(s string) string {
	var b strings.Builder
	written := 0
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		var repl string
		switch {
		case r == 0:
			repl = "\uFFFD"
		case r == '"':
			repl = "&#34;"
		case r == '&':
			repl = "&amp;"
		case r == '\'':
			repl = "&#39;"
		case r == '+':
			repl = "&#43;"
		case r == '<':
			repl = "&lt;"
		case r == '>':
			repl = "&gt;"
		}
		if repl != "" {
			if written == 0 {
				b.Grow(len(s) + 16)
			}
			b.WriteString(s[written:i])
			b.WriteString(repl)
			written = i + w
		}
		i += w
	}
	if written == 0 {
		return s
	}
	b.WriteString(s[written:])
	return b.String()
}

// Builder collects a page: markup as it is (Raw), markup with values
// (Printf, whose arguments are escaped).
type Builder struct {
	b strings.Builder
}

// Raw writes markup as it is.
func (w *Builder) Raw(markup string) { w.b.WriteString(markup) }

// Printf writes format with each argument in place of its verb (%s or %v):
// the argument as fmt.Sprint prints it (a number in decimal, a
// fmt.Stringer by its String), escaped. A literal % in format is %%.
func (w *Builder) Printf(format string, args ...any) {
	esc := make([]any, len(args))
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			s = fmt.Sprint(a)
		}
		esc[i] = Escape(s)
	}
	fmt.Fprintf(&w.b, format, esc...)
}

// String is the page so far.
func (w *Builder) String() string { return w.b.String() }

// Len is the page's length so far, in bytes.
func (w *Builder) Len() int { return w.b.Len() }
