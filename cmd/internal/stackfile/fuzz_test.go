package stackfile

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// refRefs are the references the package documents: ${NAME},
// ${NAME:-default}, ${NAME-default} and $NAME.
var refRefs = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-)([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// refExpand is the documented substitution written as a regular
// expression; ok is false when a "$" is left that is no reference.
func refExpand(s string, lookup Lookup) (out string, ok bool) {
	rest := refRefs.ReplaceAllString(s, "")
	out = refRefs.ReplaceAllStringFunc(s, func(m string) string {
		g := refRefs.FindStringSubmatch(m)
		if g[4] != "" {
			v, _ := lookup(g[4])
			return v
		}
		v, set := lookup(g[1])
		switch {
		case g[2] == ":-" && (!set || v == ""):
			return g[3]
		case g[2] == "-" && !set:
			return g[3]
		}
		return v
	})
	return out, !strings.Contains(rest, "$")
}

// FuzzExpand: Expand substitutes exactly the documented references (the
// environment's values verbatim, never substituted again), refuses any
// other "$", and changes nothing else. The one form it refuses that the
// syntax would read, ${NAME-a:-b}, is ambiguous across implementations.
func FuzzExpand(f *testing.F) {
	f.Add("image: ${REGISTRY:-ghcr.io/billfn}/x:${TAG-latest} $SET", "v$1")
	f.Add("${UNSET-a:-b} ${", "")
	f.Add("plain text, no references", "")
	f.Fuzz(func(t *testing.T, s, value string) {
		env := map[string]string{"SET": "v", "EMPTY": "", "FUZZ": value}
		lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
		got, err := Expand(s, lookup)
		want, ok := refExpand(s, lookup)
		if !strings.Contains(s, "$") && (err != nil || got != s) {
			t.Fatalf("Expand(%q) = %q, %v: text without $ changed", s, got, err)
		}
		switch {
		case err == nil && !ok:
			t.Fatalf("Expand(%q) = %q: accepted a $ that is no reference", s, got)
		case err == nil && got != want:
			t.Fatalf("Expand(%q) = %q, want %q", s, got, want)
		case err != nil && ok:
			for _, m := range refRefs.FindAllStringSubmatch(s, -1) {
				if m[2] == "-" && strings.Contains(m[3], ":-") {
					return
				}
			}
			t.Fatalf("Expand(%q) refused a documented reference: %v", s, err)
		}
	})
}

// FuzzParse: a stack file either fails to load or is a stack of openfaas
// functions, each with its name and valid trigger annotations; and what
// loads, written back as YAML, loads again and is written back the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1.0\nprovider:\n  name: openfaas\n  gateway: ${OPENFAAS_URL:-http://127.0.0.1:8080}\nfunctions:\n  aggregate-report:\n    lang: dockerfile\n    handler: .\n    image: ghcr.io/billfn/aggregate-report:latest\n    annotations:\n      topic: billing-events,payment-events,cron-function\n      schedule: '*/5 * * * *'\n      billfn.dev/batch-size: \"500\"\n      billfn.dev/types: billfn.invoice.*,billfn.payment.captured\n"))
	f.Add([]byte("provider: {name: openfaas, gateway: http://x}\nfunctions:\n  a: {lang: dockerfile}\n"))
	f.Add([]byte("provider: {name: openfaas}\nfunctions:\n  a: ~\n"))
	lookup := func(string) (string, bool) { return "", false }
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := Parse(raw, lookup)
		if err != nil {
			if s != nil {
				t.Fatalf("a stack alongside %v", err)
			}
			return
		}
		checkStack(t, s)
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("writing back %+v: %v", s, err)
		}
		if strings.Contains(string(out), "$") {
			return // it would be substituted again
		}
		back, err := Parse(out, lookup)
		if err != nil {
			t.Fatalf("%q loaded, written back as\n%s\nit does not: %v", raw, out, err)
		}
		// Compared as written: an empty map and an absent one are the same.
		again, err := yaml.Marshal(back)
		if err != nil || string(again) != string(out) {
			t.Fatalf("%q loaded, written back as\n%s\nloads differently, written back as\n%s", raw, out, again)
		}
		checkStack(t, back)
	})
}

func checkStack(t *testing.T, s *Stack) {
	t.Helper()
	if s.Provider.Name != ProviderName || (s.Version != "" && s.Version != "1.0") || len(s.Functions) == 0 {
		t.Fatalf("stack %+v", s)
	}
	for name, fn := range s.Functions {
		if fn == nil || fn.Name != name {
			t.Fatalf("function %q: %+v", name, fn)
		}
		sub, err := fn.Subscription()
		if err != nil {
			t.Fatalf("function %q loaded with %v", name, err)
		}
		if sub.BatchSize < 1 || sub.BatchSize > 1000 {
			t.Fatalf("function %q: batch size %d", name, sub.BatchSize)
		}
		if sub.BatchWait < 0 || sub.BatchWait > 10*time.Second || (sub.BatchWait > 0 && sub.BatchSize == 1) {
			t.Fatalf("function %q: batch wait %s with batch size %d", name, sub.BatchWait, sub.BatchSize)
		}
		for _, topic := range sub.Topics {
			if topic == "" || topic == CronTopic || topic != strings.TrimSpace(topic) {
				t.Fatalf("function %q: topic %q", name, topic)
			}
		}
		cron := strings.Contains(","+strings.ReplaceAll(fn.Annotations[AnnotationTopic], " ", "")+",", ","+CronTopic+",")
		if (sub.Schedule != "") != cron {
			t.Fatalf("function %q: schedule %q with topics %q", name, sub.Schedule, fn.Annotations[AnnotationTopic])
		}
		for _, typ := range sub.Types {
			if typ == "" || strings.ContainsAny(typ, " \t") || strings.Contains(strings.TrimSuffix(typ, ".*"), "*") {
				t.Fatalf("function %q: type filter %q", name, typ)
			}
		}
	}
}
