package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/functions/capture-payment/remote"
	"github.com/billfn/billfn/shared/events"
)

// invoiceEvent is an invoice event as generate-invoice emits it.
func invoiceEvent(t *testing.T, typ, invoice, account, currency, status string, total, paid int64) events.Event {
	t.Helper()
	return event(t, "generate-invoice", typ, invoice, map[string]any{
		"invoice_id": invoice, "number": "INV-2026-000007", "account_id": account, "currency": currency,
		"total": total, "amount_paid": paid, "amount_due": max(total-paid, 0), "status": status,
		"collection_method": "send_invoice"})
}

// openInvoice makes an open send_invoice invoice of account known to the
// read model, as its billfn.invoice.finalized would, and returns its id.
func (g *rig) openInvoice(t *testing.T, account, currency string, total int64) string {
	t.Helper()
	id := uuid.NewString()
	if rec := g.deliver(invoiceEvent(t, events.TypeInvoiceFinalized, id, account, currency, "open", total, 0)); rec.Code != 200 {
		t.Fatalf("finalized: %d %s", rec.Code, rec.Body)
	}
	return id
}

// payInvoice posts a payment of invoice (a fresh Idempotency-Key each call).
func (g *rig) payInvoice(account, invoice string, amount int64, currency string) *httptest.ResponseRecorder {
	return g.do(req{method: "POST", path: "/payments", body: map[string]any{"account_id": account, "user_id": g.admin, "invoice_id": invoice,
		"amount": amount, "currency": currency, "payment_method": "pm_card_visa", "confirm": true}})
}

// charges counts the payments of invoice and their gateway attempts: a
// refused payment leaves neither (the gateway was never called).
func (g *rig) charges(t *testing.T, invoice string) (payments, attempts int) {
	t.Helper()
	err := g.d.Pool.QueryRow(context.Background(), `SELECT count(DISTINCT p.id), count(a.n)
		FROM payments p LEFT JOIN payment_attempts a ON a.payment_id = p.id WHERE p.invoice_id = $1`, invoice).
		Scan(&payments, &attempts)
	if err != nil {
		t.Fatal(err)
	}
	return payments, attempts
}

