// Package archcheck holds the import rules of billfn's layout (issue 16),
// checked from `go list -json ./...` so a new package cannot slip past
// them:
//
//   - functions are independent: no function imports another;
//   - shared/ is a library: it imports no function and nothing of cmd/;
//   - cmd/ holds tools and the local stack: it imports no function;
//   - a function's domain package knows neither HTTP nor SQL: no package of
//     functions/<name>/ but store, api, main and the named adapters imports
//     net/http, and
//   - SQL has one home: in functions/, only store packages import pgx.
//
// Each failure names its rule.
package archcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/billfn/billfn"

type pkg struct {
	ImportPath   string
	Name         string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// imports are the package's own imports and, with tests, its tests'.
func (p pkg) imports(tests bool) []string {
	out := append([]string(nil), p.Imports...)
	if tests {
		out = append(append(out, p.TestImports...), p.XTestImports...)
	}
	return out
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func list(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-json", "./...")
	cmd.Dir = repoRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages: not the billfn tree", len(pkgs))
	}
	return pkgs
}

// function returns the function a package belongs to and the package's
// path inside it ("" for the function's main package).
func function(path string) (name, sub string, ok bool) {
	rest, ok := strings.CutPrefix(path, module+"/functions/")
	if !ok {
		return "", "", false
	}
	name, sub, _ = strings.Cut(rest, "/")
	return name, sub, true
}

func isPgx(path string) bool {
	return path == "github.com/jackc/pgx" || strings.HasPrefix(path, "github.com/jackc/pgx/")
}

// adapters are packages of a function that talk to the outside world over
// HTTP for its domain (a payment gateway, another function's API) or
// render documents: neither domain nor store, they may import net/http
// (never pgx: that is the store's). Each is named here, with why, so a new
// one is a decision.
var adapters = map[string]string{
	"capture-payment/gateway": "the payment gateways (Stripe, the sandbox) over HTTP",
	"capture-payment/remote":  "process-transaction's and generate-invoice's APIs, read through over HTTP",
	"generate-invoice/render": "invoice documents (HTML, PDF) served by the api package",
}

// pending are function packages that do not yet follow the domain rules
// because their function's reshaping (issue 16) has not reached them. Each
// entry is one known exception; anything not listed fails. Empty since
// handle-webhook's event handlers took a store.Tx: keep it so.
var pending = map[string]string{}

type rule struct {
	name  string
	tests bool // test files too
	check func(p pkg, imp string) bool
}

// violates reports whether p importing imp breaks the rule.
var rules = []rule{
	{"no function imports another function", true, func(p pkg, imp string) bool {
		from, _, ok := function(p.ImportPath)
		to, _, ok2 := function(imp)
		return ok && ok2 && from != to
	}},
	{"shared/ imports no function and nothing of cmd/", true, func(p pkg, imp string) bool {
		if !strings.HasPrefix(p.ImportPath, module+"/shared/") {
			return false
		}
		return strings.HasPrefix(imp, module+"/functions/") || strings.HasPrefix(imp, module+"/cmd/")
	}},
	{"cmd/ imports no function", true, func(p pkg, imp string) bool {
		return strings.HasPrefix(p.ImportPath, module+"/cmd/") && strings.HasPrefix(imp, module+"/functions/")
	}},
	{"a domain package does not import net/http (only store, api, main and the named adapters may)", false, func(p pkg, imp string) bool {
		fn, sub, ok := function(p.ImportPath)
		if !ok || sub == "" || (imp != "net/http" && !strings.HasPrefix(imp, "net/http/")) {
			return false
		}
		top, _, _ := strings.Cut(sub, "/")
		_, adapter := adapters[fn+"/"+top]
		return top != "store" && top != "api" && !adapter
	}},
	// This one also keeps pgx out of every domain package.
	{"in functions/, only store packages import pgx (SQL has one home)", false, func(p pkg, imp string) bool {
		_, sub, ok := function(p.ImportPath)
		if !ok || !isPgx(imp) {
			return false
		}
		top, _, _ := strings.Cut(sub, "/")
		return top != "store"
	}},
}

// violations applies the rules to pkgs.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		for _, r := range rules {
			seen := map[string]bool{}
			for _, imp := range p.imports(r.tests) {
				if seen[imp] || !r.check(p, imp) {
					continue
				}
				seen[imp] = true
				out = append(out, fmt.Sprintf("%s: %s imports %s", r.name, strings.TrimPrefix(p.ImportPath, module+"/"), imp))
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestImportRules(t *testing.T) {
	found := violations(list(t))
	known := map[string]bool{}
	for _, v := range found {
		if _, ok := pending[v]; ok {
			known[v] = true
			continue
		}
		t.Error(v)
	}
	for v := range pending {
		if !known[v] {
			t.Logf("pending lists %q, which no longer happens: remove it", v)
		}
	}
}

// The rules must be able to fail: each is broken by a made-up package.
func TestEachRuleCanFail(t *testing.T) {
	fake := []pkg{
		{ImportPath: module + "/functions/a/api", Imports: []string{module + "/functions/b/store"}},
		{ImportPath: module + "/shared/x", Imports: []string{module + "/cmd/internal/gateway"}},
		{ImportPath: module + "/cmd/tool", XTestImports: []string{module + "/functions/a/api"}},
		{ImportPath: module + "/functions/a/ledger", Imports: []string{"net/http"}},
		{ImportPath: module + "/functions/a/api", Imports: []string{"github.com/jackc/pgx/v5"}},
		{ImportPath: module + "/functions/capture-payment/gateway", Imports: []string{"net/http", "github.com/jackc/pgx/v5/pgxpool"}},
		// Allowed: a store with pgx, an api with net/http, a domain test
		// with net/http/httptest only in its tests, shared with pgx.
		{ImportPath: module + "/functions/a/store", Imports: []string{"github.com/jackc/pgx/v5"}},
		{ImportPath: module + "/functions/a/api", Imports: []string{"net/http", module + "/functions/a/ledger"}},
		{ImportPath: module + "/functions/a/ledger", TestImports: []string{"net/http/httptest"}},
		{ImportPath: module + "/shared/postgres", Imports: []string{"github.com/jackc/pgx/v5"}},
	}
	got := violations(fake)
	want := []string{
		"a domain package does not import net/http (only store, api, main and the named adapters may): functions/a/ledger imports net/http",
		"cmd/ imports no function: cmd/tool imports " + module + "/functions/a/api",
		"in functions/, only store packages import pgx (SQL has one home): functions/a/api imports github.com/jackc/pgx/v5",
		"in functions/, only store packages import pgx (SQL has one home): functions/capture-payment/gateway imports github.com/jackc/pgx/v5/pgxpool",
		"no function imports another function: functions/a/api imports " + module + "/functions/b/store",
		"shared/ imports no function and nothing of cmd/: shared/x imports " + module + "/cmd/internal/gateway",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
