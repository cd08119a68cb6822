package main

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/api"
	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
)

// ledger decodes the transaction.requested records of a payment.
type posting struct {
	ID   string
	Data payments.TransferRequest
}

func postings(t *testing.T, recs []record) []posting {
	t.Helper()
	var out []posting
	for _, r := range recs {
		if r.Event.Type() != events.TypeTransactionRequested {
			continue
		}
		var tr payments.TransferRequest
		if err := json.Unmarshal(r.Event.Data(), &tr); err != nil {
			t.Fatal(err)
		}
		out = append(out, posting{ID: r.Event.ID(), Data: tr})
	}
	return out
}

func types(recs []record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Event.Type())
	}
	return out
}

func TestAutomaticCaptureOfAnInvoicePostsCaptureAndSettlementOnce(t *testing.T) {
	g := newRig(t)
	var invoice string
	p := g.pay(12000, "eur", "pm_card_visa", "automatic", true, func(b map[string]any) {
		invoice = g.openInvoice(t, b["account_id"].(string), "EUR", 12000)
		b["invoice_id"] = invoice
	})
	if p.Status != payments.Succeeded || p.AmountCaptured != 12000 || p.AmountCapturable != 0 || p.Currency != "EUR" {
		t.Fatalf("payment: %+v", p)
	}
	if *p.Gateway != payments.GatewaySandbox || *p.GatewayPaymentID != payments.SandboxObjectID(p.ID) {
		t.Fatalf("gateway %s %s", *p.Gateway, *p.GatewayPaymentID)
	}
	evs := g.consume(events.TopicPayment, 2, forPayment(p.ID))
	if got := types(evs); len(got) != 2 || got[0] != events.TypePaymentCreated || got[1] != events.TypePaymentCaptured {
		t.Fatalf("payment events %v", got)
	}
	var captured struct {
		Amount         int64  `json:"amount"`
		AmountCaptured int64  `json:"amount_captured"`
		InvoiceID      string `json:"invoice_id"`
		PaymentID      string `json:"payment_id"`
	}
	_ = json.Unmarshal(evs[1].Event.Data(), &captured)
	if captured.Amount != 12000 || captured.AmountCaptured != 12000 || captured.InvoiceID != invoice || captured.PaymentID != p.ID {
		t.Fatalf("captured data %s", evs[1].Event.Data())
	}
	ps := postings(t, g.consume(events.TopicTransaction, 2, forPayment(p.ID)))
	if len(ps) != 2 {
		t.Fatalf("postings %+v", ps)
	}
	capture, settle := ps[0].Data, ps[1].Data
	if capture.FromAccountNumber != "SYS-CLEARING-EUR" || capture.ToAccountID != g.accountIn("EUR") || capture.Amount != 12000 ||
		capture.Metadata["kind"] != payments.KindCapture || capture.ReferenceID != p.ID+":payment_capture:1" || capture.Metadata["invoice_id"] != invoice {
		t.Fatalf("capture posting %+v", capture)
	}
	if settle.FromAccountID != g.accountIn("EUR") || settle.ToAccountNumber != "SYS-REVENUE-EUR" || settle.Amount != 12000 ||
		settle.Metadata["kind"] != payments.KindSettlement || settle.ReferenceID != p.ID+":invoice_settlement:1" {
		t.Fatalf("settlement posting %+v", settle)
	}
	if want := uuid.NewSHA1(payments.LedgerNS, []byte(capture.ReferenceID)).String(); ps[0].ID != want {
		t.Fatalf("posting id %s is not derived from its reference (%s)", ps[0].ID, want)
	}
	// A reconciliation pass and a duplicate gateway answer post nothing more.
	g.clock.Advance(g.s.cfg.ReconcileAfter.D() * 2)
	g.tick()
	if n := len(postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))); n != 2 {
		t.Fatalf("%d postings after a tick", n)
	}
}

