package api

import (
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
)

// An id is the same id in any case, and so is its cache entry: the
// invoice (its JSON, PDF and HTML) read by its id in upper case was cached
// under that spelling, which no change invalidates (changes invalidate the
// canonical id), so it went on showing the invoice as it was before the
// change, for the cache's TTL.
func TestAnInvoiceReadByItsIdInUpperCaseIsNotStale(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	inv := g.createInvoice(user, invoiceBody(user, g.account(user, "USD")))
	upper := "/invoices/" + strings.ToUpper(inv.ID)
	must(t, g.asCustomer(user, "GET", upper, nil), 200)
	must(t, g.asCustomer(user, "GET", upper+".html", nil), 200)
	must(t, g.asAdmin("PATCH", "/invoices/"+inv.ID, map[string]any{"memo": "Changed after it was read"}), 200) // the merchant's draft
	rec := g.asCustomer(user, "GET", upper, nil)
	must(t, rec, 200)
	if got := decode[invoicing.Invoice](t, rec); got.Memo != "Changed after it was read" {
		t.Errorf("read by its id in upper case after a change: memo %q", got.Memo)
	}
	rec = g.asCustomer(user, "GET", upper+".html", nil)
	must(t, rec, 200)
	if !strings.Contains(rec.Body.String(), "Changed after it was read") {
		t.Errorf("its HTML by its id in upper case after a change lacks the new memo")
	}
}

// The same for a subscription: canceled (at the period's end) after it was
// read by its id in upper case, it is read so that way too.
func TestASubscriptionReadByItsIdInUpperCaseIsNotStale(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	sub := g.subscribe(subBody(user, monthly(1000)))
	upper := "/subscriptions/" + strings.ToUpper(sub.ID)
	must(t, g.asCustomer(user, "GET", upper, nil), 200)
	must(t, g.asCustomer(user, "POST", "/subscriptions/"+sub.ID+"/cancel", map[string]any{}), 200)
	rec := g.asCustomer(user, "GET", upper, nil)
	must(t, rec, 200)
	if got := decode[invoicing.Subscription](t, rec); !got.CancelAtPeriodEnd {
		t.Errorf("read by its id in upper case after its cancellation: status %q, cancel_at_period_end false", got.Status)
	}
}
