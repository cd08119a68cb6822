package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/functions/generate-invoice/store"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

func TestRespondAsyncCreatesThroughTheRequestedEvent(t *testing.T) {
	g := newRig(t)
	user := uuid.NewString()
	body := invoiceBody("", g.account(user, "USD"))
	body["auto_finalize"] = true
	rec := g.call(call{method: "POST", path: "/invoices", body: body, sub: user, role: auth.RoleCustomer,
		header: http.Header{"Prefer": {"respond-async"}}})
	must(t, rec, 202)
	req := decode[store.InvoiceRequest](t, rec)
	if rec.Header().Get("Location") != "/invoice-requests/"+req.ID || req.Status != "pending" {
		t.Fatalf("202: %s %+v", rec.Header().Get("Location"), req)
	}
	got := decode[store.InvoiceRequest](t, g.asCustomer(user, "GET", "/invoice-requests/"+req.ID, nil))
	if got.Status != "pending" || got.InvoiceID != nil {
		t.Fatalf("request before delivery = %+v", got)
	}
	problemOf(t, g.asCustomer(uuid.NewString(), "GET", "/invoice-requests/"+req.ID, nil), 404, "not_found")

	// The event is on billing-events; the trigger brings it back.
	evs := g.events(req.ID)
	if len(evs) != 1 || evs[0].Type() != events.TypeInvoiceRequested || evs[0].ID() != req.ID {
		t.Fatalf("requested events = %v", types(evs))
	}
	if res := g.deliver(evs[0]); res.Processed != 1 {
		t.Fatalf("delivery = %+v", res)
	}
	got = decode[store.InvoiceRequest](t, g.asCustomer(user, "GET", "/invoice-requests/"+req.ID, nil))
	if got.Status != "succeeded" || got.InvoiceID == nil {
		t.Fatalf("request after delivery = %+v", got)
	}
	inv := decode[invoicing.Invoice](t, g.asCustomer(user, "GET", "/invoices/"+*got.InvoiceID, nil))
	if inv.Status != invoicing.StatusOpen || inv.Number == nil || inv.UserID != user || inv.Total != 2100 {
		t.Fatalf("invoice = %+v", inv)
	}
	// A redelivery is a duplicate: still one invoice.
	if res := g.deliver(evs[0]); res.Duplicates != 1 {
		t.Fatalf("redelivery = %+v", res)
	}
	var n int
	_ = g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM invoices WHERE owner_user_id = $1`, user).Scan(&n)
	if n != 1 {
		t.Fatalf("%d invoices after a redelivery", n)
	}
}

func TestInvoiceRequestedEventsFromAnyProducerSucceedOrFailVisibly(t *testing.T) {
	g := newRig(t)
	user, account := uuid.NewString(), uuid.NewString()
	ok1 := event(t, "other-service", events.TypeInvoiceRequested, "", invoiceBody(user, account))
	ok2 := event(t, "other-service", events.TypeInvoiceRequested, "", invoiceBody(user, account))
	bad := invoiceBody(user, account)
	bad["line_items"] = []any{map[string]any{"description": "x", "unit_amount": 1, "tax_rate_ids": []string{uuid.NewString()}}}
	badEv := event(t, "other-service", events.TypeInvoiceRequested, "", bad)
	noUser := event(t, "other-service", events.TypeInvoiceRequested, "", invoiceBody("", account))
	garbage := event(t, "other-service", events.TypeInvoiceRequested, "", map[string]any{"account_id": account, "colour": 3})
	// A batch delivery is applied in one transaction; failures are
	// recorded per request and do not hold the others back.
	res := g.deliver(ok1, ok2, badEv, noUser, garbage)
	if res.Processed != 5 || res.Parked != 0 {
		t.Fatalf("batch = %+v", res)
	}
	for _, c := range []struct {
		ev     events.Event
		status string
		code   string
	}{{ok1, "succeeded", ""}, {ok2, "succeeded", ""}, {badEv, "failed", "tax_rate_unknown"},
		{noUser, "succeeded", ""}, {garbage, "failed", "bad_request"}} {
		r := decode[store.InvoiceRequest](t, g.asAdmin("GET", "/invoice-requests/"+c.ev.ID(), nil))
		if r.Status != c.status || (c.code != "" && !strings.Contains(string(r.Problem), `"code":"`+c.code+`"`)) {
			t.Fatalf("request %s = %+v %s, want %s %s", c.ev.ID(), r, r.Problem, c.status, c.code)
		}
	}
	// The owner sees its request; another customer does not.
	must(t, g.asCustomer(user, "GET", "/invoice-requests/"+ok1.ID(), nil), 200)
	problemOf(t, g.asCustomer(uuid.NewString(), "GET", "/invoice-requests/"+ok1.ID(), nil), 404, "not_found")
}

func TestBatchEndpointIsAllOrNothingAndNumbersConsecutively(t *testing.T) {
	g := newRig(t)
	user, account := uuid.NewString(), uuid.NewString()
	mk := func(n int) map[string]any {
		var items []any
		for i := 0; i < n; i++ {
			b := invoiceBody(user, account)
			b["auto_finalize"] = true
			items = append(items, b)
		}
		return map[string]any{"invoices": items}
	}
	bad := mk(5)
	bad["invoices"].([]any)[3].(map[string]any)["currency"] = "???"
	doc := problemOf(t, g.asAdmin("POST", "/invoices/batch", bad), 422, "validation_failed")
	if !strings.Contains(fmt.Sprint(doc["errors"]), "#/invoices/3/currency") {
		t.Fatalf("errors = %v", doc["errors"])
	}
	unknown := mk(3)
	unknown["invoices"].([]any)[2].(map[string]any)["coupon"] = "NO-SUCH-COUPON"
	doc = problemOf(t, g.asAdmin("POST", "/invoices/batch", unknown), 422, "coupon_unknown")
	if !strings.Contains(fmt.Sprint(doc["errors"]), "#/invoices/2/coupon") {
		t.Fatalf("errors = %v", doc["errors"])
	}
	problemOf(t, g.asCustomer(uuid.NewString(), "POST", "/invoices/batch", mk(1)), 403, "forbidden")
	problemOf(t, g.asAdmin("POST", "/invoices/batch", map[string]any{"invoices": []any{}}), 422, "validation_failed")

	rec := g.asAdmin("POST", "/invoices/batch", mk(20))
	must(t, rec, 201)
	out := decode[struct{ Data []events.Invoice }](t, rec)
	if len(out.Data) != 20 {
		t.Fatalf("%d invoices", len(out.Data))
	}
	for i, s := range out.Data {
		if want := invoicing.FormatNumber(g.s.cfg.NumberPrefix, 2026, int64(i+1)); s.Number == nil || *s.Number != want || s.Status != invoicing.StatusOpen {
			t.Fatalf("invoice %d: %+v, want number %s", i, s, want)
		}
	}
	var n int
	_ = g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM invoices WHERE account_id = $1`, account).Scan(&n)
	if n != 20 {
		t.Fatalf("%d invoices stored, want the 20 of the good batch only", n)
	}
	// The async form answers 202 with one request per invoice.
	rec = g.call(call{method: "POST", path: "/invoices/batch", body: mk(3), sub: g.admin, role: auth.RoleService,
		header: http.Header{"Prefer": {"respond-async, wait=0"}}})
	must(t, rec, 202)
	reqs := decode[struct{ Data []store.InvoiceRequest }](t, rec)
	if len(reqs.Data) != 3 {
		t.Fatalf("async batch = %s", rec.Body)
	}
	var evs []events.Event
	for _, r := range reqs.Data {
		evs = append(evs, g.events(r.ID)...)
	}
	if res := g.deliver(evs...); res.Processed != 3 {
		t.Fatalf("delivery = %+v", res)
	}
	_ = g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM invoices WHERE account_id = $1`, account).Scan(&n)
	if n != 23 {
		t.Fatalf("%d invoices after the async batch", n)
	}
}

type payment struct {
	PaymentID      string  `json:"payment_id"`
	AccountID      string  `json:"account_id"`
	InvoiceID      *string `json:"invoice_id"`
	Amount         int64   `json:"amount"`
	AmountCaptured int64   `json:"amount_captured"`
	Currency       string  `json:"currency"`
	Status         string  `json:"status"`
	DeclineCode    string  `json:"decline_code,omitempty"`
	FailureReason  string  `json:"failure_reason,omitempty"`
	Attempt        int     `json:"attempt,omitempty"`
}

// TestPaymentEventsAreIdempotentAndOrderTolerant replays the same payment
// story in every order and twice: the outcome never changes, a failure
// never un-pays, a refund is counted once.
func TestPaymentEventsAreIdempotentAndOrderTolerant(t *testing.T) {
	g := newRig(t)
	orders := [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 0, 4, 1, 3}}
	for _, order := range orders {
		body := invoiceBody(uuid.NewString(), uuid.NewString())
		body["auto_finalize"] = true
		inv := g.createInvoice("", body) // total 2100
		pid := "pay_" + uuid.NewString()[:8]
		mk := func(typ string, p payment) events.Event {
			p.PaymentID, p.AccountID, p.InvoiceID, p.Currency = pid, inv.AccountID, &inv.ID, "USD"
			return event(t, "capture-payment", typ, pid, p)
		}
		story := []events.Event{
			mk(events.TypePaymentCaptured, payment{Amount: 1000, AmountCaptured: 1000, Status: "requires_capture"}),
			mk(events.TypePaymentCaptured, payment{Amount: 1100, AmountCaptured: 2100, Status: "succeeded"}),
			mk(events.TypePaymentCaptured, payment{Amount: 1100, AmountCaptured: 2100, Status: "succeeded"}), // same capture, new event id
			mk(events.TypePaymentFailed, payment{DeclineCode: "card_declined", FailureReason: "insufficient funds", Attempt: 1}),
			event(t, "capture-payment", events.TypeRefundSucceeded, pid, map[string]any{"refund_id": "re_" + pid, "payment_id": pid,
				"invoice_id": inv.ID, "amount": 300, "currency": "USD", "account_id": inv.AccountID}),
		}
		for round := 0; round < 2; round++ {
			for _, i := range order {
				g.deliver(story[i])
			}
		}
		got := g.invoice(inv.ID)
		if got.Status != invoicing.StatusPaid || got.AmountPaid != 2100 || got.AmountDue != 0 || got.AmountRefunded != 300 {
			t.Fatalf("order %v: invoice = %s paid %d due %d refunded %d", order, got.Status, got.AmountPaid, got.AmountDue, got.AmountRefunded)
		}
		paid := 0
		for _, ev := range g.events(inv.ID) {
			if ev.Type() == events.TypeInvoicePaid {
				paid++
			}
		}
		if paid != 1 {
			t.Fatalf("order %v: %d invoice.paid events", order, paid)
		}
	}
}

func TestPaymentFailureIsRecordedOnAnOpenInvoice(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	inv := g.createInvoice("", body)
	g.deliver(event(t, "capture-payment", events.TypePaymentFailed, "p1", payment{PaymentID: "p1", InvoiceID: &inv.ID,
		Currency: "USD", DeclineCode: "card_declined", FailureReason: "do not honor"}))
	got := g.invoice(inv.ID)
	if got.Status != invoicing.StatusOpen || got.PaymentFailures != 1 || got.LastPaymentError == nil || *got.LastPaymentError != "card_declined: do not honor" {
		t.Fatalf("after failure = %+v", got)
	}
	// Events that can never apply are parked, not retried.
	other := uuid.NewString()
	res := g.deliver(event(t, "capture-payment", events.TypePaymentCaptured, "p2", payment{PaymentID: "p2", InvoiceID: &other, Currency: "USD", Amount: 5}))
	if res.Parked != 1 {
		t.Fatalf("unknown invoice: %+v", res)
	}
	// Money in another currency is not parked: recorded, announced as
	// unapplied (capture-payment credits it to the account).
	res = g.deliver(event(t, "capture-payment", events.TypePaymentCaptured, "p3", payment{PaymentID: "p3", InvoiceID: &inv.ID, Currency: "EUR", Amount: 5}))
	if res.Processed != 1 || res.Parked != 0 || g.invoice(inv.ID).AmountPaid != 0 || unappliedOf(t, g, "p3") != "5 EUR currency_mismatch" {
		t.Fatalf("currency mismatch: %+v", res)
	}
	// A payment not for an invoice is none of generate-invoice's business.
	res = g.deliver(event(t, "capture-payment", events.TypePaymentCaptured, "p4", payment{PaymentID: "p4", Currency: "USD", Amount: 5}))
	if res.Ignored != 1 || g.invoice(inv.ID).AmountPaid != 0 {
		t.Fatalf("payment without invoice: %+v", res)
	}
	// Money reaching a void invoice is recorded and announced as
	// unapplied; nothing becomes due or paid.
	must(t, g.asAdmin("POST", "/invoices/"+inv.ID+"/void", nil), 200)
	g.deliver(event(t, "capture-payment", events.TypePaymentCaptured, "p5", payment{PaymentID: "p5", InvoiceID: &inv.ID, Currency: "USD", Amount: 700}))
	if got := g.invoice(inv.ID); got.Status != invoicing.StatusVoid || got.AmountDue != 0 || got.AmountPaid != 0 || unappliedOf(t, g, "p5") != "700 USD invoice_void" {
		t.Fatalf("void invoice after a payment = %s due %d paid %d", got.Status, got.AmountDue, got.AmountPaid)
	}
	var parked int
	_ = g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE consumer = $1 AND source = '/functions/capture-payment'`, FunctionName).Scan(&parked)
	if parked < 1 {
		t.Fatalf("%d dead letters", parked)
	}
	_ = json.Valid
}