func TestPartialCaptureThenRefundsUpToTheLimit(t *testing.T) {
	g := newRig(t)
	p := g.pay(10000, "USD", "pm_card_visa", "manual", true)
	if p.Status != payments.RequiresCapture || p.AmountCapturable != 10000 || p.AuthorizedAt == nil {
		t.Fatalf("authorized: %+v", p)
	}
	rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture", body: map[string]any{"amount": 10001}})
	if code := problemCode(t, rec, 422); code != string(payments.CodeExceedsCapturable) {
		t.Fatalf("over-capture: %s", code)
	}
	p = decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture", body: map[string]any{"amount": 6000}}), 200)
	if p.Status != payments.Succeeded || p.AmountCaptured != 6000 || p.AmountCapturable != 0 {
		t.Fatalf("partial capture: %+v (the rest must be released)", p)
	}
	for i, amt := range []int64{2500, 2500, 1000} {
		r := decode[payments.Refund](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": amt}}), 201)
		if r.Status != "succeeded" || r.Amount != amt || r.GatewayRefundID == nil {
			t.Fatalf("refund %d: %+v", i, r)
		}
		got := decode[payments.Refund](t, g.do(req{method: "GET", path: "/refunds/" + r.ID}), 200)
		if got.ID != r.ID || got.Status != "succeeded" {
			t.Fatalf("GET refund: %+v", got)
		}
	}
	rec = g.do(req{method: "POST", path: "/payments/" + p.ID + "/refunds", body: map[string]any{"amount": 1}})
	if code := problemCode(t, rec, 422); code != string(payments.CodeExceedsRefundable) {
		t.Fatalf("one more refund: %s", code)
	}
	after := g.get(p.ID)
	if after.AmountRefunded != 6000 || after.AmountRefundPending != 0 || after.Status != payments.Succeeded {
		t.Fatalf("after refunds: %+v", after)
	}
	list := decode[struct{ Data []payments.Refund }](t, g.do(req{method: "GET", path: "/payments/" + p.ID + "/refunds"}), 200)
	if len(list.Data) != 3 {
		t.Fatalf("refund list %+v", list)
	}
	// The capture is posted by event; each refund is a ledger hold placed
	// before the gateway was asked, captured by event after it answered.
	ps := postings(t, g.consume(events.TopicTransaction, 1, forPayment(p.ID)))
	if len(ps) != 1 || ps[0].Data.Metadata["kind"] != payments.KindCapture {
		t.Fatalf("postings: %+v", ps)
	}
	holds, _ := g.ledger.state()
	if len(holds) != 3 {
		t.Fatalf("refund holds: %+v", holds)
	}
	for i, h := range holds {
		want := p.ID + ":refund:" + strconv.Itoa(i+1)
		if h.ReferenceID != want || h.FromAccountID != g.account || h.ToAccountNumber != "SYS-CLEARING-USD" || !h.Pending {
			t.Fatalf("refund hold %d: %+v", i, h)
		}
	}
	if got := g.holdEvents(t, p.ID, 3); got[events.TypeHoldCaptureRequested] != 3 {
		t.Fatalf("hold captures: %v", got)
	}
	refunds := g.consume(events.TopicPayment, 3, func(r record) bool { return r.Key == p.ID && r.Event.Type() == events.TypeRefundSucceeded })
	if len(refunds) != 3 {
		t.Fatalf("refund events: %d", len(refunds))
	}
}

func TestTwentyConcurrentCapturesCaptureOnce(t *testing.T) {
	g := newRig(t)
	p := g.pay(5000, "USD", "pm_card_visa", "manual", true)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
	)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := g.do(req{method: "POST", path: "/payments/" + p.ID + "/capture"})
			mu.Lock()
			codes[rec.Code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 1 || codes[409] != 19 {
		t.Fatalf("answers %v, want one 200 and 19 409", codes)
	}
	after := g.get(p.ID)
	if after.AmountCaptured != 5000 || after.Status != payments.Succeeded {
		t.Fatalf("after: %+v", after)
	}
	ps := postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))
	if len(ps) != 1 || ps[0].Data.Amount != 5000 {
		t.Fatalf("postings %+v", ps)
	}
	var received int64
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT amount_received FROM sandbox_intents WHERE id = $1`,
		*after.GatewayPaymentID).Scan(&received); err != nil || received != 5000 {
		t.Fatalf("the gateway received %d (%v)", received, err)
	}
}

func TestDeclinesAreRecordedPerAttemptWithANormalizedReason(t *testing.T) {
	g := newRig(t, func(c *Config) { c.Routes = "*=sandbox" })
	cases := []struct{ token, code, decline, reason string }{
		{"pm_card_visa_chargeDeclined", "card_declined", "generic_decline", "generic_decline"},
		{"pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds", "insufficient_funds"},
		{"pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card", "expired_card"},
		{"pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent", "fraudulent"},
		{"pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc", "incorrect_cvc"},
		{"pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error", "processing_error"},
		{"pm_card_chargeDeclinedLostCard", "card_declined", "lost_card", "lost_or_stolen"},
		{"pm_nonexistent", "resource_missing", "", "invalid_payment_method"},
	}
	for _, c := range cases {
		t.Run(c.token, func(t *testing.T) {
			p := g.pay(700, "USD", c.token, "automatic", true)
			e := p.LastPaymentError
			if p.Status != payments.RequiresPaymentMethod || e == nil || e.Code != c.code || e.DeclineCode != c.decline ||
				e.Reason != c.reason || e.Attempt != 1 || e.Gateway != payments.GatewaySandbox {
				t.Fatalf("payment %s, error %+v", p.Status, e)
			}
			view := decode[api.PaymentView](t, g.do(req{method: "GET", path: "/payments/" + p.ID}), 200)
			if len(view.AttemptHistory) != 1 || view.AttemptHistory[0].Status != "failed" ||
				*view.AttemptHistory[0].FailureReason != c.reason || view.AttemptHistory[0].GatewayError {
				t.Fatalf("attempts %+v", view.AttemptHistory)
			}
			evs := g.consume(events.TopicPayment, 2, forPayment(p.ID))
			var f struct {
				DeclineCode   string `json:"decline_code"`
				FailureReason string `json:"failure_reason"`
				Attempt       int    `json:"attempt"`
				Status        string `json:"status"`
			}
			if len(evs) != 2 || evs[1].Event.Type() != events.TypePaymentFailed {
				t.Fatalf("events %v", types(evs))
			}
			_ = json.Unmarshal(evs[1].Event.Data(), &f)
			if f.DeclineCode != c.decline || f.FailureReason != c.reason || f.Attempt != 1 || f.Status != string(payments.RequiresPaymentMethod) {
				t.Fatalf("payment.failed data %s", evs[1].Event.Data())
			}
		})
	}
	// A declined payment takes a new attempt with another method.
	p := g.pay(700, "USD", "pm_card_chargeDeclinedInsufficientFunds", "automatic", true)
	p = decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/confirm",
		body: map[string]any{"payment_method": "pm_card_mastercard"}}), 200)
	if p.Status != payments.Succeeded || p.Attempts != 2 || p.LastPaymentError != nil || p.AmountCaptured != 700 {
		t.Fatalf("second attempt: %+v", p)
	}
}

func TestAuthenticationRequiredThenConfirmedAgain(t *testing.T) {
	g := newRig(t)
	p := g.pay(3000, "GBP", "pm_card_authenticationRequired", "automatic", true)
	if p.Status != payments.RequiresAction || p.NextAction == nil || p.NextAction.Type != "authenticate" {
		t.Fatalf("want requires_action with next_action: %+v", p)
	}
	p = decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + p.ID + "/confirm"}), 200)
	if p.Status != payments.Succeeded || p.NextAction != nil || p.AmountCaptured != 3000 {
		t.Fatalf("after authentication: %+v", p)
	}
}

func TestCustomersSeeOnlyTheirOwnPayments(t *testing.T) {
	g := newRig(t)
	alice, bob := uuid.NewString(), uuid.NewString()
	account := g.newAccount(alice, "USD")
	body := map[string]any{"account_id": account, "amount": 900, "currency": "USD", "payment_method": "pm_card_visa",
		"capture_method": "manual", "confirm": true}
	p := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", body: body, sub: alice, role: auth.RoleCustomer}), 201)
	if p.UserID != alice {
		t.Fatalf("owner %s, want the customer %s", p.UserID, alice)
	}
	for _, r := range []req{
		{method: "GET", path: "/payments/" + p.ID},
		{method: "POST", path: "/payments/" + p.ID + "/capture"},
		{method: "POST", path: "/payments/" + p.ID + "/cancel"},
		{method: "GET", path: "/payments/" + p.ID + "/refunds"},
	} {
		r.sub, r.role = bob, auth.RoleCustomer
		if code := problemCode(t, g.do(r), 404); code != "not_found" {
			t.Fatalf("%s %s as someone else: %s", r.method, r.path, code)
		}
	}
	if code := problemCode(t, g.do(req{method: "GET", path: "/payments?account_id=" + account, sub: bob, role: auth.RoleCustomer}), 404); code != "not_found" {
		t.Fatalf("bob lists the payments of alice's account: %s", code)
	}
	if list := decode[struct{ Data []payments.Payment }](t, g.do(req{method: "GET", path: "/payments", sub: bob, role: auth.RoleCustomer}), 200); len(list.Data) != 0 {
		t.Fatalf("bob lists %d payments of alice", len(list.Data))
	}
	list := decode[struct{ Data []payments.Payment }](t, g.do(req{method: "GET", path: "/payments?account_id=" + account, sub: alice, role: auth.RoleCustomer}), 200)
	if len(list.Data) != 1 {
		t.Fatalf("alice lists %d payments", len(list.Data))
	}
	body["user_id"] = bob
	if code := problemCode(t, g.do(req{method: "POST", path: "/payments", body: body, sub: alice, role: auth.RoleCustomer}), 422); code != "validation_failed" {
		t.Fatalf("a customer paying as someone else: %s", code)
	}
}

func TestListPaymentsPagesWithAKeysetCursor(t *testing.T) {
	g := newRig(t)
	invoice := g.openInvoice(t, g.account, "USD", 10000)
	var ids []string
	for i := 0; i < 5; i++ {
		g.clock.Advance(1e6)
		p := g.pay(100+int64(i), "USD", "pm_card_visa", "automatic", true, func(b map[string]any) { b["invoice_id"] = invoice })
		ids = append(ids, p.ID)
	}
	g.pay(999, "USD", "", "manual", false) // another status, no invoice
	var seen []string
	cursor := ""
	for page := 0; page < 5; page++ {
		path := "/payments?limit=2&status=succeeded&invoice_id=" + invoice + "&account_id=" + g.account
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		l := decode[struct {
			Data       []payments.Payment `json:"data"`
			NextCursor string             `json:"next_cursor"`
			HasMore    bool               `json:"has_more"`
		}](t, g.do(req{method: "GET", path: path}), 200)
		for _, p := range l.Data {
			seen = append(seen, p.ID)
		}
		if !l.HasMore {
			break
		}
		cursor = l.NextCursor
	}
	if len(seen) != 5 {
		t.Fatalf("paged %d payments, want 5", len(seen))
	}
	for i, id := range seen { // newest first
		if id != ids[4-i] {
			t.Fatalf("order: %v, want the reverse of %v", seen, ids)
		}
	}
}
