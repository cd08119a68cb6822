package main

import (
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/auth"
)

// The admin actions — POST /endpoints/{id}/rotate-secret, /test,
// /deliveries/{id}/retry, /events/{id}/replay — read no body: a member
// such as {"expires_in":3600} sent to rotate-secret was ignored while the
// secret was rotated (200), and so was a body that is not JSON. A body is
// now decoded strictly into nothing: a member is a 400 and nothing
// happens; no body or {} acts as before.
func TestAnAdminActionRefusesABodyItWouldIgnore(t *testing.T) {
	r := newRig(t)
	e := r.endpoint("http://127.0.0.1:9/hooks", "billfn.invoice.*")
	secret := func() string {
		var s string
		if err := r.d.Pool.QueryRow(t.Context(), `SELECT secret FROM webhook_endpoints WHERE id = $1`, e.ID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	was := secret()
	deliveries := r.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, e.ID)
	for _, c := range []struct {
		path string
		body any
	}{
		{"/endpoints/" + e.ID + "/rotate-secret", map[string]any{"expires_in": 3600}},
		{"/endpoints/" + e.ID + "/test", map[string]any{"type": "billfn.invoice.paid"}},
		{"/deliveries/" + uuid.NewString() + "/retry", map[string]any{"at": "now"}},
		{"/events/" + uuid.NewString() + "/replay", map[string]any{"force": true}},
	} {
		if rec := r.admin_("POST", c.path, c.body, auth.RoleAdmin, uuid.NewString()); rec.Code != 400 {
			t.Errorf("POST %s with %v: %d %s, want 400", c.path, c.body, rec.Code, rec.Body)
		}
	}
	if secret() != was {
		t.Error("a refused rotate-secret rotated the secret")
	}
	if n := r.count(`SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1`, e.ID); n != deliveries {
		t.Errorf("a refused test queued %d deliveries", n-deliveries)
	}
	if rec := r.admin_("POST", "/endpoints/"+e.ID+"/rotate-secret", map[string]any{}, auth.RoleAdmin, ""); rec.Code != 200 {
		t.Errorf("rotate-secret with {}: %d %s", rec.Code, rec.Body)
	}
}
