package testenv

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/platform"
)

// Party is one customer of an attack: its bearer token and its own
// resources.
type Party struct {
	// Token is the party's bearer token (a customer's).
	Token string
	// Own holds the party's resources, by kind ("account", "payment", …)
	// or, where a route takes two references of one kind (a transfer's
	// two accounts), by reference ("to_account_id"), which wins.
	Own map[string]string
}

// value is p's resource for reference ref of kind.
func (p Party) value(ref, kind string) (string, bool) {
	if v, ok := p.Own[ref]; ok {
		return v, true
	}
	v, ok := p.Own[kind]
	return v, ok
}

// Request is the valid part of a route's request that the route table
// does not describe: the members and parameters besides the references.
type Request struct {
	// Query parameters besides the "?name" references.
	Query url.Values
	// Body is the JSON body, nil for none. Every reference of the route's
	// Refs whose member is present (any value, nested as
	// "transfers/0/from_account_id") is set to the attacker's own
	// resource; the reference under attack is set to the victim's,
	// present or not.
	Body map[string]any
	// Header is sent as is. Every write gets a fresh Idempotency-Key
	// unless it sets one.
	Header http.Header
}

// Outcome is what an attack on one reference must get instead of 404.
type Outcome struct {
	// Status lists the answers the contract defines (403, 422, or 2xx for
	// a reference that may name someone else's resource, such as the
	// payee of a transfer).
	Status []int
	// VictimChanges allows the victim's state to change: paying into
	// someone else's account is the point of a transfer.
	VictimChanges bool
	// Reveals lists the victim's resources (keys of Victim.Own) an
	// answer may hold besides those the request sent: a transfer paid to
	// an account number names the account it paid.
	Reveals []string
}

// Attack describes the generated attack on one function's route table.
// Only Handler, Attacker, Victim and Snapshot are required.
type Attack struct {
	// Handler serves the route table (through the function's runtime, so
	// the answers are the ones a client gets).
	Handler http.Handler
	// Attacker (A) and Victim (B) are two customers. The victim needs a
	// resource of every kind a Customer route names; the attacker needs
	// one of every kind a route under attack also takes (the references
	// not under attack carry the attacker's own values).
	Attacker, Victim Party
	// Base returns the valid rest of rt's request when ref is under
	// attack ("" for the anonymous and wrong-role probes); nil means no
	// body and no other parameters.
	Base func(rt platform.Route, ref string) Request
	// Expect overrides the expected 404 for "PATTERN REF" (for example
	// "POST /transfers to_account_id").
	Expect map[string]Outcome
	// Snapshot returns the victim's state (balances, transfers, holds …);
	// it must be equal before and after every attack.
	Snapshot func(tb testing.TB) any
	// Private returns the victim's figures that no answer to the attacker
	// (or to no one) may hold, whatever its status or route, the 401s and
	// 403s of the access checks too: its balances, say. It is read after
	// each attack (one that pays the victim moves them), and each figure
	// is looked for as a whole number in the body, so each must be
	// distinctive: no request sends it and none of the attacker's own
	// figures equals it. Optional.
	Private func(tb testing.TB) []string
	// Shared holds the resources owned by nobody, by kind: the merchant's
	// catalog (a tax rate, a coupon) that every customer may name. There
	// is no victim's one to send, so a reference of a shared kind carries
	// this value in every request (unless Attacker.Own has one of its
	// own), and its attack is the attacker's own request: answered below
	// 500 (or as the route's Expect says), the victim's Snapshot unchanged
	// and nothing of the victim's in the body. Optional.
	Shared map[string]string
}

var wildcardRe = regexp.MustCompile(`\{([^}]*)\}`)

