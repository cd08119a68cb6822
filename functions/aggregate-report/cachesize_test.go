package main

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/testenv"
)

// A report's cache entry holds its parameters: its key, and the report
// itself, which echoes them. The free-text ones — timeseries' dim,
// top-accounts' cursor — were taken at any length, so one customer's
// request with a dim of a few hundred kilobytes (a URL's worth: 1 MB of
// headers is what Go's server reads) left as much in the Redis every
// function shares, for ten minutes, at the read limit's 300 requests a
// second. Both are bounded now: an oversized one is a 422, and nothing
// of it is cached.
func TestAReportsFreeTextParametersAreBounded(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-10")
	user, acct := id(), id()
	g.deliver(account(t, d, acct, user, "ACC-BIG-DIM", "USD"))
	marker := "m" + strings.ReplaceAll(id(), "-", "")
	big := marker + strings.Repeat("x", 300<<10)
	for name, path := range map[string]string{
		"dim": "/reports/timeseries?" + url.Values{"metric": {"transfer.posted"}, "from": {"2026-03-01"}, "to": {"2026-03-31"},
			"dim": {big}}.Encode(),
		"cursor": "/reports/top-accounts?" + url.Values{"currency": {"USD"}, "from": {"2026-03-01"}, "to": {"2026-03-31"},
			"cursor": {httpx.EncodeCursor(map[string]any{"v": 1, "a": big})}}.Encode(),
	} {
		rec := g.request("GET", path, asCustomer(user), nil)
		if rec.Code != 422 || !strings.Contains(rec.Body.String(), `"parameter":"`+name+`"`) {
			t.Errorf("a %d KiB %s: %d, want a 422 naming it", len(big)>>10, name, rec.Code)
		}
	}
	rdb, _ := testenv.Redis(t)
	ctx := context.Background()
	var stored int64
	iter := rdb.Scan(ctx, 0, "*"+marker+"*", 1000).Iterator()
	for iter.Next(ctx) {
		n, _ := rdb.StrLen(ctx, iter.Val()).Result()
		stored += int64(len(iter.Val())) + n
	}
	if stored > 0 {
		t.Errorf("one request each left %d KiB in Redis", stored>>10)
	}
}