// TestPaymentsOfNoInvoiceCostNoTransaction: payment events that name no
// invoice (most payments) are acknowledged as ignored and leave nothing
// behind, not even a processed_events row, however often they come; in
// the same deliveries an invoice's payment still applies exactly once, and
// a malformed event naming no invoice is still parked.
func TestPaymentsOfNoInvoiceCostNoTransaction(t *testing.T) {
	g := newRig(t)
	body := invoiceBody(uuid.NewString(), uuid.NewString())
	body["auto_finalize"] = true
	inv := g.createInvoice("", body) // total 2100
	none := func(typ, pid string) events.Event {
		return event(t, "capture-payment", typ, pid, payment{PaymentID: pid, AccountID: inv.AccountID, Currency: "USD",
			Amount: 500, AmountCaptured: 500, Status: "succeeded"})
	}
	empty := ""
	noInvoice := []events.Event{
		none(events.TypePaymentCaptured, "pay_"+uuid.NewString()),
		none(events.TypePaymentFailed, "pay_"+uuid.NewString()),
		event(t, "capture-payment", events.TypePaymentCaptured, "p-empty", payment{PaymentID: "p-empty", InvoiceID: &empty, Currency: "USD", Amount: 5}),
		event(t, "capture-payment", events.TypeRefundSucceeded, "re-none", map[string]any{"refund_id": "re_" + uuid.NewString(),
			"payment_id": "p-none", "amount": 300, "currency": "USD", "account_id": inv.AccountID}),
	}
	pid := "pay_" + uuid.NewString()
	paying := event(t, "capture-payment", events.TypePaymentCaptured, pid, payment{PaymentID: pid, AccountID: inv.AccountID,
		InvoiceID: &inv.ID, Currency: "USD", Amount: 800, AmountCaptured: 800, Status: "succeeded"})
	// Data the handler refuses is relevant whatever it names: parked.
	malformed := event(t, "capture-payment", events.TypePaymentCaptured, "p-bad", map[string]any{"payment_id": "p-bad", "amount": "five"})

	batch := append(append([]events.Event{}, noInvoice...), paying, malformed)
	if res := g.deliver(batch...); res.Ignored != 4 || res.Processed != 1 || res.Parked != 1 {
		t.Fatalf("first delivery: %+v, want 4 ignored, 1 processed, 1 parked", res)
	}
	if res := g.deliver(batch...); res.Ignored != 4 || res.Duplicates != 2 || res.Processed != 0 {
		t.Fatalf("redelivery: %+v, want 4 ignored and 2 duplicates", res)
	}
	for _, ev := range noInvoice {
		if res := g.deliver(ev); res.Ignored != 1 {
			t.Fatalf("%s alone: %+v", ev.Type(), res)
		}
	}
	if got := g.invoice(inv.ID); got.AmountPaid != 800 || got.Status != invoicing.StatusOpen {
		t.Fatalf("invoice paid %d (%s), want 800 once", got.AmountPaid, got.Status)
	}
	ids := []string{paying.ID(), malformed.ID()}
	for _, ev := range noInvoice {
		ids = append(ids, ev.ID())
	}
	rows, err := g.d.Pool.Query(context.Background(), `SELECT id FROM processed_events WHERE consumer = $1 AND id = ANY($2)`, FunctionName, ids)
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		recorded = append(recorded, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(recorded)
	want := []string{paying.ID(), malformed.ID()}
	slices.Sort(want)
	if !slices.Equal(recorded, want) {
		t.Fatalf("processed_events holds %v, want only the invoice's payment and the parked one %v", recorded, want)
	}
}

// Issue 20: generate-invoice's events are signed with the function's origin
// key as they are written — an invoice's by its transaction, a pending
// request's by the 202 acceptance — and their outbox rows name the key, so
// the publisher relays them without decoding them. (The publisher is
// stopped first, so the rows stay to be read.)
func TestInvoiceEventsAreSignedAsTheyAreWritten(t *testing.T) {
	g := newRig(t)
	g.d.Publisher.Close(context.Background())
	user := uuid.NewString()
	sync, async := g.account(user, "USD"), g.account(user, "USD")
	body := invoiceBody(user, sync)
	body["auto_finalize"] = true
	g.createInvoice(user, body)
	must(t, g.call(call{method: "POST", path: "/invoices", body: invoiceBody("", async), sub: user, role: auth.RoleCustomer,
		header: http.Header{"Prefer": {"respond-async"}}}), 202)
	seen := map[string]int{}
	for _, ev := range testenv.SignedAsWritten(t, g.d.Pool, g.d.Publisher.Signer.KeyID(), g.kit.Origins,
		`source = $1 AND (strpos(convert_from(payload, 'UTF8'), $2::text) > 0 OR strpos(convert_from(payload, 'UTF8'), $3::text) > 0)`,
		FunctionName, sync, async) {
		seen[ev.Type()]++
	}
	if seen[events.TypeInvoiceCreated] != 1 || seen[events.TypeInvoiceFinalized] != 1 ||
		seen[events.TypeInvoiceRequested] != 1 {
		t.Fatalf("rows %v, want the invoice's creation and finalization, and the pending request", seen)
	}
}