// AttackRoutes attacks every route of a function's route table, so a route
// added later is attacked without anyone writing a case for it:
//
//   - the table itself: every path wildcard ("{id}", not "{$}") has a Refs
//     entry, every Refs entry names a wildcard the pattern has, and every
//     Customer route has non-nil Refs (an explicit empty map for a route
//     that names nothing), so nobody can leave a reference undeclared;
//   - every answer the attack gets, whatever its status (a 401 or 403
//     problem document, a 404, a 4xx to a forged cursor), holds none of the
//     victim's resources but those its request sent (or the route's
//     Expect reveals), nor any of the victim's Private figures;
//   - without a token every route but Public ones answers 401 (a Delivery
//     route, without a token or a delivery signature) and writes nothing
//     (the Snapshot is unchanged);
//   - with the attacker's customer token, Privileged and Admin routes answer
//     403 and write nothing;
//   - on a Customer route, each reference in turn (path, query or body)
//     carries the victim's resource of its kind while the others carry the
//     attacker's own: the answer is 404 (or the route's Expect), the
//     victim's Snapshot is unchanged, and the body (a refusal's problem
//     document too) holds none of the victim's resources but those the
//     request itself sent, nor any of the victim's Private figures (its
//     balances). A kind the victim has no resource of fails the test:
//     write the fixture; a Shared kind (owned by nobody) is sent as is, and
//     its answer must be below 500 instead of 404;
//   - on a Customer GET route, the attacker's own request with a forged
//     "cursor" (the keyset shapes the lists use, their id not an id) is
//     answered below 500: a cursor is client input (a list that takes none
//     ignores it).
//
// A function's test builds two customers and hands over its table:
//
//	testenv.AttackRoutes(t, s.routeTable(), testenv.Attack{
//		Handler:  handler,
//		Attacker: testenv.Party{Token: tokA, Own: map[string]string{"account": acctA, "payment": payA}},
//		Victim:   testenv.Party{Token: tokB, Own: map[string]string{"account": acctB, "payment": payB}},
//		Base: func(rt platform.Route, ref string) testenv.Request {
//			if rt.Pattern == "POST /payments" {
//				return testenv.Request{Body: map[string]any{"account_id": "", "amount": 100, "currency": "USD"}}
//			}
//			return testenv.Request{}
//		},
//		Expect:   map[string]testenv.Outcome{"POST /payments/{id}/refunds {id}": {Status: []int{403}}},
//		Snapshot: func(tb testing.TB) any { return rowsOf(tb, acctB) },
//	})
func AttackRoutes(t *testing.T, routes []platform.Route, a Attack) {
	t.Helper()
	if a.Handler == nil || a.Snapshot == nil {
		t.Fatal("testenv.AttackRoutes: Attack needs a Handler and a Snapshot")
	}
	for _, rt := range routes {
		t.Run(rt.Pattern, func(t *testing.T) {
			if problems := TableProblems(rt); len(problems) > 0 {
				t.Fatalf("route table entry: %s", strings.Join(problems, "; "))
			}
			if rt.Access == platform.Public {
				return
			}
			t.Run("anonymous", func(t *testing.T) {
				before := a.Snapshot(t)
				req, sent := a.request(t, rt, "", "", "")
				code, body := a.send(req)
				if code != http.StatusUnauthorized {
					t.Errorf("without a token or a signature: %d, want 401: %s", code, body)
				}
				a.unchanged(t, before)
				a.revealsNothing(t, code, body, sent, nil)
			})
			if rt.Access == platform.Delivery {
				return
			}
			if rt.Access != platform.Customer {
				t.Run("customer", func(t *testing.T) {
					before := a.Snapshot(t)
					req, sent := a.request(t, rt, "", "", a.Attacker.Token)
					code, body := a.send(req)
					if code != http.StatusForbidden {
						t.Errorf("a customer on a %s route: %d, want 403: %s", rt.Access, code, body)
					}
					a.unchanged(t, before)
					a.revealsNothing(t, code, body, sent, nil)
				})
				return
			}
			for _, ref := range slices.Sorted(mapKeys(rt.Refs)) {
				t.Run(ref, func(t *testing.T) { a.attack(t, rt, ref) })
			}
			if rt.Method() == http.MethodGet {
				t.Run("forged cursor", func(t *testing.T) { a.forgedCursors(t, rt) })
			}
		})
	}
	for key := range a.Expect {
		pattern, ref := splitExpect(key)
		i := slices.IndexFunc(routes, func(rt platform.Route) bool { return rt.Pattern == pattern })
		if _, ok := routeAt(routes, i).Refs[ref]; !ok {
			t.Errorf("Expect[%q]: the route table has no such route and reference; a stale case hides nothing, remove it", key)
		}
	}
}

func routeAt(routes []platform.Route, i int) platform.Route {
	if i < 0 {
		return platform.Route{}
	}
	return routes[i]
}

func splitExpect(key string) (pattern, ref string) {
	i := strings.LastIndexByte(key, ' ')
	if i < 0 {
		return key, ""
	}
	return key[:i], key[i+1:]
}

