package testenv

import (
	"net/http"
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
