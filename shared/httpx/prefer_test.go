package httpx

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

func prefs(values ...string) []Preference {
	h := http.Header{}
	for _, v := range values {
		h.Add("Prefer", v)
	}
	return Preferences(h)
}

func TestPreferencesFollowRFC7240(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []Preference
	}{
		{[]string{"respond-async"}, []Preference{{Name: "respond-async"}}},
		{[]string{"Respond-Async, wait=10"}, []Preference{{Name: "respond-async"}, {Name: "wait", Value: "10"}}},
		{[]string{"respond-async", "wait=5"}, []Preference{{Name: "respond-async"}, {Name: "wait", Value: "5"}}},
		// BWS around "=", OWS around ";", parameters, quoted strings with
		// commas, semicolons and escapes inside.
		{[]string{`handling = lenient ; foo="a,b;c" ;; Bar=x, return=minimal`}, []Preference{
			{Name: "handling", Value: "lenient", Params: map[string]string{"foo": "a,b;c", "bar": "x"}},
			{Name: "return", Value: "minimal"},
		}},
		{[]string{`x="say \"hi\""`}, []Preference{{Name: "x", Value: `say "hi"`}}},
		// Only the first of a repeated preference counts.
		{[]string{"wait=1, wait=2", "wait=3"}, []Preference{{Name: "wait", Value: "1"}}},
		// Malformed elements are skipped, the rest kept.
		{[]string{`="x", respond-async`}, []Preference{{Name: "respond-async"}}},
		{[]string{`wait="unterminated, respond-async`}, nil},
		{[]string{`wait=@, respond-async`}, []Preference{{Name: "respond-async"}}},
		{[]string{`no-respond-async-here x, respond-async`}, []Preference{{Name: "respond-async"}}},
		{[]string{"", " , ,"}, nil},
	} {
		if got := prefs(tt.in...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Preferences(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// The substring checks this replaces accepted what is not the preference.
func TestRespondAsyncIsTheWholePreferenceOnly(t *testing.T) {
	for in, want := range map[string]bool{
		"respond-async":          true,
		"RESPOND-ASYNC; foo=bar": true,
		"wait=10, respond-async": true,
		"no-respond-async":       false,
		`return="respond-async"`: false,
		"respond-asynchronously": false,
		`x="a, respond-async"`:   false,
		"respond-async=":         false,
		"":                       false,
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if in != "" {
			r.Header.Set("Prefer", in)
		}
		if got := RespondAsync(r); got != want {
			t.Errorf("RespondAsync(Prefer: %q) = %v, want %v", in, got, want)
		}
	}
	rec := httptest.NewRecorder()
	PreferenceApplied(rec, "respond-async")
	if rec.Header().Get("Preference-Applied") != "respond-async" {
		t.Fatal("Preference-Applied not set")
	}
}

func FuzzPreferences(f *testing.F) {
	for _, s := range []string{"respond-async", `a=b;c="d\"e", f`, `"`, `x=;`, "\\", ";;,,=="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := http.Header{"Prefer": {s}}
		seen := map[string]bool{}
		for _, p := range Preferences(h) {
			if p.Name == "" || seen[p.Name] {
				t.Fatalf("%q: empty or repeated name in %+v", s, p)
			}
			seen[p.Name] = true
		}
	})
}