// TableProblems lists what is wrong with one route table entry under the
// rules AttackRoutes enforces (empty when nothing is): a wildcard without
// a Refs entry, a Refs entry without its wildcard or without a kind, a
// Customer route with nil Refs.
func TableProblems(rt platform.Route) []string {
	var out []string
	if rt.Access == platform.Customer && rt.Refs == nil {
		out = append(out, "a Customer route with nil Refs: declare what it names (map[string]string{} for nothing)")
	}
	wild := map[string]bool{}
	for _, m := range wildcardRe.FindAllStringSubmatch(rt.Path(), -1) {
		name := strings.TrimSuffix(m[1], "...")
		if name == "$" {
			continue
		}
		wild[name] = true
		if _, found := rt.Refs["{"+name+"}"]; !found {
			out = append(out, fmt.Sprintf("wildcard {%s} has no Refs entry: name the kind of resource it takes", name))
		}
	}
	for _, ref := range slices.Sorted(mapKeys(rt.Refs)) {
		if rt.Refs[ref] == "" {
			out = append(out, fmt.Sprintf("Refs[%q] names no kind", ref))
		}
		if strings.HasPrefix(ref, "{") && !wild[strings.TrimSuffix(strings.Trim(ref, "{}"), "...")] {
			out = append(out, fmt.Sprintf("Refs[%q]: the pattern has no such wildcard", ref))
		}
	}
	return out
}

// attack sends rt with the victim's resource in ref and checks the answer.
func (a *Attack) attack(t *testing.T, rt platform.Route, ref string) {
	kind := rt.Refs[ref]
	shared, isShared := a.Shared[kind]
	victimID, ok := a.Victim.value(ref, kind)
	if isShared {
		victimID, ok = shared, true
	}
	if !ok || victimID == "" {
		t.Fatalf("no victim fixture of kind %q for %s: give the victim one (Victim.Own[%q])", kind, ref, kind)
	}
	want := Outcome{Status: []int{http.StatusNotFound}}
	o, expected := a.Expect[rt.Pattern+" "+ref]
	if expected {
		want = o
	}
	before := a.Snapshot(t)
	req, sent := a.request(t, rt, ref, victimID, a.Attacker.Token)
	code, body := a.send(req)
	switch {
	case isShared && !expected:
		if code >= 500 {
			t.Errorf("the shared %s %s in %s: %d, want below 500: %s", kind, victimID, ref, code, body)
		}
	case !slices.Contains(want.Status, code):
		t.Errorf("the victim's %s in %s: %d, want %v: %s", kind, ref, code, want.Status, body)
	}
	if !want.VictimChanges {
		a.unchanged(t, before)
	}
	allowed := map[string]bool{}
	for _, k := range want.Reveals {
		allowed[a.Victim.Own[k]] = true
	}
	a.revealsNothing(t, code, body, sent, allowed)
}

// revealsNothing fails t when body, an answer to the attacker (or to no
// one), holds one of the victim's resources — but those the request sent
// (an echo) and those allowed — or one of its Private figures, whatever
// its status. Every answer of the attack is looked at, a refusal's problem
// document too: "must be the invoice's account, <the victim's>" in a 422,
// or a balance in a 401, leaks as much as a 200 would.
func (a *Attack) revealsNothing(t *testing.T, code int, body []byte, sent string, allowed map[string]bool) {
	t.Helper()
	reported := map[string]bool{}
	for _, k := range slices.Sorted(mapKeys(a.Victim.Own)) {
		v := a.Victim.Own[k]
		if v == "" || allowed[v] || reported[v] || strings.Contains(sent, v) || !bytes.Contains(body, []byte(v)) {
			continue
		}
		reported[v] = true
		t.Errorf("a %d body holds the victim's %s %s: %s", code, k, v, body)
	}
	if a.Private != nil {
		for _, v := range a.Private(t) {
			if holdsNumber(body, v) {
				t.Errorf("a %d body holds the victim's private figure %s: %s", code, v, body)
			}
		}
	}
}

