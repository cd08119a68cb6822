package api

import (
	"testing"

	"github.com/google/uuid"
)

// POST /invoices/{id}/finalize, /void and /mark-uncollectible read no
// body: {"auto_advance":false} or {"memo":"…"} sent with a finalize was
// ignored while the invoice was finalized (200), and so was a body that is
// not JSON. A body is now decoded strictly into nothing: a member is a 400
// naming it and the invoice is left as it was; no body or {} acts as
// before.
func TestAnInvoiceActionRefusesABodyItWouldIgnore(t *testing.T) {
	g := newRig(t)
	user, account := uuid.NewString(), uuid.NewString()
	draft := decode[map[string]any](t, g.asAdmin("POST", "/invoices", invoiceBody(user, account)))
	id := draft["id"].(string)
	for _, action := range []string{"finalize", "void", "mark-uncollectible"} {
		for _, body := range []string{`{"auto_advance":false}`, `{"memo":"paid by cheque"}`, `not json`} {
			problemOf(t, g.asAdmin("POST", "/invoices/"+id+"/"+action, body), 400, "bad_request")
		}
	}
	if got := decode[map[string]any](t, g.asAdmin("GET", "/invoices/"+id, nil)); got["status"] != "draft" {
		t.Fatalf("status %v after refused actions, want draft", got["status"])
	}
	must(t, g.asAdmin("POST", "/invoices/"+id+"/finalize", `{}`), 200)
	must(t, g.asAdmin("POST", "/invoices/"+id+"/void", nil), 200)
}
