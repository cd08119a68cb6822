package stackfile

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
)

// root is the repository root, seen from this package.
const root = "../../.."

func loadRepoStack(t *testing.T) *Stack {
	t.Helper()
	s, err := Load(filepath.Join(root, "stack.yml"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("stack.yml: %v", err)
	}
	return s
}

func TestStackHasAnEntryForEveryFunctionFolderAndAFolderForEveryEntry(t *testing.T) {
	s := loadRepoStack(t)
	entries, err := os.ReadDir(filepath.Join(root, "functions"))
	if err != nil {
		t.Fatal(err)
	}
	var folders []string
	for _, e := range entries {
		if e.IsDir() {
			folders = append(folders, e.Name())
		}
	}
	for _, f := range folders {
		if _, ok := s.Functions[f]; !ok {
			t.Errorf("functions/%s has no entry in stack.yml", f)
		}
	}
	for _, name := range s.Names() {
		if !slices.Contains(folders, name) {
			t.Errorf("stack.yml declares %s but functions/%s does not exist", name, name)
		}
	}
}

func TestStackFunctionsBuildFromTheRootDockerfile(t *testing.T) {
	s := loadRepoStack(t)
	if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		t.Fatalf("the root Dockerfile: %v", err)
	}
	for _, name := range s.Names() {
		f := s.Functions[name]
		if f.Lang != "dockerfile" {
			t.Errorf("%s: lang %q, want dockerfile", name, f.Lang)
		}
		if f.Handler != "." {
			t.Errorf("%s: handler %q, want . (the root Dockerfile builds every function)", name, f.Handler)
		}
		if f.BuildArgs["FUNCTION"] != name {
			t.Errorf("%s: build_args.FUNCTION = %q, want the function's own name", name, f.BuildArgs["FUNCTION"])
		}
		if f.Dir() != filepath.Join("functions", name) {
			t.Errorf("%s: builds from %s", name, f.Dir())
		}
		if want := "localhost:5001/billfn-" + name + ":latest"; f.Image != want {
			t.Errorf("%s: image %q, want %q with the default REGISTRY and TAG", name, f.Image, want)
		}
		if !f.ReadOnlyRootFilesystem {
			t.Errorf("%s: readonly_root_filesystem must be true", name)
		}
		if f.Limits == nil || f.Limits.Memory == "" || f.Limits.CPU == "" || f.Requests == nil || f.Requests.Memory == "" || f.Requests.CPU == "" {
			t.Errorf("%s: limits and requests need memory and cpu", name)
		}
		if f.Annotations["com.openfaas.health.http.path"] != "/_/health" || f.Annotations["com.openfaas.ready.http.path"] != "/_/ready" {
			t.Errorf("%s: health paths must be /_/health and /_/ready (shared/server)", name)
		}
		if f.Annotations["prometheus.io.scrape"] != "true" {
			t.Errorf("%s: prometheus.io.scrape must be \"true\"", name)
		}
	}
}

