package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// The top-accounts CSV's rank is the account's place in the ranking, on
// every page: following its Link header from a page of two, the second
// page's rows are ranks 3 and 4, not 1 and 2 again.
func TestTopAccountsCSVRanksContinueAcrossPages(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-01")
	ext := id()
	user := id()
	g.deliver(account(t, d, ext, id(), "SYS-EXTERNAL-USD", "USD"))
	for i := 0; i < 5; i++ {
		a := id()
		g.deliver(account(t, d, a, user, "ACC-RANK-"+strconv.Itoa(i), "USD"),
			transfer(t, d.Add(time.Hour), ext, a, int64(i+1)*1000, "USD", "posted"))
	}
	path := "/reports/top-accounts.csv?currency=USD&from=2026-03-01&to=2026-03-02&limit=2"
	var ranks []string
	for i := 0; i < 5 && path != ""; i++ {
		rec := g.request("GET", path, asAdmin, nil)
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		for _, r := range readCSV(t, rec.Body.String())[1:] {
			ranks = append(ranks, r[0])
		}
		path = ""
		if l := rec.Header().Get("Link"); l != "" {
			path = strings.TrimPrefix(l[:strings.IndexByte(l, '>')], "<")
		}
	}
	if got := strings.Join(ranks, ","); got != "1,2,3,4,5" {
		t.Errorf("ranks over the CSV's pages: %s, want 1,2,3,4,5", got)
	}
}
