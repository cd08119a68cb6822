package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/events"
)

// deliverAll sends evs as one batch delivery and decodes the receiver's
// answer.
func (g *rig) deliverAll(t *testing.T, evs ...events.Event) events.Result {
	t.Helper()
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, g.kit.Delivery(t, evs...))
	if rec.Code != 200 {
		t.Fatalf("batch delivery: %d %s", rec.Code, rec.Body)
	}
	var res events.Result
	if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	return res
}

// invoiceRows is what the read model holds of invoices, in their order,
// without the ids (two runs of one story on other invoices compare equal).
func (g *rig) invoiceRows(t *testing.T, invoices []string) []string {
	t.Helper()
	out := make([]string, len(invoices))
	for i, id := range invoices {
		var acct, cur, status, source string
		var user *string
		var total, paid, due int64
		var rank int
		err := g.d.Pool.QueryRow(context.Background(), `SELECT account_id::text, user_id::text, currency, total, amount_paid,
			amount_due, status, status_rank, source FROM payment_invoices WHERE id = $1`, id).
			Scan(&acct, &user, &cur, &total, &paid, &due, &status, &rank, &source)
		if err != nil {
			t.Fatalf("invoice %d (%s): %v", i, id, err)
		}
		out[i] = fmt.Sprintf("%s user=%v %s total=%d paid=%d due=%d %s/%d %s", acct, user != nil, cur, total, paid, due, status, rank, source)
	}
	return out
}

// invoiceStory is a delivery of invoice events on four invoices (and what
// the read model knew of them before): created then finalized, each
// invoice's facts in and out of order, several facts of one invoice within
// one status, a draft that replaces a draft. ids are the invoices.
func invoiceStory(t *testing.T, account string, ids []string) (before, delivery []events.Event) {
	e := func(typ string, inv int, status string, total, paid int64) events.Event {
		return invoiceEvent(t, typ, ids[inv], account, "USD", status, total, paid)
	}
	before = []events.Event{e(events.TypeInvoiceFinalized, 2, "open", 1000, 600)}
	delivery = []events.Event{
		e(events.TypeInvoiceCreated, 0, "draft", 500, 0),
		e(events.TypeInvoiceCreated, 1, "draft", 700, 0),
		e(events.TypeInvoiceFinalized, 0, "open", 500, 0),
		e(events.TypeInvoicePaid, 1, "paid", 700, 700), // before its finalized: that changes nothing
		e(events.TypeInvoiceFinalized, 1, "open", 700, 0),
		// Known open with 600 paid: uncollectible with 200 paid wins (a
		// higher status, keeping the 600), the next uncollectible with 500
		// does not (500 < 600 stored): the first one's total and due stay.
		e(events.TypeInvoiceUncollectible, 2, "uncollectible", 1000, 200),
		e(events.TypeInvoiceUncollectible, 2, "uncollectible", 1100, 500),
		e(events.TypeInvoiceCreated, 3, "draft", 100, 0),
		e(events.TypeInvoiceCreated, 3, "draft", 300, 0), // a draft replaces a draft
		e(events.TypeInvoiceOverdue, 0, "open", 500, 100),
	}
	return before, delivery
}

// A batch delivery of invoice events is applied in one transaction, the
// read model left as the same events delivered one by one leave it.
func TestABatchOfInvoiceEventsIsOneTransactionWithOneByOnesFacts(t *testing.T) {
	g := newRig(t)
	newIDs := func() []string {
		return []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	}
	single, batched := newIDs(), newIDs()

	before, delivery := invoiceStory(t, g.account, single)
	for _, ev := range append(before, delivery...) {
		if rec := g.deliver(ev); rec.Code != 200 {
			t.Fatalf("single delivery: %d %s", rec.Code, rec.Body)
		}
	}
	want := g.invoiceRows(t, single)

	before, delivery = invoiceStory(t, g.account, batched)
	for _, ev := range before {
		g.deliver(ev)
	}
	if res := g.deliverAll(t, delivery...); res.Processed != len(delivery) || res.Parked+res.Duplicates+res.Ignored != 0 {
		t.Fatalf("batch: %+v", res)
	}
	if got := g.invoiceRows(t, batched); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("batched facts:\n%s\nwant (one by one):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// One transaction: every processed_events row of the delivery and every
	// invoice row it wrote carry the same xmin.
	evIDs := make([]string, len(delivery))
	for i, ev := range delivery {
		evIDs[i] = ev.ID()
	}
	var rows, xacts int
	err := g.d.Pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT x) FROM (
			SELECT xmin::text AS x FROM processed_events WHERE consumer = $1 AND id = ANY($2)
			UNION ALL SELECT xmin::text FROM payment_invoices WHERE id = ANY($3::uuid[])) t`,
		name, evIDs, batched).Scan(&rows, &xacts)
	if err != nil || rows != len(delivery)+len(batched) || xacts != 1 {
		t.Fatalf("%d rows written in %d transactions, want %d in 1 (%v)", rows, xacts, len(delivery)+len(batched), err)
	}

	// The same delivery again: duplicates, nothing changes.
	if res := g.deliverAll(t, delivery...); res.Duplicates != len(delivery) || res.Processed != 0 {
		t.Fatalf("redelivery: %+v", res)
	}
	var xacts2 int
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(DISTINCT xmin::text) FROM payment_invoices WHERE id = ANY($1::uuid[])`,
		batched).Scan(&xacts2); err != nil || xacts2 != 1 {
		t.Fatalf("redelivery rewrote invoices: %d transactions (%v)", xacts2, err)
	}
	if got := g.invoiceRows(t, batched); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after the redelivery:\n%s", strings.Join(got, "\n"))
	}
}

