package ids

import (
	"strings"
	"testing"
)

func TestOneRuleForIDs(t *testing.T) {
	const id = "0190a0b4-5c2e-7d3f-8a1b-0123456789ab"
	for in, want := range map[string]string{
		id:                                     id,
		strings.ToUpper(id):                    id,
		"{" + id + "}":                         "",
		"urn:uuid:" + id:                       "",
		strings.ReplaceAll(id, "-", ""):        "",
		id[:35]:                                "",
		id + "0":                               "",
		"0190a0b4-5c2e-7d3f-8a1b-0123456789ag": "",
		"0190a0b4+5c2e-7d3f-8a1b-0123456789ab": "",
		"":                                     "",
	} {
		got, ok := Canonical(in)
		if got != want || ok != (want != "") || Valid(in) != ok {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	a, b := New(), New()
	if !Valid(a) || a == b || a[14] != '7' {
		t.Fatalf("New() = %q, %q: want distinct UUIDv7s", a, b)
	}
}

func FuzzCanonical(f *testing.F) {
	f.Add("0190a0b4-5c2e-7d3f-8a1b-0123456789ab")
	f.Add("{0190a0b4-5c2e-7d3f-8a1b-0123456789ab}")
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := Canonical(s)
		if !ok {
			return
		}
		if len(c) != Len || c != strings.ToLower(s) {
			t.Fatalf("Canonical(%q) = %q", s, c)
		}
		if again, ok := Canonical(c); !ok || again != c {
			t.Fatalf("not idempotent: %q -> %q", c, again)
		}
	})
}
