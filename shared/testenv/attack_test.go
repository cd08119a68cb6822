package testenv

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/platform"
)

func TestTableProblemsCatchesWhatAnAttackWouldMiss(t *testing.T) {
	ok := http.NotFoundHandler()
	for _, c := range []struct {
		rt   platform.Route
		want string // a fragment of the problem, "" for none
	}{
		{platform.Route{Pattern: "GET /things/{id}", Access: platform.Customer, Refs: map[string]string{"{id}": "thing"}, Handler: ok}, ""},
		{platform.Route{Pattern: "POST /{$}", Access: platform.Delivery, Handler: ok}, ""},
		{platform.Route{Pattern: "GET /things", Access: platform.Customer, Refs: map[string]string{}, Handler: ok}, ""},
		{platform.Route{Pattern: "GET /things/{id}", Access: platform.Customer, Refs: map[string]string{}, Handler: ok}, "wildcard {id} has no Refs entry"},
		{platform.Route{Pattern: "GET /things/{id}", Access: platform.Admin, Handler: ok}, "wildcard {id} has no Refs entry"},
		{platform.Route{Pattern: "POST /things", Access: platform.Customer, Handler: ok}, "nil Refs"},
		{platform.Route{Pattern: "GET /things", Access: platform.Customer, Refs: map[string]string{"{id}": "thing"}, Handler: ok}, "no such wildcard"},
		{platform.Route{Pattern: "GET /files/{path...}", Access: platform.Public, Refs: map[string]string{"{path}": "asset"}, Handler: ok}, ""},
		{platform.Route{Pattern: "GET /things", Access: platform.Customer, Refs: map[string]string{"?account_id": ""}, Handler: ok}, "names no kind"},
	} {
		got := strings.Join(TableProblems(c.rt), "; ")
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s %v: problems %q, want %q", c.rt.Pattern, c.rt.Refs, got, c.want)
		}
	}
}

func TestSetMemberFillsNestedReferences(t *testing.T) {
	body := map[string]any{"transfers": []any{map[string]any{"from_account_id": ""}}}
	if !hasMember(body, "transfers/0/from_account_id") || hasMember(body, "transfers/1/from_account_id") {
		t.Fatal("hasMember")
	}
	if err := setMember(body, "transfers/0/from_account_id", "B"); err != nil {
		t.Fatal(err)
	}
	if err := setMember(body, "meta/account_id", "A"); err != nil {
		t.Fatal(err)
	}
	if err := setMember(body, "transfers/3/to_account_id", "A"); err == nil {
		t.Error("an index beyond the base body's array was accepted")
	}
	if body["transfers"].([]any)[0].(map[string]any)["from_account_id"] != "B" || body["meta"].(map[string]any)["account_id"] != "A" {
		t.Errorf("body %v", body)
	}
}

// A Shared kind (the merchant's catalog) has no victim's resource: every
// request carries the shared value, and its attack is the attacker's own
// request, which may succeed.
func TestSharedKindsAreSentAsIsAndNeedNoVictim(t *testing.T) {
	var rates []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		rates = append(rates, r.URL.Query().Get("rate"))
		if strings.TrimPrefix(r.URL.Path, "/things/") != "mine" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{"id":"mine","rate":"` + r.URL.Query().Get("rate") + `"}`))
	})
	AttackRoutes(t, []platform.Route{{Pattern: "GET /things/{id}", Access: platform.Customer,
		Refs: map[string]string{"{id}": "thing", "?rate": "rate"}, Handler: h}}, Attack{
		Handler:  h,
		Attacker: Party{Token: "a", Own: map[string]string{"thing": "mine"}},
		Victim:   Party{Token: "b", Own: map[string]string{"thing": "theirs"}},
		Shared:   map[string]string{"rate": "R1"},
		Snapshot: func(testing.TB) any { return nil },
	})
	if len(rates) == 0 {
		t.Fatal("no request was sent")
	}
	for _, r := range rates {
		if r != "R1" {
			t.Errorf("a request carried rate %q, want the shared R1", r)
		}
	}
}

// leakyRefusals is a table whose every answer holds the victim's private
// figure 4817293 and its resource "theirs": the 401 to no one and the 403
// to a customer on the admin's route, the customer route's 404, and its
// 400 to a forged cursor.
func leakyRefusals(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		leak := `,"detail":"the balance of theirs is 4817293"}`
		switch {
		case r.Header.Get("Authorization") == "":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"unauthorized"` + leak))
		case strings.HasPrefix(r.URL.Path, "/admin/"):
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"code":"forbidden"` + leak))
		case r.URL.Query().Has("cursor"):
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"code":"invalid_cursor"` + leak))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"code":"not_found"` + leak))
		}
	})
	AttackRoutes(t, []platform.Route{
		{Pattern: "GET /admin/things/{id}", Access: platform.Admin, Refs: map[string]string{"{id}": "thing"}, Handler: h},
		{Pattern: "GET /things/{id}", Access: platform.Customer, Refs: map[string]string{"{id}": "thing"}, Handler: h},
	}, Attack{
		Handler:  h,
		Attacker: Party{Token: "a", Own: map[string]string{"thing": "mine"}},
		Victim:   Party{Token: "b", Own: map[string]string{"thing": "theirs"}},
		Snapshot: func(testing.TB) any { return nil },
		Private:  func(testing.TB) []string { return []string{"4817293"} },
	})
}

// TestAttackLeakyRefusals is leakyRefusals, run only as the child process
// of TestAttackLooksAtEveryAnswer (its failures are the point).
func TestAttackLeakyRefusals(t *testing.T) {
	if os.Getenv("BILLFN_TESTENV_LEAKY_REFUSALS") == "" {
		t.Skip("the child of TestAttackLooksAtEveryAnswer")
	}
	leakyRefusals(t)
}

// Every answer the attack gets is looked at for the victim's figures and
// resources, whatever its status: a 401 or 403 problem document, or a 4xx
// to a forged cursor, leaks as much as a 200. Before, only the answers to
// the victim's references on customer routes were, and each function's
// test wrapped its handler to look at the rest itself (handle-webhook's).
// AttackRoutes fails the t it is given, so the leaky table is attacked in
// a child process and its failures are read.
func TestAttackLooksAtEveryAnswer(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestAttackLeakyRefusals$", "-test.v")
	cmd.Env = append(os.Environ(), "BILLFN_TESTENV_LEAKY_REFUSALS=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the attack on a table whose every answer leaks passed:\n%s", out)
	}
	for _, sub := range []string{"GET_/admin/things/{id}/anonymous", "GET_/admin/things/{id}/customer",
		"GET_/things/{id}/anonymous", "GET_/things/{id}/{id}", "GET_/things/{id}/forged_cursor"} {
		if !strings.Contains(string(out), "--- FAIL: TestAttackLeakyRefusals/"+sub+" ") {
			t.Errorf("the attack did not fail %s:\n%s", sub, out)
		}
	}
	// Once per answer that holds it: five probes hold the figure, four
	// (all but the one that sent it) the resource.
	for what, least := range map[string]int{"private figure 4817293": 5, "the victim's thing theirs": 4} {
		if n := strings.Count(string(out), what); n < least {
			t.Errorf("%q reported %d times, want at least %d:\n%s", what, n, least, out)
		}
	}
}
