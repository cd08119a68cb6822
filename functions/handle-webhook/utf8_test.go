package main

import (
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// GET /events?type=%FF passed the filter's checks (at most 100 bytes) and
// reached Postgres, which refuses text that is not UTF-8: a 500; and POST
// /events/%FF/replay failed at the idempotency middleware's record of the
// path, a 500 too. Both are now the server's 400, and nothing is written.
func TestAFilterOrIDThatIsNotUTF8IsABadRequest(t *testing.T) {
	g := newRig(t)
	keys := g.count(`SELECT count(*) FROM idempotency_keys`)
	for _, c := range []struct{ method, path string }{
		{"GET", "/events?type=%FF"},
		{"GET", "/events?type=charge.x%ED%A0%80"},
		{"POST", "/events/%FF/replay"},
	} {
		rec := g.admin_(c.method, c.path, nil, auth.RoleAdmin, uuid.NewString())
		if rec.Code != 400 {
			t.Errorf("%s %s: %d %s, want 400", c.method, c.path, rec.Code, rec.Body)
		}
	}
	if n := g.count(`SELECT count(*) FROM idempotency_keys`); n != keys {
		t.Errorf("idempotency keys %d, then %d", keys, n)
	}
}
