package htmlesc

import (
	"html/template"
	"slices"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/testenv"
)

// Escape is what html/template writes for a string in text, in <title>
// and in a quoted attribute.
func FuzzEscapeIsHTMLTemplates(f *testing.F) {
	for _, s := range []string{"", "plain", `<script>alert("x")</script>`, `Tom & Jerry's`, "+1", "a\x00b", "\xff\xfe", "\ufdd0\uffff\ufffd", "€ ✓ 日本"} {
		f.Add(s)
	}
	tmpl := template.Must(template.New("").Parse(`<p class="{{.}}">{{.}}</p><title>{{.}}</title>`))
	f.Fuzz(func(t *testing.T, s string) {
		var want strings.Builder
		if err := tmpl.Execute(&want, s); err != nil {
			t.Fatal(err)
		}
		e := Escape(s)
		if got := `<p class="` + e + `">` + e + `</p><title>` + e + `</title>`; got != want.String() {
			t.Fatalf("Escape(%q) = %q; html/template wrote %q", s, e, want.String())
		}
	})
}

func TestPrintfEscapesEveryArgument(t *testing.T) {
	var w Builder
	w.Raw(`<p class="x">`)
	w.Printf(`<a title="%s">%v of %v, 100%%</a>`, `"quoted" & <b>`, 3, int64(-7))
	if got, want := w.String(), `<p class="x"><a title="&#34;quoted&#34; &amp; &lt;b&gt;">3 of -7, 100%</a>`; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

// No function's binary links the template engine: text/template calls
// reflect.Value.MethodByName with a name known at run time, and the linker
// then keeps every exported method of every type (all of go-redis's
// commands), 10 MB of executable and about 3 MB of idle RSS (issue 20).
// billfn's own packages import neither template package; of the modules
// that do, none has its template code reached: envconfig's (Usage) and
// go-mail's (the *Template methods of Msg) are not called.
func TestNoFunctionLinksTheTemplateEngine(t *testing.T) {
	allowed := []string{"html/template", "github.com/kelseyhightower/envconfig", "github.com/wneessen/go-mail"}
	for pkg, imports := range testenv.FunctionImports(t) {
		if slices.Contains(imports, "text/template") || slices.Contains(imports, "html/template") {
			if !slices.Contains(allowed, pkg) {
				t.Errorf("%s imports the template engine; write its HTML with htmlesc", pkg)
			}
		}
	}
}
