package api

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/auth"
)

// TestCreateInvoiceProblems: every rule violation is a 4xx problem with a
// stable code and, where a field is at fault, its JSON pointer; nothing is
// written.
func TestCreateInvoiceProblems(t *testing.T) {
	g := newRig(t)
	user, account := uuid.NewString(), uuid.NewString()
	incl := g.taxRate("GST", "10", true, false)
	excl := g.taxRate("VAT", "20", false, false)
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": "ONCE-" + user[:8], "percent_off": "10", "max_redemptions": 1}), 201)
	must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": "EUR5-" + user[:8], "amount_off": 500, "currency": "EUR"}), 201)
	line := func(kv ...any) map[string]any {
		l := map[string]any{"description": "Item", "quantity": "1", "unit_amount": 100}
		for i := 0; i < len(kv); i += 2 {
			l[kv[i].(string)] = kv[i+1]
		}
		return l
	}
	with := func(kv ...any) map[string]any {
		b := invoiceBody(user, account)
		for i := 0; i < len(kv); i += 2 {
			b[kv[i].(string)] = kv[i+1]
		}
		return b
	}
	// The coupon with one redemption is used up first.
	must(t, g.asAdmin("POST", "/invoices", with("coupon", "ONCE-"+user[:8])), 201)

	cases := []struct {
		name    string
		body    any
		role    auth.Role
		status  int
		code    string
		pointer string
	}{
		{"missing account and currency", map[string]any{"user_id": user}, auth.RoleAdmin, 422, "validation_failed", "#/account_id"},
		{"admin names another owner", with("user_id", uuid.NewString()), auth.RoleAdmin, 422, "validation_failed", "#/user_id"},
		{"admin names a malformed owner", with("user_id", "bob"), auth.RoleAdmin, 422, "validation_failed", "#/user_id"},
		{"currency other than the account's", with("currency", "EUR"), auth.RoleAdmin, 422, "validation_failed", "#/currency"},
		{"unknown account", with("account_id", uuid.NewString()), auth.RoleAdmin, 404, "not_found", "#/account_id"},
		{"unknown currency", with("currency", "XYZ"), auth.RoleAdmin, 422, "validation_failed", "#/currency"},
		{"quantity with 7 decimals", with("line_items", []any{line("quantity", "0.0000001")}), auth.RoleAdmin, 422, "validation_failed", "#/line_items/0/quantity"},
		{"quantity as exponent", `{"account_id":"` + account + `","user_id":"` + user + `","currency":"USD","line_items":[{"description":"x","quantity":1e3,"unit_amount":1}]}`, auth.RoleAdmin, 422, "validation_failed", "#/line_items/0/quantity"},
		{"negative quantity", with("line_items", []any{line("quantity", -2)}), auth.RoleAdmin, 422, "validation_failed", "#/line_items/0/quantity"},
		{"unit amount missing", with("line_items", []any{map[string]any{"description": "x"}}), auth.RoleAdmin, 422, "validation_failed", "#/line_items/0/unit_amount"},
		{"unit amount beyond int64", `{"account_id":"` + account + `","user_id":"` + user + `","currency":"USD","line_items":[{"description":"x","unit_amount":9223372036854775808}]}`, auth.RoleAdmin, 422, "validation_failed", "#/line_items/unit_amount"}, // encoding/json names no index
		{"discount over 100%", with("line_items", []any{line("discount", map[string]any{"percent_off": "100.5"})}), auth.RoleAdmin, 422, "validation_failed", "#/line_items/0/discount/percent_off"},
		{"line currency mismatch", with("line_items", []any{line("currency", "EUR")}), auth.RoleAdmin, 422, "currency_mismatch", "#/line_items/0/currency"},
		{"fixed discount in another currency", with("discounts", []any{map[string]any{"amount_off": 5, "currency": "JPY"}}), auth.RoleAdmin, 422, "currency_mismatch", "#/discounts/0/currency"},
		{"coupon in another currency", with("coupon", "EUR5-"+user[:8]), auth.RoleAdmin, 422, "currency_mismatch", "#/coupon"},
		{"unknown tax rate", with("line_items", []any{line("tax_rate_ids", []string{uuid.NewString()})}), auth.RoleAdmin, 422, "tax_rate_unknown", "#/line_items/0/tax_rate_ids/0"},
		{"inclusive and exclusive on one line", with("line_items", []any{line("tax_rate_ids", []string{incl, excl})}), auth.RoleAdmin, 422, "tax_inclusive_mixed", "#/line_items/0/tax_rate_ids"},
		{"due date in the past", with("due_date", "2026-03-09"), auth.RoleAdmin, 422, "due_date_in_past", "#/due_date"},
		{"overflow", with("line_items", []any{line("quantity", "1000000", "unit_amount", int64(math.MaxInt64/1000))}), auth.RoleAdmin, 422, "amount_overflow", ""},
		{"credits beyond charges", with("line_items", []any{line("unit_amount", -500)}), auth.RoleAdmin, 422, "invoice_total_negative", ""},
		{"unknown coupon", with("coupon", "NOPE"), auth.RoleAdmin, 422, "coupon_unknown", "#/coupon"},
		{"coupon used up", with("coupon", "ONCE-"+user[:8]), auth.RoleAdmin, 422, "coupon_not_redeemable", "#/coupon"},
		{"customer sets a discount", with("user_id", nil, "discounts", []any{map[string]any{"percent_off": "50"}}), auth.RoleCustomer, 403, "forbidden", ""},
		{"customer acts for another user", with("user_id", uuid.NewString()), auth.RoleCustomer, 422, "validation_failed", "#/user_id"},
		{"unknown field", with("colour", "red"), auth.RoleAdmin, 400, "bad_request", "#/colour"},
		{"two JSON values", `{} {}`, auth.RoleAdmin, 400, "bad_request", ""},
		{"net terms and due date", with("net_terms_days", 10, "due_date", "2026-05-01"), auth.RoleAdmin, 422, "validation_failed", "#/due_date"},
		{"too many lines", with("line_items", func() []any {
			ls := make([]any, 251)
			for i := range ls {
				ls[i] = line()
			}
			return ls
		}()), auth.RoleAdmin, 422, "validation_failed", "#/line_items"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sub := g.admin
			if c.role == auth.RoleCustomer {
				sub = user
			}
			if m, ok := c.body.(map[string]any); ok && m["user_id"] == nil {
				delete(m, "user_id")
			}
			doc := problemOf(t, g.call(call{method: "POST", path: "/invoices", body: c.body, sub: sub, role: c.role}), c.status, c.code)
			if c.pointer != "" && !strings.Contains(fmt.Sprint(doc["errors"]), c.pointer) {
				t.Fatalf("errors %v lack %s", doc["errors"], c.pointer)
			}
		})
	}
	var n int
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM invoices WHERE account_id = $1`, account).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d invoices written (%v), want only the first", n, err)
	}
}

func TestRequestsNeedCredentialsAndTheRightMedia(t *testing.T) {
	g := newRig(t)
	problemOf(t, g.call(call{method: "GET", path: "/invoices"}), 401, "unauthorized")
	rec := g.call(call{method: "POST", path: "/invoices", body: "x=1", sub: g.admin, role: auth.RoleAdmin,
		header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}})
	problemOf(t, rec, 415, "unsupported_media_type")
	req := call{method: "POST", path: "/tax-rates", body: map[string]any{"display_name": "VAT", "percentage": "20", "inclusive": false},
		sub: uuid.NewString(), role: auth.RoleCustomer}
	problemOf(t, g.call(req), 403, "forbidden")
	req.role = auth.RoleService
	problemOf(t, g.call(req), 403, "forbidden") // admins manage the catalogue
	problemOf(t, g.asAdmin("DELETE", "/invoices/"+uuid.NewString(), nil), 405, "method_not_allowed")
	problemOf(t, g.asAdmin("GET", "/invoices/not-a-uuid", nil), 404, "not_found")
	problemOf(t, g.asAdmin("GET", "/invoices/"+uuid.NewString()+".docx", nil), 404, "not_found")
	// A write without Idempotency-Key.
	rec = g.call(call{method: "POST", path: "/invoices", body: invoiceBody(uuid.NewString(), uuid.NewString()),
		sub: g.admin, role: auth.RoleAdmin, key: " "})
	if rec.Code != 422 && rec.Code != 400 {
		t.Fatalf("bad key: %d %s", rec.Code, rec.Body)
	}
}

func TestCustomersSeeOnlyTheirOwnInvoices(t *testing.T) {
	g := newRig(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	// A customer creates its own invoice: the owner is its subject.
	rec := g.asCustomer(alice, "POST", "/invoices", invoiceBody("", g.account(alice, "USD")))
	must(t, rec, 201)
	mine := decode[invoicing.Invoice](t, rec)
	if mine.UserID != alice {
		t.Fatalf("owner = %s, want %s", mine.UserID, alice)
	}
	theirs := g.createInvoice(bob, nil)
	for _, path := range []string{"/invoices/" + theirs.ID, "/invoices/" + theirs.ID + ".pdf", "/invoices/" + theirs.ID + ".html"} {
		problemOf(t, g.asCustomer(alice, "GET", path, nil), 404, "not_found")
	}
	problemOf(t, g.asCustomer(alice, "PATCH", "/invoices/"+theirs.ID, map[string]any{"memo": "mine now"}), 404, "not_found")
	problemOf(t, g.asCustomer(alice, "POST", "/invoices/"+theirs.ID+"/finalize", nil), 404, "not_found")
	must(t, g.asCustomer(alice, "GET", "/invoices/"+mine.ID, nil), 200)
	list := decode[struct{ Data []invoicing.Invoice }](t, g.asCustomer(alice, "GET", "/invoices", nil))
	for _, inv := range list.Data {
		if inv.UserID != alice {
			t.Fatalf("alice lists %s's invoice %s", inv.UserID, inv.ID)
		}
	}
	if len(list.Data) != 1 {
		t.Fatalf("alice lists %d invoices", len(list.Data))
	}
	problemOf(t, g.asCustomer(alice, "GET", "/invoices?user_id="+bob, nil), 422, "validation_failed")
	// Admins see anyone's, and filter by user.
	all := decode[struct{ Data []invoicing.Invoice }](t, g.asAdmin("GET", "/invoices?user_id="+bob, nil))
	if len(all.Data) != 1 || all.Data[0].ID != theirs.ID {
		t.Fatalf("admin list for bob = %+v", all.Data)
	}
}

func TestListInvoicesPagesByKeysetWithFilters(t *testing.T) {
	g := newRig(t)
	user, account := uuid.NewString(), uuid.NewString()
	var ids []string
	for i := 0; i < 5; i++ {
		b := invoiceBody(user, account)
		if i%2 == 0 {
			b["auto_finalize"] = true
			b["net_terms_days"] = 10 * i
		}
		ids = append(ids, g.createInvoice(user, b).ID)
	}
	g.createInvoice(user, nil) // another account
	seen := map[string]bool{}
	cursor := ""
	pages := 0
	for {
		path := "/invoices?limit=2&account_id=" + account
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		page := decode[struct {
			Data       []invoicing.Invoice `json:"data"`
			NextCursor string              `json:"next_cursor"`
			HasMore    bool                `json:"has_more"`
		}](t, g.asAdmin("GET", path, nil))
		pages++
		for _, inv := range page.Data {
			if seen[inv.ID] || inv.AccountID != account || inv.Lines != nil {
				t.Fatalf("page %d: %s repeated, of another account, or with lines", pages, inv.ID)
			}
			seen[inv.ID] = true
		}
		if !page.HasMore {
			break
		}
		cursor = page.NextCursor
	}
	if pages != 3 || len(seen) != 5 {
		t.Fatalf("%d pages, %d invoices", pages, len(seen))
	}
	open := decode[struct{ Data []invoicing.Invoice }](t, g.asAdmin("GET", "/invoices?status=open&account_id="+account, nil))
	if len(open.Data) != 3 || open.Data[0].ID != ids[4] {
		t.Fatalf("open invoices = %d, newest first %v", len(open.Data), open.Data)
	}
	// due_before 2026-03-25: due 03-10 (0 days) and 03-30 (20 days) -> only the first.
	due := decode[struct{ Data []invoicing.Invoice }](t, g.asAdmin("GET", "/invoices?due_before=2026-03-25&account_id="+account, nil))
	if len(due.Data) != 1 || due.Data[0].ID != ids[0] {
		t.Fatalf("due before = %+v", due.Data)
	}
	for _, q := range []string{"status=late", "due_before=tomorrow", "limit=0", "limit=101", "cursor=zzz", "account_id=1"} {
		problemOf(t, g.asAdmin("GET", "/invoices?"+q, nil), 422, "validation_failed")
	}
}

func TestIdempotencyKeyReplaysTheCreatedInvoice(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	first := g.call(call{method: "POST", path: "/invoices", body: body, sub: g.admin, role: auth.RoleAdmin, key: "create-1"})
	must(t, first, 201)
	again := g.call(call{method: "POST", path: "/invoices", body: body, sub: g.admin, role: auth.RoleAdmin, key: "create-1"})
	must(t, again, 201)
	if again.Header().Get("Idempotent-Replayed") != "true" || decode[invoicing.Invoice](t, again).ID != decode[invoicing.Invoice](t, first).ID {
		t.Fatalf("replay: %s %s", again.Header(), again.Body)
	}
	body["memo"] = "different"
	problemOf(t, g.call(call{method: "POST", path: "/invoices", body: body, sub: g.admin, role: auth.RoleAdmin, key: "create-1"}),
		422, "idempotency_key_reused")
	// One invoice, one number.
	if evs := g.events(decode[invoicing.Invoice](t, first).ID); len(evs) != 3 {
		t.Fatalf("events = %v", types(evs))
	}
}

func TestCatalogueEndpoints(t *testing.T) {
	g := newRig(t)
	customer := uuid.NewString()
	id := g.taxRate("QST", "9.975", false, true)
	rec := g.asCustomer(customer, "GET", "/tax-rates/"+id, nil)
	must(t, rec, 200)
	if r := decode[invoicing.TaxRate](t, rec); r.Percentage.String() != "9.975" || !r.Compound || r.Jurisdiction != "Testland" {
		t.Fatalf("tax rate = %+v", r)
	}
	problemOf(t, g.asAdmin("GET", "/tax-rates/"+uuid.NewString(), nil), 404, "not_found")
	for _, bad := range []map[string]any{
		{"display_name": "VAT", "percentage": "101", "inclusive": false},
		{"display_name": "VAT", "percentage": "20"},
		{"display_name": "", "percentage": "20", "inclusive": true},
		{"display_name": "VAT", "percentage": "12.34567", "inclusive": true},
	} {
		problemOf(t, g.asAdmin("POST", "/tax-rates", bad), 422, "validation_failed")
	}
	for i := 0; i < 3; i++ {
		g.taxRate(fmt.Sprintf("R%d", i), "5", true, false)
	}
	page := decode[struct {
		Data       []invoicing.TaxRate `json:"data"`
		NextCursor string              `json:"next_cursor"`
	}](t, g.asAdmin("GET", "/tax-rates?limit=2", nil))
	next := decode[struct{ Data []invoicing.TaxRate }](t, g.asAdmin("GET", "/tax-rates?limit=2&cursor="+page.NextCursor, nil))
	if len(page.Data) != 2 || len(next.Data) == 0 || next.Data[0].ID == page.Data[1].ID {
		t.Fatalf("tax rate pages: %d then %d", len(page.Data), len(next.Data))
	}

	code := "SPRING-" + customer[:6]
	rec = g.asAdmin("POST", "/coupons", map[string]any{"id": code, "name": "Spring", "percent_off": "25",
		"duration": "repeating", "duration_in_months": 3, "redeem_by": "2026-06-01T00:00:00Z"})
	must(t, rec, 201)
	problemOf(t, g.asAdmin("POST", "/coupons", map[string]any{"id": code, "percent_off": "5"}), 422, "coupon_exists")
	rec = g.asCustomer(customer, "GET", "/coupons/"+code, nil)
	must(t, rec, 200)
	if c := decode[invoicing.Coupon](t, rec); !c.Valid || c.PercentOff == nil || c.PercentOff.String() != "25" || *c.DurationInMonths != 3 {
		t.Fatalf("coupon = %+v", c)
	}
	problemOf(t, g.asCustomer(customer, "GET", "/coupons", nil), 403, "forbidden")
	must(t, g.asAdmin("GET", "/coupons?limit=1", nil), 200)
	for _, bad := range []map[string]any{
		{"percent_off": "10", "amount_off": 100, "currency": "USD"},
		{"amount_off": 100},
		{"percent_off": "10", "duration": "repeating"},
		{"percent_off": "0"},
		{"id": "has space", "percent_off": "10"},
		{"percent_off": "10", "redeem_by": "2020-01-01T00:00:00Z"},
	} {
		problemOf(t, g.asAdmin("POST", "/coupons", bad), 422, "validation_failed")
	}
}
