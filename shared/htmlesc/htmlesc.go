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
)

// Escape returns s for HTML text, an RCDATA element (<title>) or a quoted
// attribute value, as html/template's escaper does: & < > " ' and + become
// entities, NUL becomes U+FFFD, everything else (invalid UTF-8 included)
// stays as it is. Each of those is one byte that no other UTF-8 sequence
// contains, so a byte replacer is exact.
func Escape(s string) string { return escaper.Replace(s) }

var escaper = strings.NewReplacer("\x00", "\uFFFD", `"`, "&#34;", "&", "&amp;", "'", "&#39;", "+", "&#43;", "<", "&lt;", ">", "&gt;")

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