// problemDoc decodes a problem answer.
func problemDoc(t *testing.T, rec *httptest.ResponseRecorder, status int) map[string]any {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	var d map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// fieldNamed reports whether a problem names field (its JSON pointer).
func fieldNamed(d map[string]any, field string) bool {
	errs, _ := d["errors"].([]any)
	for _, e := range errs {
		if m, ok := e.(map[string]any); ok && m["pointer"] == "#/"+field {
			return true
		}
	}
	return false
}

func TestAPaidInvoiceCannotBePaidAgain(t *testing.T) {
	g := newRig(t)
	inv := g.openInvoice(t, g.account, "USD", 2900)
	p := decode[payments.Payment](t, g.payInvoice(g.account, inv, 2900, "USD"), http.StatusCreated)
	if p.Status != payments.Succeeded || p.AmountCaptured != 2900 {
		t.Fatalf("first payment: %+v", p)
	}
	// The same command again with a fresh key, before generate-invoice has
	// said the invoice is paid: capture-payment's own capture covers it.
	d := problemDoc(t, g.payInvoice(g.account, inv, 2900, "USD"), http.StatusConflict)
	if d["code"] != string(payments.CodeInvoiceNotPayable) || d["amount_remaining"] != float64(0) {
		t.Fatalf("second payment: %v", d)
	}
	// And once billfn.invoice.paid has arrived: refused naming the status.
	g.deliver(invoiceEvent(t, "billfn.invoice.paid", inv, g.account, "USD", "paid", 2900, 2900))
	d = problemDoc(t, g.payInvoice(g.account, inv, 100, "USD"), http.StatusConflict)
	if d["code"] != string(payments.CodeInvoiceNotPayable) || d["status"] != float64(409) || d["invoice_status"] != "paid" || !strings.Contains(d["detail"].(string), "paid") {
		t.Fatalf("payment of a paid invoice: %v", d)
	}
	if ps, as := g.charges(t, inv); ps != 1 || as != 1 {
		t.Fatalf("%d payments and %d gateway attempts for the invoice, want 1 and 1", ps, as)
	}
}

func TestInvoicePaymentsAreRefusedBeforeTheGateway(t *testing.T) {
	g := newRig(t)
	inv := g.openInvoice(t, g.account, "USD", 2900)
	othersInvoice := g.openInvoice(t, uuid.NewString(), "USD", 2900)
	cases := []struct {
		name             string
		account, invoice string
		amount           int64
		currency         string
		status           int
		code, field      string
	}{
		{"another currency", g.account, inv, 2900, "EUR", 422, "", "currency"},
		{"another account's invoice (told as unknown)", g.account, othersInvoice, 2900, "USD", 422, "", "invoice_id"},
		{"more than is due", g.account, inv, 2901, "USD", 422, string(payments.CodeExceedsInvoiceDue), "amount"},
		{"an invoice nobody knows", g.account, uuid.NewString(), 100, "USD", 422, "", "invoice_id"},
	}
	for _, c := range cases {
		d := problemDoc(t, g.payInvoice(c.account, c.invoice, c.amount, c.currency), c.status)
		if (c.code != "" && d["code"] != c.code) || !fieldNamed(d, c.field) {
			t.Fatalf("%s: %v", c.name, d)
		}
	}
	// A void invoice is not payable.
	void := g.openInvoice(t, g.account, "USD", 500)
	g.deliver(invoiceEvent(t, "billfn.invoice.voided", void, g.account, "USD", "void", 500, 0))
	d := problemDoc(t, g.payInvoice(g.account, void, 500, "USD"), http.StatusConflict)
	if d["code"] != string(payments.CodeInvoiceNotPayable) || d["status"] != float64(409) || d["invoice_status"] != "void" {
		t.Fatalf("void invoice: %v", d)
	}
	for _, id := range []string{inv, void, othersInvoice} {
		if ps, as := g.charges(t, id); ps != 0 || as != 0 {
			t.Fatalf("invoice %s: %d payments, %d gateway attempts after refusals", id, ps, as)
		}
	}
	// Partial payments add up to the total, and no further.
	decode[payments.Payment](t, g.payInvoice(g.account, inv, 2000, "USD"), http.StatusCreated)
	d = problemDoc(t, g.payInvoice(g.account, inv, 1000, "USD"), 422)
	if d["code"] != string(payments.CodeExceedsInvoiceDue) || d["amount_remaining"] != float64(900) {
		t.Fatalf("beyond the rest: %v", d)
	}
	decode[payments.Payment](t, g.payInvoice(g.account, inv, 900, "USD"), http.StatusCreated)
}

func TestConcurrentPaymentsOfOneInvoiceChargeOnce(t *testing.T) {
	g := newRig(t)
	inv := g.openInvoice(t, g.account, "USD", 2900)
	const n = 4
	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			recs[i] = g.payInvoice(g.account, inv, 2900, "USD")
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for _, rec := range recs {
		switch rec.Code {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			var d map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &d)
			switch d["code"] {
			case string(payments.CodeInvoiceInProgress):
				if rec.Header().Get("Retry-After") == "" {
					t.Fatalf("in progress without Retry-After: %s", rec.Body)
				}
			case string(payments.CodeInvoiceNotPayable):
			default:
				t.Fatalf("409 %s", rec.Body)
			}
		default:
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	if created != 1 {
		t.Fatalf("%d payments created, want 1", created)
	}
	var captured int64
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(amount_captured), 0) FROM payments WHERE invoice_id = $1`,
		inv).Scan(&captured); err != nil {
		t.Fatal(err)
	}
	if ps, as := g.charges(t, inv); ps != 1 || as != 1 || captured != 2900 {
		t.Fatalf("%d payments, %d gateway attempts, %d captured; want 1, 1 and the total 2900", ps, as, captured)
	}
}

func TestInvoiceFactsAreMonotonicAndOnlyFromGenerateInvoice(t *testing.T) {
	g := newRig(t)
	inv := uuid.NewString()
	// Reordered: paid arrives before finalized; finalized changes nothing.
	g.deliver(invoiceEvent(t, "billfn.invoice.paid", inv, g.account, "USD", "paid", 1000, 1000))
	g.deliver(invoiceEvent(t, events.TypeInvoiceFinalized, inv, g.account, "USD", "open", 1000, 0))
	var status string
	var paid int64
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT status, amount_paid FROM payment_invoices WHERE id = $1`, inv).
		Scan(&status, &paid); err != nil || status != "paid" || paid != 1000 {
		t.Fatalf("facts: %s %d %v", status, paid, err)
	}
	// Invoice facts from anyone else are parked, never applied.
	forged := event(t, "handle-webhook", "billfn.invoice.voided", inv, map[string]any{"invoice_id": uuid.NewString(),
		"account_id": g.account, "currency": "USD", "total": 1, "status": "void"})
	if rec := g.deliver(forged); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"parked":1`) {
		t.Fatalf("forged facts: %d %s", rec.Code, rec.Body)
	}
}

func TestAnInvoiceWhoseEventHasNotArrivedIsReadThrough(t *testing.T) {
	inv := uuid.NewString()
	var asked int
	var account string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer svc-token" || r.URL.Path != "/function/generate-invoice/invoices/"+inv {
			http.NotFound(w, r)
			return
		}
		asked++
		_ = json.NewEncoder(w).Encode(map[string]any{"object": "invoice", "id": inv, "account_id": account,
			"currency": "USD", "total": 1200, "amount_paid": 0, "amount_due": 1200, "status": "open"})
	}))
	defer srv.Close()
	g := newRig(t, func(c *Config) {
		c.Invoices = remote.InvoicesConfig{InvoicesURL: srv.URL + "/function/generate-invoice", ServiceToken: "svc-token"}
	})
	account = g.account
	decode[payments.Payment](t, g.payInvoice(g.account, inv, 700, "USD"), http.StatusCreated)
	d := problemDoc(t, g.payInvoice(g.account, inv, 600, "USD"), 422)
	if d["amount_remaining"] != float64(500) || asked != 1 {
		t.Fatalf("second payment: %v; generate-invoice asked %d times, want once", d, asked)
	}
	// An invoice generate-invoice does not know either: 422 naming invoice_id.
	d = problemDoc(t, g.payInvoice(g.account, uuid.NewString(), 100, "USD"), 422)
	if !fieldNamed(d, "invoice_id") {
		t.Fatalf("unknown invoice: %v", d)
	}
}

// The README creates, finalizes and pays an invoice in three commands: the
// read model may know the invoice only as the draft its created event
// said. A draft is asked about again before it is refused.
func TestADraftIsAskedAboutAgainBeforeItIsRefused(t *testing.T) {
	inv := uuid.NewString()
	var asked int
	status := "open"
	var account string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer svc-token" || r.URL.Path != "/function/generate-invoice/invoices/"+inv {
			http.NotFound(w, r)
			return
		}
		asked++
		_ = json.NewEncoder(w).Encode(map[string]any{"object": "invoice", "id": inv, "account_id": account,
			"currency": "USD", "total": 1200, "amount_paid": 0, "amount_due": 1200, "status": status})
	}))
	defer srv.Close()
	g := newRig(t, func(c *Config) {
		c.Invoices = remote.InvoicesConfig{InvoicesURL: srv.URL + "/function/generate-invoice", ServiceToken: "svc-token"}
	})
	account = g.account
	if rec := g.deliver(invoiceEvent(t, events.TypeInvoiceCreated, inv, g.account, "USD", "draft", 1200, 0)); rec.Code != 200 {
		t.Fatalf("created: %d %s", rec.Code, rec.Body)
	}
	// Still a draft at its owner: refused, naming the status.
	status = "draft"
	d := problemDoc(t, g.payInvoice(g.account, inv, 1200, "USD"), http.StatusConflict)
	if d["code"] != string(payments.CodeInvoiceNotPayable) || !strings.Contains(fmt.Sprint(d["detail"]), "draft") || asked != 1 {
		t.Fatalf("a draft at its owner: %v (asked %d)", d, asked)
	}
	// Finalized a moment ago, its event not here yet: paid.
	status = "open"
	p := decode[payments.Payment](t, g.payInvoice(g.account, inv, 1200, "USD"), http.StatusCreated)
	if p.Status != payments.Succeeded || asked != 2 {
		t.Fatalf("payment of a just-finalized invoice: %+v (asked %d)", p, asked)
	}
	// Known as open now: nobody is asked again.
	problemDoc(t, g.payInvoice(g.account, inv, 100, "USD"), http.StatusConflict)
	if asked != 2 {
		t.Fatalf("generate-invoice asked %d times, want 2", asked)
	}
}

func TestALateSuccessOnAPaidInvoiceIsCreditedAndReconciles(t *testing.T) {
	g := newRig(t)
	inv := g.openInvoice(t, g.account, "USD", 2900)
	// An authorization waits for capture (in flight) while the invoice is
	// paid another way (generate-invoice's POST /invoices/{id}/pay)…
	body := map[string]any{"account_id": g.account, "user_id": g.admin, "invoice_id": inv, "amount": 2900, "currency": "USD",
		"payment_method": "pm_card_visa", "capture_method": "manual", "confirm": true}
	late := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", body: body}), http.StatusCreated)
	if code := problemCode(t, g.payInvoice(g.account, inv, 2900, "USD"), 409); code != string(payments.CodeInvoiceInProgress) {
		t.Fatalf("second payment while one is in flight: %s", code)
	}
	g.deliver(invoiceEvent(t, "billfn.invoice.paid", inv, g.account, "USD", "paid", 2900, 2900))
	// …then the money arrives anyway.
	p := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + late.ID + "/capture"}), http.StatusOK)
	if p.Status != payments.Succeeded || p.AmountCaptured != 2900 {
		t.Fatalf("capture: %+v", p)
	}
	// generate-invoice finds the invoice did not need it and says so.
	unapplied := event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": 2900, "currency": "USD", "reason": "invoice_paid"})
	for i := 0; i < 2; i++ { // a redelivery posts nothing more
		if rec := g.deliver(unapplied); rec.Code != 200 {
			t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
		}
	}
	// From anyone else it is parked.
	forged := event(t, "handle-webhook", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": 2900, "currency": "USD", "reason": "invoice_paid"})
	if rec := g.deliver(forged); !strings.Contains(rec.Body.String(), `"parked":1`) {
		t.Fatalf("forged unapplied: %s", rec.Body)
	}
	// The ledger: clearing gave the capture, revenue kept nothing of it,
	// the account holds it as a credit.
	balance := map[string]int64{}
	kinds := map[string]int{}
	for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(p.ID))) {
		from, to := ps.Data.FromAccountNumber+ps.Data.FromAccountID, ps.Data.ToAccountNumber+ps.Data.ToAccountID
		balance[from] -= ps.Data.Amount
		balance[to] += ps.Data.Amount
		kinds[ps.Data.Metadata["kind"]]++
	}
	if kinds[payments.KindCapture] != 1 || kinds[payments.KindSettlement] != 1 || kinds[payments.KindUnapplied] != 1 {
		t.Fatalf("postings by kind %v", kinds)
	}
	if balance["SYS-CLEARING-USD"] != -2900 || balance["SYS-REVENUE-USD"] != 0 || balance[g.account] != 2900 {
		t.Fatalf("balances %v: want clearing -2900 (the capture), revenue 0, the account +2900", balance)
	}
	// Refunding the double charge takes the credit back from the account,
	// not from revenue, which never kept it.
	r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2900}}), 201)
	holds, _ := g.ledger.state()
	if r.Status != "succeeded" || len(holds) != 1 || holds[0].FromAccountID != g.account || holds[0].FromAccountNumber != "" {
		t.Fatalf("refund %+v, holds %+v: want one hold on the account", r, holds)
	}
}

func TestARefundStraddlingCreditAndRevenueIsRefused(t *testing.T) {
	g := newRig(t)
	inv := g.openInvoice(t, g.account, "USD", 2000)
	p := decode[payments.Payment](t, g.payInvoice(g.account, inv, 2000, "USD"), http.StatusCreated)
	// Say generate-invoice credited 500 of it (an overpayment it learnt of).
	if rec := g.deliver(event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": 500, "currency": "USD", "reason": "overpayment"})); rec.Code != 200 {
		t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
	}
	if code := problemCode(t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 800}}), 409); code != "conflict" {
		t.Fatalf("a refund across the credit and revenue: %s", code)
	}
	decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 500}}), 201)
	decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 1500}}), 201)
	holds, _ := g.ledger.state()
	if len(holds) != 2 || holds[0].FromAccountID != g.account || holds[1].FromAccountNumber != "SYS-REVENUE-USD" {
		t.Fatalf("holds %+v: want 500 from the account, then 1500 from revenue", holds)
	}
}

// captureOnAPaidInvoice is a double charge: an authorization of an open
// invoice's 2900, the invoice paid another way meanwhile, then the
// authorization captured.
func (g *rig) captureOnAPaidInvoice(t *testing.T) (invoice string, p payments.Payment) {
	t.Helper()
	inv := g.openInvoice(t, g.account, "USD", 2900)
	body := map[string]any{"account_id": g.account, "user_id": g.admin, "invoice_id": inv, "amount": 2900, "currency": "USD",
		"payment_method": "pm_card_visa", "capture_method": "manual", "confirm": true}
	late := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", body: body}), http.StatusCreated)
	g.deliver(invoiceEvent(t, "billfn.invoice.paid", inv, g.account, "USD", "paid", 2900, 2900))
	p = decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + late.ID + "/capture"}), http.StatusOK)
	if p.Status != payments.Succeeded || p.AmountCaptured != 2900 {
		t.Fatalf("capture: %+v", p)
	}
	return inv, p
}

// sumOf is the sum of balances: zero for any set of postings
// (double-entry).
func sumOf(balances map[string]int64) int64 {
	var sum int64
	for _, v := range balances {
		sum += v
	}
	return sum
}

// postedBalances sums, by account (its number or id), the postings
// published for payment id so far.
func (g *rig) postedBalances(t *testing.T, id string) map[string]int64 {
	t.Helper()
	balance := map[string]int64{}
	for _, ps := range postings(t, g.drain(events.TopicTransaction, forPayment(id))) {
		balance[ps.Data.FromAccountNumber+ps.Data.FromAccountID] -= ps.Data.Amount
		balance[ps.Data.ToAccountNumber+ps.Data.ToAccountID] += ps.Data.Amount
	}
	return balance
}

// The money an invoice did not need is reported by generate-invoice some
// time after the capture (a round trip through Kafka, longer while
// generate-invoice lags). A merchant who refunds the double charge in that
// window refunds it from revenue, which then held it (HoldSource: nothing
// credited yet). The report arriving after the refund must not credit the
// account with money the customer already has back: the ledger would hold
// a 2900 credit on the account for a charge refunded at the gateway, and
// revenue at -2900.
func TestAnUnappliedReportAfterARefundCreditsOnlyWhatRevenueStillHolds(t *testing.T) {
	g := newRig(t)
	inv, p := g.captureOnAPaidInvoice(t)
	// The merchant refunds the double charge before generate-invoice's report.
	r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 2900}}), 201)
	holds, _ := g.ledger.state()
	if r.Status != "succeeded" || len(holds) != 1 || holds[0].FromAccountNumber != "SYS-REVENUE-USD" {
		t.Fatalf("refund %+v, holds %+v: want one hold on revenue", r, holds)
	}
	if n := g.holdEvents(t, p.ID, 1)[events.TypeHoldCaptureRequested]; n != 1 {
		t.Fatalf("%d hold captures requested, want 1", n)
	}
	// Then the report.
	unapplied := event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": 2900, "currency": "USD", "reason": "invoice_paid"})
	if rec := g.deliver(unapplied); rec.Code != 200 {
		t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
	}
	balance := g.postedBalances(t, p.ID)
	for _, h := range holds { // captured: the refund succeeded
		balance[h.FromAccountNumber+h.FromAccountID] -= h.Amount
		balance[h.ToAccountNumber+h.ToAccountID] += h.Amount
	}
	if balance["SYS-CLEARING-USD"] != 0 || balance["SYS-REVENUE-USD"] != 0 || balance[g.account] != 0 {
		t.Fatalf("balances %v: want clearing 0 (captured, refunded), revenue 0 (the invoice kept nothing), the account 0 (refunded, no credit)", balance)
	}
	// Nothing is left to credit or refund.
	if rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 1}}); rec.Code < 400 {
		t.Fatalf("a refund beyond the captured amount: %d %s", rec.Code, rec.Body)
	}
}

// The same double charge, reported by generate-invoice first (credited to
// the account), then refunded in the gateway's dashboard: the refund takes
// the credit back from the account, as a refund through billfn does. It
// passed through revenue instead (revenue → account, account → clearing),
// leaving revenue at -2900 and the credit on the account.
func TestADashboardRefundOfACreditedChargeTakesTheCreditBack(t *testing.T) {
	g := newRig(t)
	inv, p := g.captureOnAPaidInvoice(t)
	if rec := g.deliver(event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": 2900, "currency": "USD", "reason": "invoice_paid"})); rec.Code != 200 {
		t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
	}
	if rec := g.deliver(gatewayUpdated(t, p, "refunded", time.Now(), func(d map[string]any) {
		d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "charge", "charge.refunded", "ch_"+p.ID[:8]
		d["amount_refunded"], d["amount_received"] = 2900, 2900
	})); rec.Code != 200 {
		t.Fatalf("dashboard refund: %d %s", rec.Code, rec.Body)
	}
	if got := g.get(p.ID); got.AmountRefunded != 2900 {
		t.Fatalf("refunded %d, want 2900", got.AmountRefunded)
	}
	balance := g.postedBalances(t, p.ID)
	if balance["SYS-CLEARING-USD"] != 0 || balance["SYS-REVENUE-USD"] != 0 || balance[g.account] != 0 {
		t.Fatalf("balances %v: want clearing 0, revenue 0, the account 0 (its credit refunded)", balance)
	}
}

// A dashboard refund larger than the account's credit takes the credit
// from the account and the rest from revenue (it cannot be refused for
// straddling both, as a refund through billfn is), and the credit it took
// is not offered again.
func TestADashboardRefundStraddlingCreditAndRevenueTakesEachItsPart(t *testing.T) {
	g := newRig(t)
	inv := g.openInvoice(t, g.account, "USD", 2000)
	p := decode[payments.Payment](t, g.payInvoice(g.account, inv, 2000, "USD"), http.StatusCreated)
	if rec := g.deliver(event(t, "generate-invoice", events.TypeInvoicePaymentUnapplied, p.ID, map[string]any{"payment_id": p.ID, "invoice_id": inv,
		"account_id": g.account, "amount": 500, "currency": "USD", "reason": "overpayment"})); rec.Code != 200 {
		t.Fatalf("unapplied: %d %s", rec.Code, rec.Body)
	}
	if rec := g.deliver(gatewayUpdated(t, p, "refunded", time.Now(), func(d map[string]any) {
		d["object_type"], d["gateway_event_type"], d["gateway_object_id"] = "charge", "charge.refunded", "ch_"+p.ID[:8]
		d["amount_refunded"], d["amount_received"] = 800, 2000
	})); rec.Code != 200 {
		t.Fatalf("dashboard refund: %d %s", rec.Code, rec.Body)
	}
	balance := g.postedBalances(t, p.ID)
	if balance["SYS-CLEARING-USD"] != -1200 || balance["SYS-REVENUE-USD"] != 1200 || balance[g.account] != 0 {
		t.Fatalf("balances %v: want clearing -1200, revenue 1200, the account 0 (its 500 credit refunded)", balance)
	}
	// The rest of the payment is what the invoice kept: refunded from revenue.
	decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 1200}}), 201)
	holds, _ := g.ledger.state()
	if len(holds) != 1 || holds[0].FromAccountNumber != "SYS-REVENUE-USD" {
		t.Fatalf("holds %+v: want one hold of 1200 on revenue", holds)
	}
}

// docs/capture-payment.md's capture pasted twice: the second answered
// {"status":409,…,"status":"succeeded"}, the payment's status as an
// extension named like RFC 9457's own status member, so a JSON parser
// (the last member wins) read the problem's status as "succeeded". The
// payment's status is payment_status; the problem names status once.
func TestAProblemCarriesTheHTTPStatusOnce(t *testing.T) {
	g := newRig(t)
	p := g.pay(10_000, "USD", "pm_card_visa", "manual", true)
	capture := func() *httptest.ResponseRecorder {
		return g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture", body: map[string]any{"amount": 6000}})
	}
	if got := decode[payments.Payment](t, capture(), http.StatusOK); got.Status != payments.Succeeded {
		t.Fatalf("capture: %+v", got)
	}
	rec := capture()
	if n := strings.Count(rec.Body.String(), `"status":`); n != 1 {
		t.Fatalf("the problem names status %d times: %s", n, rec.Body)
	}
	d := problemDoc(t, rec, http.StatusConflict)
	if d["code"] != string(payments.CodeInvalidState) || d["status"] != float64(409) || d["payment_status"] != "succeeded" {
		t.Fatalf("second capture: %v", d)
	}
}