// holdsNumber reports whether body holds the digits n as a whole number
// (no digit just before or after it).
func holdsNumber(body []byte, n string) bool {
	for i := 0; ; {
		j := bytes.Index(body[i:], []byte(n))
		if j < 0 {
			return false
		}
		j += i
		end := j + len(n)
		if (j == 0 || !isDigit(body[j-1])) && (end == len(body) || !isDigit(body[end])) {
			return true
		}
		i = j + 1
	}
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// forgedCursors are cursors no list returned: the shapes billfn's lists
// encode (httpx.DecodeCursor: base64url JSON) with a position that is not
// an id, as a client can send them.
var forgedCursors = []string{
	`{"t":"2020-01-01T00:00:00Z","id":"not-an-id"}`,
	`{"t":"2020-01-01T00:00:00Z","id":""}`,
	`{"id":"not-an-id"}`,
	`{"id":"00000000-0000-0000-0000-00000000000g"}`,
}

// forgedCursors sends rt as the attacker, on its own resources, with each
// forged cursor: a 4xx or a page, never a 5xx.
func (a *Attack) forgedCursors(t *testing.T, rt platform.Route) {
	for _, c := range forgedCursors {
		req, _ := a.request(t, rt, "", "", a.Attacker.Token)
		q := req.URL.Query()
		q.Set("cursor", base64.RawURLEncoding.EncodeToString([]byte(c)))
		req.URL.RawQuery = q.Encode()
		req.RequestURI = req.URL.RequestURI()
		code, body := a.send(req)
		if code >= 500 {
			t.Errorf("cursor %s: %d, want a 4xx (or a page): %s", c, code, body)
		}
		a.revealsNothing(t, code, body, req.URL.RequestURI(), nil)
	}
}

// unchanged fails t when the victim's state is no longer before.
func (a *Attack) unchanged(t *testing.T, before any) {
	t.Helper()
	if after := a.Snapshot(t); !reflect.DeepEqual(before, after) {
		b, _ := json.Marshal(before)
		f, _ := json.Marshal(after)
		t.Errorf("the victim's state changed:\nbefore %s\nafter  %s", b, f)
	}
}

// request builds rt's request with token ("" for none): the victim's id in
// ref, the attacker's own resources in the other references. It returns
// the request and what it sent (path, query and body), for telling an echo
// from a leak.
func (a *Attack) request(t *testing.T, rt platform.Route, ref, victimID, token string) (*http.Request, string) {
	t.Helper()
	var base Request
	if a.Base != nil {
		base = a.Base(rt, ref)
	}
	own := func(r string) string {
		if r == ref {
			return victimID
		}
		v, ok := a.Attacker.value(r, rt.Refs[r])
		if s, shared := a.Shared[rt.Refs[r]]; shared && !ok {
			v, ok = s, true
		}
		if (!ok || v == "") && ref == "" {
			return uuid.NewString() // a probe of the access check: any well-formed id
		}
		if !ok || v == "" {
			t.Fatalf("no attacker fixture of kind %q for %s (Attacker.Own[%q])", rt.Refs[r], r, rt.Refs[r])
		}
		return v
	}
	path := wildcardRe.ReplaceAllStringFunc(rt.Path(), func(w string) string {
		name := strings.TrimSuffix(strings.Trim(w, "{}"), "...")
		if name == "$" {
			return ""
		}
		return url.PathEscape(own("{" + name + "}"))
	})
	q := url.Values{}
	for k, vs := range base.Query {
		q[k] = slices.Clone(vs)
	}
	body := clone(base.Body)
	for r := range rt.Refs {
		switch {
		case strings.HasPrefix(r, "{"):
		case strings.HasPrefix(r, "?"):
			q.Set(r[1:], own(r))
		case r == ref || hasMember(body, r):
			if body == nil {
				body = map[string]any{}
			}
			if err := setMember(body, r, own(r)); err != nil {
				t.Fatalf("Refs[%q]: %v", r, err)
			}
		}
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	req := httptest.NewRequest(rt.Method(), path, bytes.NewReader(raw))
	for k, vs := range base.Header {
		req.Header[k] = slices.Clone(vs)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if m := rt.Method(); m != http.MethodGet && m != http.MethodHead && req.Header.Get("Idempotency-Key") == "" {
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, path + string(raw)
}

func (a *Attack) send(req *http.Request) (int, []byte) {
	rec := httptest.NewRecorder()
	a.Handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func clone(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	raw, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// hasMember reports whether the slash-separated member path exists in body.
func hasMember(body map[string]any, path string) bool {
	var cur any = body
	for _, part := range strings.Split(path, "/") {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[part]
			if !ok {
				return false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(c) {
				return false
			}
			cur = c[i]
		default:
			return false
		}
	}
	return true
}

// setMember sets the slash-separated member path of body, creating objects
// on the way (arrays must already hold the index).
func setMember(body map[string]any, path, v string) error {
	parts := strings.Split(path, "/")
	var cur any = body
	for i, part := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				c[part] = v
				return nil
			}
			next, ok := c[part]
			if !ok {
				next = map[string]any{}
				c[part] = next
			}
			cur = next
		case []any:
			n, err := strconv.Atoi(part)
			if err != nil || n < 0 || n >= len(c) {
				return fmt.Errorf("the base body has no element %q", strings.Join(parts[:i+1], "/"))
			}
			if last {
				c[n] = v
				return nil
			}
			cur = c[n]
		default:
			return fmt.Errorf("the base body's %q is not an object", strings.Join(parts[:i], "/"))
		}
	}
	return nil
}