// A forged invoice event, and one generate-invoice's own whose facts are
// invalid, are parked alone; the rest of their batch applies.
func TestAPoisonInvoiceEventInABatchIsParkedAlone(t *testing.T) {
	g := newRig(t)
	a, b, c := uuid.NewString(), uuid.NewString(), uuid.NewString()
	forged := event(t, "handle-webhook", events.TypeInvoiceVoided, b, map[string]any{"invoice_id": b,
		"account_id": g.account, "currency": "USD", "total": 1, "status": "void"})
	invalid := event(t, "generate-invoice", events.TypeInvoiceCreated, c, map[string]any{"invoice_id": c,
		"account_id": "not-an-account", "currency": "USD", "total": 1})
	res := g.deliverAll(t,
		invoiceEvent(t, events.TypeInvoiceFinalized, a, g.account, "USD", "open", 900, 0), forged,
		invoiceEvent(t, events.TypeInvoiceFinalized, b, g.account, "USD", "open", 800, 0), invalid)
	if res.Processed != 2 || res.Parked != 2 {
		t.Fatalf("batch: %+v, want 2 processed and 2 parked", res)
	}
	if got := g.invoiceRows(t, []string{a, b}); !strings.Contains(got[0], "total=900") || !strings.Contains(got[1], "open/1") {
		t.Fatalf("facts: %v", got)
	}
	var letters int
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE consumer = $1 AND event_id IN ($2, $3)`,
		name, forged.ID(), invalid.ID()).Scan(&letters); err != nil || letters != 2 {
		t.Fatalf("%d dead letters (%v)", letters, err)
	}
	if res := g.deliverAll(t, forged, invalid); res.Processed != 0 || res.Parked+res.Duplicates != 2 {
		t.Fatalf("redelivery of the poison: %+v", res)
	}
}

// TestInvoiceFinalizedIsCollectedWithTheDefaultMethodOnce in batch form:
// every charge_automatically invoice of a delivery is collected once, the
// same invoice finalized twice in it and redelivered included; a
// send_invoice invoice is not, nor one the delivery also says is paid
// (facts come before collection).
func TestInvoicesFinalizedInABatchAreCollectedOnce(t *testing.T) {
	g := newRig(t)
	g.saveMethod(t, "pm_card_visa", true)
	one, two, sent, paid := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
	delivery := []events.Event{
		invoiceFinalized(t, g.account, one, 4200),
		invoiceFinalized(t, g.account, two, 1300),
		invoiceFinalized(t, g.account, one, 4200), // another event of the same invoice
		event(t, "generate-invoice", events.TypeInvoiceFinalized, sent, map[string]any{"invoice_id": sent,
			"account_id": g.account, "currency": "USD", "amount_due": 100, "collection_method": "send_invoice"}),
		invoiceFinalized(t, g.account, paid, 500),
		invoiceEvent(t, events.TypeInvoicePaid, paid, g.account, "USD", "paid", 500, 500),
	}
	if res := g.deliverAll(t, delivery...); res.Processed != len(delivery) {
		t.Fatalf("batch: %+v", res)
	}
	if res := g.deliverAll(t, delivery...); res.Duplicates != len(delivery) {
		t.Fatalf("redelivery: %+v", res)
	}
	for inv, amount := range map[string]int64{one: 4200, two: 1300} {
		p := g.get(payments.InvoicePaymentID(inv))
		if p.Status != payments.Succeeded || p.AmountCaptured != amount || p.InvoiceID == nil || *p.InvoiceID != inv || p.UserID != g.admin {
			t.Fatalf("payment of %s: %+v", inv, p)
		}
		if ps, as := g.charges(t, inv); ps != 1 || as != 1 {
			t.Fatalf("invoice %s: %d payments, %d gateway attempts", inv, ps, as)
		}
		ps := postings(t, g.drain(events.TopicTransaction, forPayment(p.ID)))
		if len(ps) != 2 || ps[0].Data.Metadata["kind"] != payments.KindCapture || ps[1].Data.Metadata["kind"] != payments.KindSettlement {
			t.Fatalf("postings of %s: %+v", inv, ps)
		}
	}
	for _, inv := range []string{sent, paid} {
		if ps, _ := g.charges(t, inv); ps != 0 {
			t.Fatalf("invoice %s was collected: %d payments", inv, ps)
		}
	}
}

// TestDunningRetryIsANewAttemptWithTheNewDefaultMethod in batch form: the
// retry and the facts of other invoices in one delivery.
func TestADunningRetryInABatchIsOneNewAttempt(t *testing.T) {
	g := newRig(t)
	g.saveMethod(t, "pm_card_chargeDeclinedInsufficientFunds", true)
	invoice, other := uuid.NewString(), uuid.NewString()
	g.deliver(invoiceFinalized(t, g.account, invoice, 990))
	g.saveMethod(t, "pm_card_visa", true)
	retry := event(t, "generate-invoice", events.TypeInvoicePaymentRetryRequested, invoice, map[string]any{
		"invoice_id": invoice, "account_id": g.account, "currency": "USD", "amount_due": 990,
		"collection_method": "charge_automatically", "attempt": 2})
	delivery := []events.Event{invoiceEvent(t, events.TypeInvoiceCreated, other, g.account, "USD", "draft", 10, 0), retry}
	if res := g.deliverAll(t, delivery...); res.Processed != 2 {
		t.Fatalf("batch: %+v", res)
	}
	g.deliverAll(t, delivery...)
	if p := g.get(payments.InvoicePaymentID(invoice)); p.Status != payments.Succeeded || p.Attempts != 2 || p.AmountCaptured != 990 {
		t.Fatalf("after the retry: %+v", p)
	}
}