func TestStackImagesFollowRegistryAndTag(t *testing.T) {
	env := map[string]string{"REGISTRY": "ghcr.io/acme", "TAG": "v1.2.3"}
	s, err := Load(filepath.Join(root, "stack.yml"), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range s.Names() {
		if want := "ghcr.io/acme/billfn-" + name + ":v1.2.3"; s.Functions[name].Image != want {
			t.Errorf("%s: image %q, want %q", name, s.Functions[name].Image, want)
		}
	}
}

func TestStackSubscriptionsAreTheEventContract(t *testing.T) {
	// docs/events.md: who consumes what.
	want := map[string][]string{
		"process-transaction": {events.TopicTransaction},
		"generate-invoice":    {events.TopicUser, events.TopicBilling, events.TopicPayment},
		"capture-payment":     {events.TopicUser, events.TopicBilling, events.TopicPayment},
		"handle-webhook":      {events.TopicUser, events.TopicBilling, events.TopicTransaction, events.TopicPayment},
		"aggregate-report":    {events.TopicUser, events.TopicBilling, events.TopicTransaction, events.TopicPayment},
	}
	s := loadRepoStack(t)
	for _, name := range s.Names() {
		sub, err := s.Functions[name].Subscription()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := slices.Clone(sub.Topics)
		sort.Strings(got)
		w := slices.Clone(want[name])
		sort.Strings(w)
		if !slices.Equal(got, w) {
			t.Errorf("%s subscribes to %v, the contract says %v", name, got, w)
		}
		for _, topic := range sub.Topics {
			if _, ok := events.Topics[topic]; !ok {
				t.Errorf("%s: topic %q is not one of shared/events.Topics", name, topic)
			}
		}
		if sub.Schedule == "" {
			t.Errorf("%s has no schedule: its outbox would only be swept by the fast path", name)
		} else if _, err := cron.ParseStandard(sub.Schedule); err != nil {
			t.Errorf("%s: schedule %q: %v", name, sub.Schedule, err)
		}
		wantBatch, wantWait := 1, time.Duration(0)
		switch name {
		case "aggregate-report":
			// its ingestion target needs batches of up to 500; a wait of
			// 100 ms as the others', not 1 s, whose 500 ms fetches sent it
			// half a second of events at once (docs/platform.md, Batching)
			wantBatch, wantWait = 500, 100*time.Millisecond
		case "generate-invoice", "handle-webhook", "process-transaction", "capture-payment":
			// follow-up work where 100 ms does not matter but a request
			// and a transaction per event would (capture-payment's
			// gateway updates: beside the gateway's own round trip)
			wantBatch, wantWait = 100, 100*time.Millisecond
		}
		if sub.BatchSize != wantBatch || sub.BatchWait != wantWait {
			t.Errorf("%s: batch size %d, wait %s; want %d, %s", name, sub.BatchSize, sub.BatchWait, wantBatch, wantWait)
		}
		// The trigger skips types a function does not list: a handled
		// type missing here would be an event the function never sees.
		if name == "aggregate-report" {
			// every fact its rollups aggregate, and nothing else: checked
			// against rollup.Consumes by functions/aggregate-report's
			// TestStackDeliversExactlyWhatTheRollupsConsume (cmd/ imports
			// no function)
			continue
		}
		if got := strings.Join(sub.Types, ","); got != strings.Join(wantTypes[name], ",") {
			t.Errorf("%s handles %v (docs/events.md), stack.yml lists %v", name, wantTypes[name], sub.Types)
		}
	}
}

// wantTypes is who handles what, from docs/events.md (aggregate-report:
// what its rollups consume, checked in functions/aggregate-report).
var wantTypes = map[string][]string{
	"process-transaction": {"billfn.transaction.requested", "billfn.hold.capture_requested", "billfn.hold.void_requested"},
	"generate-invoice": {"billfn.account.created", "billfn.account.updated",
		"billfn.invoice.requested", "billfn.notification.requested", "billfn.payment.captured", "billfn.payment.failed", "billfn.refund.succeeded",
		"billfn.refund.failed", "billfn.webhook_endpoint.disabled"},
	"capture-payment": {"billfn.account.created", "billfn.account.updated", "billfn.invoice.created", "billfn.invoice.finalized",
		"billfn.invoice.overdue", "billfn.invoice.paid", "billfn.invoice.voided", "billfn.invoice.uncollectible",
		"billfn.invoice.payment_retry_requested", "billfn.invoice.payment_unapplied", "billfn.payment.gateway_updated"},
	// the payment events that teach its payment map, and every fact a
	// merchant's webhook endpoint may subscribe to (outgoing webhooks)
	"handle-webhook": {"billfn.payment.created", "billfn.payment.updated", "billfn.payment.authorized", "billfn.payment.captured",
		"billfn.payment.failed", "billfn.payment.canceled", "billfn.payment.disputed", "billfn.refund.*",
		"billfn.invoice.created", "billfn.invoice.finalized", "billfn.invoice.paid", "billfn.invoice.voided", "billfn.invoice.overdue",
		"billfn.invoice.uncollectible", "billfn.invoice.payment_retry_requested", "billfn.invoice.payment_unapplied",
		"billfn.subscription.*", "billfn.notification.*", "billfn.transaction.posted", "billfn.transaction.rejected",
		"billfn.hold.*", "billfn.account.*", "billfn.webhook_endpoint.*"},
}

func TestSubscriptionWantsOnlyListedTypes(t *testing.T) {
	sub, err := ParseSubscription(map[string]string{AnnotationTopic: "transaction-events", AnnotationTypes: "billfn.transaction.requested, billfn.hold.*"})
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[string]bool{"billfn.transaction.requested": true, "billfn.hold.created": true, "billfn.hold.": true,
		"billfn.transaction.posted": false, "billfn.holding": false, "": true} {
		if got := sub.Wants(typ); got != want {
			t.Errorf("Wants(%q) = %v, want %v", typ, got, want)
		}
	}
	if all, _ := ParseSubscription(map[string]string{AnnotationTopic: "x"}); !all.Wants("anything") {
		t.Error("a function without billfn.dev/types must get every record")
	}
	if _, err := ParseSubscription(map[string]string{AnnotationTypes: "billfn.*.posted"}); err == nil {
		t.Error("a wildcard in the middle was accepted")
	}
}

// secretTags returns the secret names read through `secret:"..."` struct
// tags of t, recursively, with whether each is only needed for another
// JWT algorithm than HS256.
func secretTags(t reflect.Type, out map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name := f.Tag.Get("secret"); name != "" {
			out[name] = true
		}
		if f.Type.Kind() == reflect.Struct {
			secretTags(f.Type, out)
		}
	}
}

// sourceSecrets finds `secret:"..."` tags in the Go files of dir.
func sourceSecrets(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	matches, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var out []string
	for _, file := range matches {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			field, ok := n.(*ast.Field)
			if !ok || field.Tag == nil {
				return true
			}
			tag, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				return true
			}
			if name := reflect.StructTag(tag).Get("secret"); name != "" {
				out = append(out, name)
			}
			return true
		})
	}
	return out
}

func TestStackDeclaresEverySecretAFunctionReads(t *testing.T) {
	common := map[string]bool{}
	secretTags(reflect.TypeFor[platform.Config](), common)
	s := loadRepoStack(t)
	for _, name := range s.Names() {
		f := s.Functions[name]
		reads := map[string]bool{}
		for k := range common {
			reads[k] = true
		}
		// jwt-secret serves HS256; jwt-public-key RS256 and EdDSA.
		if f.Environment["JWT_ALG"] == "HS256" {
			delete(reads, "jwt-public-key")
		} else {
			delete(reads, "jwt-secret")
		}
		for _, sec := range sourceSecrets(t, filepath.Join(root, f.Dir())) {
			reads[sec] = true
		}
		for sec := range reads {
			if !slices.Contains(f.Secrets, sec) {
				t.Errorf("%s reads secret %q but stack.yml does not declare it", name, sec)
			}
		}
		if len(f.Secrets) != len(slices.Compact(slices.Sorted(slices.Values(f.Secrets)))) {
			t.Errorf("%s declares a secret twice: %v", name, f.Secrets)
		}
	}
}

func TestStackUsesOnlyPortableSubstitutions(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "stack.yml"))
	if err != nil {
		t.Fatal(err)
	}
	portable := regexp.MustCompile(`\$\{[A-Z][A-Z0-9_]*:-[^}$]*\}`)
	rest := portable.ReplaceAllString(string(raw), "")
	if i := strings.IndexByte(rest, '$'); i >= 0 {
		t.Errorf("stack.yml uses $ outside ${NAME:-default}: %q", rest[max(0, i-20):min(len(rest), i+20)])
	}
}

func TestStackDecodingIsStrict(t *testing.T) {
	bad := []struct{ name, doc string }{
		{"unknown function key", "provider: {name: openfaas, gateway: http://x}\nfunctions:\n  a:\n    lang: dockerfile\n    secret: [x]\n"},
		{"unknown top-level key", "provider: {name: openfaas, gateway: http://x}\nfuncs: {}\n"},
		{"wrong provider", "provider: {name: faas, gateway: http://x}\nfunctions:\n  a: {lang: dockerfile}\n"},
		{"wrong version", "version: 2.0\nprovider: {name: openfaas, gateway: http://x}\nfunctions:\n  a: {lang: dockerfile}\n"},
		{"schedule without cron-function", "provider: {name: openfaas, gateway: http://x}\nfunctions:\n  a:\n    annotations: {topic: billing-events, schedule: '* * * * *'}\n"},
		{"cron-function without schedule", "provider: {name: openfaas, gateway: http://x}\nfunctions:\n  a:\n    annotations: {topic: cron-function}\n"},
		{"batch size not a number", "provider: {name: openfaas, gateway: http://x}\nfunctions:\n  a:\n    annotations: {topic: a, billfn.dev/batch-size: many}\n"},
		{"batch wait not a duration", "provider: {name: openfaas, gateway: http://x}\nfunctions:\n  a:\n    annotations: {topic: a, billfn.dev/batch-size: '10', billfn.dev/batch-wait: soon}\n"},
		{"batch wait too long", "provider: {name: openfaas, gateway: http://x}\nfunctions:\n  a:\n    annotations: {topic: a, billfn.dev/batch-size: '10', billfn.dev/batch-wait: 1m}\n"},
		{"batch wait without batches", "provider: {name: openfaas, gateway: http://x}\nfunctions:\n  a:\n    annotations: {topic: a, billfn.dev/batch-wait: 1s}\n"},
	}
	for _, c := range bad {
		if _, err := Parse([]byte(c.doc), nil); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestExpandFollowsEnvsubst(t *testing.T) {
	env := map[string]string{"SET": "v", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cases := map[string]string{
		"${SET}":              "v",
		"${UNSET}":            "",
		"${UNSET:-d}":         "d",
		"${EMPTY:-d}":         "d",
		"${EMPTY-d}":          "",
		"${UNSET-d}":          "d",
		"${SET:-d}":           "v",
		"$SET/x":              "v/x",
		"a ${UNSET:-h:1/p} b": "a h:1/p b",
		"${UNSET:-x-y}":       "x-y",
	}
	for in, want := range cases {
		got, err := Expand(in, lookup)
		if err != nil || got != want {
			t.Errorf("Expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"${", "${1X}", "$ alone", "${A B}"} {
		if _, err := Expand(bad, lookup); err == nil {
			t.Errorf("Expand(%q) accepted", bad)
		}
	}
}
