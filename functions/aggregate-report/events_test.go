package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// rollupRows renders the database's day rollups of one day, and the
// account rollups of that day, as sorted lines.
func (g *rig) rollupRows(d time.Time) []string {
	g.t.Helper()
	rows, err := g.d.Pool.Query(context.Background(), `
		SELECT metric || ' ' || dim || ' ' || currency || ' = ' || count || '/' || amount FROM report_rollups
		WHERE grain = 'd' AND bucket = $1
		UNION ALL
		SELECT 'acct:' || left(account_id::text, 4) || ' ' || metric || ' ' || dim || ' ' || currency || ' = ' || count || '/' || amount
		FROM report_account_rollups WHERE day = $1::date`, d)
	if err != nil {
		g.t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			g.t.Fatal(err)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func (g *rig) count(sql string, args ...any) int64 {
	g.t.Helper()
	var n int64
	if err := g.d.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		g.t.Fatal(err)
	}
	return n
}

// fixed ids make the expected rows readable: the first four characters
// name the account.
const (
	acctA = "aaaa0000-0000-4000-8000-000000000001"
	acctB = "bbbb0000-0000-4000-8000-000000000002"
	userA = "a5e00000-0000-4000-8000-00000000000a"
	userB = "b5e00000-0000-4000-8000-00000000000b"
)

// Every consumed type, delivered over HTTP as the trigger would, lands in
// the database's rollups and in the event log.
func TestEveryEventTypeLandsInTheDatabase(t *testing.T) {
	g := newRig(t)
	pay, inv, sub := id(), id(), id()
	d := day("2026-03-02")
	h := func(hh int) time.Time { return d.Add(time.Duration(hh) * time.Hour) }
	evs := []events.Event{
		account(t, h(1), acctA, userA, "ACC-A", "USD"),
		transfer(t, h(2), acctA, acctB, 1050, "USD", "posted"),
		transfer(t, h(2), acctA, acctB, 99, "USD", "insufficient_funds"),
		hold(t, h(3), "billfn.hold.created", acctA, 700, 0, "USD"),
		hold(t, h(3), "billfn.hold.captured", acctA, 700, 600, "USD"),
		hold(t, h(3), "billfn.hold.voided", acctA, 100, 0, "USD"),
		hold(t, h(3), "billfn.hold.expired", acctA, 50, 0, "USD"),
		invoice(t, h(4), "created", invoiceFields{id: inv, account: acctA, cur: "USD", status: "draft", due: "2026-03-31", total: 12000, dueAmount: 12000}),
		invoice(t, h(4), "finalized", invoiceFields{id: inv, account: acctA, cur: "USD", status: "open", due: "2026-03-31", total: 12000, dueAmount: 12000}),
		invoice(t, h(5), "overdue", invoiceFields{id: inv, account: acctA, cur: "USD", status: "open", due: "2026-03-31", total: 12000, dueAmount: 12000}),
		invoice(t, h(6), "paid", invoiceFields{id: inv, account: acctA, cur: "USD", status: "paid", due: "2026-03-31", total: 12000, paid: 12000}),
		invoice(t, h(6), "voided", invoiceFields{id: id(), account: acctA, cur: "USD", status: "void", total: 500, dueAmount: 500}),
		invoice(t, h(6), "uncollectible", invoiceFields{id: id(), account: acctA, cur: "USD", status: "uncollectible", total: 800, dueAmount: 800}),
		subscription(t, h(7), "created", sub, acctA, "active", 2900, "USD"),
		subscription(t, h(8), "updated", sub, acctA, "active", 4900, "USD"),
		subscription(t, h(9), "canceled", sub, acctA, "canceled", 4900, "USD"),
		payment(t, h(10), "created", paymentFields{id: pay, account: acctA, cur: "USD", gateway: "stripe", amount: 2000}),
		payment(t, h(10), "authorized", paymentFields{id: pay, account: acctA, cur: "USD", gateway: "stripe", amount: 2000}),
		payment(t, h(11), "captured", paymentFields{id: pay, account: acctA, cur: "USD", gateway: "stripe", amount: 2000, captured: 2000}),
		payment(t, h(11), "failed", paymentFields{id: id(), account: acctA, cur: "USD", gateway: "stripe", amount: 300, decline: "card_declined"}),
		payment(t, h(11), "canceled", paymentFields{id: id(), account: acctA, cur: "USD", gateway: "sandbox", amount: 400}),
		refund(t, h(12), "succeeded", "re_1", pay, acctA, 500, "USD", "stripe"),
		refund(t, h(12), "failed", "re_2", pay, acctA, 100, "USD", "stripe"),
		dispute(t, h(13), "stripe", "dp_1", pay, 2000, "USD"),
		dispute(t, h(14), "stripe", "dp_1", pay, 2000, "USD"), // the same dispute again
		// and capture-payment's report of it
		newEvent(t, "capture-payment", "billfn.payment.disputed", pay, h(14), map[string]any{"payment_id": pay, "account_id": acctA,
			"amount": 2000, "amount_captured": 2000, "currency": "USD", "gateway": "stripe", "status": "succeeded", "disputed_at": h(14)}),
	}
	res := g.deliver(evs...)
	if res.Processed != len(evs) || res.Parked != 0 {
		t.Fatalf("delivery result %+v", res)
	}
	want := []string{
		"account.created  USD = 1/0", "acct:aaaa account.created  USD = 1/0",
		"acct:aaaa dispute.opened stripe USD = 1/2000",
		"acct:aaaa hold.captured  USD = 1/600", "acct:aaaa hold.created  USD = 1/700", "acct:aaaa hold.expired  USD = 1/50", "acct:aaaa hold.voided  USD = 1/100",
		"acct:aaaa invoice.created  USD = 1/12000", "acct:aaaa invoice.finalized  USD = 1/12000", "acct:aaaa invoice.overdue  USD = 1/12000",
		"acct:aaaa invoice.paid  USD = 1/12000", "acct:aaaa invoice.uncollectible  USD = 1/800", "acct:aaaa invoice.voided  USD = 1/500",
		"acct:aaaa mrr.churned  USD = 1/4900", "acct:aaaa mrr.expansion  USD = 1/2000", "acct:aaaa mrr.new  USD = 1/2900",
		"acct:aaaa payment.authorized stripe USD = 1/2000", "acct:aaaa payment.canceled sandbox USD = 1/400", "acct:aaaa payment.captured stripe USD = 1/2000",
		"acct:aaaa payment.created stripe USD = 1/2000", "acct:aaaa payment.decline stripe|card_declined USD = 1/300", "acct:aaaa payment.failed stripe USD = 1/300",
		"acct:aaaa payment.succeeded stripe USD = 1/2000", "acct:aaaa refund.failed stripe USD = 1/100", "acct:aaaa refund.succeeded stripe USD = 1/500",
		"acct:aaaa subscription.canceled  USD = 1/0", "acct:aaaa subscription.created  USD = 1/0",
		"acct:aaaa transfer.posted  USD = 1/1050", "acct:aaaa transfer.rejected insufficient_funds USD = 1/99",
		"acct:bbbb transfer.received  USD = 1/1050",
		"dispute.opened stripe USD = 1/2000",
		"hold.captured  USD = 1/600", "hold.created  USD = 1/700", "hold.expired  USD = 1/50", "hold.voided  USD = 1/100",
		"invoice.created  USD = 1/12000", "invoice.finalized  USD = 1/12000", "invoice.overdue  USD = 1/12000",
		"invoice.paid  USD = 1/12000", "invoice.uncollectible  USD = 1/800", "invoice.voided  USD = 1/500",
		"mrr.churned  USD = 1/4900", "mrr.expansion  USD = 1/2000", "mrr.new  USD = 1/2900",
		"payment.authorized stripe USD = 1/2000", "payment.canceled sandbox USD = 1/400", "payment.captured stripe USD = 1/2000",
		"payment.created stripe USD = 1/2000", "payment.decline stripe|card_declined USD = 1/300", "payment.failed stripe USD = 1/300",
		"payment.succeeded stripe USD = 1/2000", "refund.failed stripe USD = 1/100", "refund.succeeded stripe USD = 1/500",
		"subscription.canceled  USD = 1/0", "subscription.created  USD = 1/0",
		"transfer.posted  USD = 1/1050", "transfer.rejected insufficient_funds USD = 1/99",
	}
	if got := g.rollupRows(d); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("day rollups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The hour rows add up to the day rows.
	if hours, days := g.count(`SELECT sum(count) FROM report_rollups WHERE grain = 'h'`), g.count(`SELECT sum(count) FROM report_rollups WHERE grain = 'd'`); hours != days {
		t.Fatalf("hour rollups count %d, day rollups %d", hours, days)
	}
	// Every event is in the log with its envelope and data.
	var src, typ, subject string
	var when time.Time
	var data []byte
	if err := g.d.Pool.QueryRow(context.Background(), `SELECT source, type, time, subject, data FROM report_events WHERE id = $1`,
		evs[1].ID()).Scan(&src, &typ, &when, &subject, &data); err != nil {
		t.Fatal(err)
	}
	var logged map[string]any
	_ = json.Unmarshal(data, &logged)
	if src != "/functions/process-transaction" || typ != "billfn.transaction.posted" || !when.Equal(h(2)) ||
		subject != evs[1].Subject() || logged["amount"] != float64(1050) {
		t.Fatalf("logged event: %s %s %s %s %v", src, typ, when, subject, logged)
	}
	if n := g.count(`SELECT count(*) FROM report_events`); n != int64(len(evs)) {
		t.Fatalf("log holds %d events, want %d", n, len(evs))
	}
	if owner := g.count(`SELECT count(*) FROM report_accounts WHERE account_id = $1 AND user_id = $2`, acctA, userA); owner != 1 {
		t.Fatal("account ownership was not learnt")
	}
}

// The same event delivered again (alone, in a batch, twice in one batch, in
// another delivery mode) is counted once.
func TestDuplicatesCountOnce(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-03")
	ev := transfer(t, d.Add(time.Hour), acctA, acctB, 1000, "USD", "posted")
	other := transfer(t, d.Add(2*time.Hour), acctA, acctB, 1, "USD", "posted")
	if r := g.deliver(ev); r.Processed != 1 {
		t.Fatalf("first delivery %+v", r)
	}
	if r := g.deliver(ev); r.Duplicates != 1 {
		t.Fatalf("redelivery %+v", r)
	}
	if r := g.deliver(ev, other, other); r.Processed != 1 || r.Duplicates != 2 {
		t.Fatalf("batch with duplicates %+v", r)
	}
	// Binary mode, as Knative's KafkaSource delivers, with the producer's
	// origin proof in ce- headers.
	testenv.SignOrigin(&ev)
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(ev.Data()))
	for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": ev.ID(), "Ce-Source": ev.Source(), "Ce-Type": ev.Type(),
		"Ce-Time": ev.Time().Format(time.RFC3339Nano), "Content-Type": "application/json", "Ce-Subject": ev.Subject(),
		"Ce-Originsig": fmt.Sprint(ev.Extensions()[events.OriginSigExt]), "Ce-Originkid": fmt.Sprint(ev.Extensions()[events.OriginKidExt])} {
		req.Header.Set(k, v)
	}
	req.Header.Set(events.SignatureHeader, g.kit.SignEvent(ev.Data()))
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"duplicates":1`) {
		t.Fatalf("binary-mode redelivery: %d %s", rec.Code, rec.Body)
	}
	want := []string{"acct:aaaa transfer.posted  USD = 2/1001", "acct:bbbb transfer.received  USD = 2/1001", "transfer.posted  USD = 2/1001"}
	if got := g.rollupRows(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("rollups %q, want %q", got, want)
	}
	if n := g.count(`SELECT count(*) FROM report_events`); n != 2 {
		t.Fatalf("log holds %d events, want 2", n)
	}
}

// The event log is aggregate-report's dedupe: an event is appended once by
// its (source, id), in the delivery's transaction, and only an appended event
// is aggregated. A processed_events row beside it would repeat that key (a
// row, two index entries and, for a single event, a statement per delivery),
// so the receiver writes none for this consumer, alone or in a batch, first
// delivery or redelivery; duplicates are still told apart by the log.
func TestTheEventLogIsTheOnlyDedupe(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-04")
	one := transfer(t, d.Add(time.Hour), acctA, acctB, 700, "USD", "posted")
	two := transfer(t, d.Add(2*time.Hour), acctA, acctB, 5, "USD", "posted")
	three := transfer(t, d.Add(3*time.Hour), acctB, acctA, 9, "USD", "posted")
	if r := g.deliver(one); r.Processed != 1 {
		t.Fatalf("alone: %+v", r)
	}
	if r := g.deliver(one, two, three, three); r.Processed != 2 || r.Duplicates != 2 {
		t.Fatalf("batch: %+v, want 2 processed and 2 duplicates", r)
	}
	if r := g.deliver(two); r.Duplicates != 1 {
		t.Fatalf("redelivered alone: %+v", r)
	}
	if n := g.count(`SELECT count(*) FROM processed_events WHERE consumer = 'aggregate-report'`); n != 0 {
		t.Fatalf("%d processed_events rows for aggregate-report, want none: the event log dedupes", n)
	}
	if n := g.count(`SELECT count(*) FROM report_events`); n != 3 {
		t.Fatalf("log holds %d events, want 3", n)
	}
	want := []string{"acct:aaaa transfer.posted  USD = 2/705", "acct:aaaa transfer.received  USD = 1/9",
		"acct:bbbb transfer.posted  USD = 1/9", "acct:bbbb transfer.received  USD = 2/705",
		"transfer.posted  USD = 3/714"}
	if got := g.rollupRows(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("rollups %q, want %q", got, want)
	}
}

// Reordered deliveries end in the same figures: additive rollups do not
// depend on order, and state (MRR, receivables, disputes) keeps the newest
// fact by event time.
func TestReorderedDeliveriesGiveTheSameFigures(t *testing.T) {
	d := day("2026-03-04")
	h := func(hh int) time.Time { return d.Add(time.Duration(hh) * time.Hour) }
	sub, inv, pay := id(), id(), id()
	due := "2026-03-01"
	evs := []events.Event{
		account(t, h(0), acctA, userA, "ACC-A", "USD"),
		subscription(t, h(1), "created", sub, acctA, "active", 2900, "USD"),
		subscription(t, h(2), "updated", sub, acctA, "active", 9900, "USD"),
		invoice(t, h(3), "finalized", invoiceFields{id: inv, account: acctA, cur: "USD", status: "open", due: due, total: 5000, dueAmount: 5000, finalizedAt: ptr(h(3))}),
		payment(t, h(4), "captured", paymentFields{id: pay, account: acctA, invoice: inv, cur: "USD", gateway: "stripe", amount: 2000, captured: 2000}),
		transfer(t, h(4), acctB, acctA, 2000, "USD", "posted", withMeta("payment_capture", pay, "stripe")),
		dispute(t, h(5), "stripe", "dp_9", pay, 2000, "USD"),
		transfer(t, h(6), acctA, acctB, 300, "USD", "posted"),
	}
	reversed := slices.Clone(evs)
	slices.Reverse(reversed)
	type figures struct {
		Summary store.Summary
		MRR     store.MRR
		Aging   store.Aging
		Recon   store.Reconciliation
	}
	collect := func(order []events.Event, oneByOne bool) figures {
		g := newRig(t)
		g.setNow(d.AddDate(0, 0, 3))
		if oneByOne {
			for _, ev := range order {
				g.deliver(ev)
			}
		} else {
			g.deliver(order...)
		}
		var f figures
		g.getJSON("/reports/summary?from=2026-03-04&to=2026-03-05", asAdmin, &f.Summary)
		g.getJSON("/reports/mrr?month=2026-03", asAdmin, &f.MRR)
		g.getJSON("/reports/aging?as_of=2026-03-05", asAdmin, &f.Aging)
		g.getJSON("/reports/reconciliation?date=2026-03-04", asAdmin, &f.Recon)
		return f
	}
	inOrder := collect(evs, false)
	back := collect(reversed, true)
	if m := inOrder.MRR.Currencies; len(m) != 1 || m[0].Closing != 9900 || m[0].ActiveSubscriptions != 1 {
		t.Fatalf("in-order MRR %+v", m)
	}
	if a := inOrder.Aging.Currencies; len(a) != 1 || a[0].Total.Amount != 3000 || a[0].Buckets[1].Amount != 3000 {
		t.Fatalf("in-order aging %+v (5000 due, 2000 paid, 4 days late)", a)
	}
	// The closing MRR and every other figure agree; only how the MRR got
	// there differs (reversed, the update arrives first and is "new").
	if inOrder.MRR.Currencies[0].Closing != back.MRR.Currencies[0].Closing ||
		inOrder.MRR.Currencies[0].ActiveSubscriptions != back.MRR.Currencies[0].ActiveSubscriptions {
		t.Fatalf("MRR differs: %+v vs %+v", inOrder.MRR, back.MRR)
	}
	for _, s := range []*store.Summary{&inOrder.Summary, &back.Summary} {
		s.Currencies[0].MRR = store.MRRMovements{}
		s.Currencies[0].Subscriptions = store.SubscriptionCount{}
	}
	for name, pair := range map[string][2]any{
		"summary": {inOrder.Summary, back.Summary}, "aging": {inOrder.Aging, back.Aging}, "recon": {inOrder.Recon, back.Recon},
	} {
		a, _ := json.Marshal(pair[0])
		b, _ := json.Marshal(pair[1])
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs with reordering:\n in order %s\n reversed %s", name, a, b)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// A poison event in a batch is parked in dead_letters; the rest is applied.
func TestPoisonEventIsParkedAndTheRestApplied(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-05")
	good := transfer(t, d.Add(time.Hour), acctA, acctB, 700, "USD", "posted")
	bad := newEvent(t, "process-transaction", "billfn.transaction.posted", id(), d.Add(time.Hour),
		map[string]any{"id": id(), "from_account_id": acctA, "to_account_id": acctB, "amount": "7.00", "currency": "USD"})
	res := g.deliver(good, bad)
	if res.Processed != 1 || res.Parked != 1 {
		t.Fatalf("result %+v, want one processed and one parked", res)
	}
	if n := g.count(`SELECT count(*) FROM dead_letters WHERE consumer = 'aggregate-report' AND event_id = $1`, bad.ID()); n != 1 {
		t.Fatal("the poison event is not in dead_letters")
	}
	if n := g.count(`SELECT count(*) FROM report_events WHERE id = $1`, bad.ID()); n != 0 {
		t.Fatal("a parked event must not be in the log (it was never aggregated)")
	}
	if got := g.rollupRows(d); !slices.Contains(got, "transfer.posted  USD = 1/700") {
		t.Fatalf("the good event was not applied: %q", got)
	}
}

// Types the function does not aggregate are acknowledged, not logged.
func TestUnconsumedTypesAreAcknowledgedNotLogged(t *testing.T) {
	g := newRig(t)
	ev := newEvent(t, "generate-invoice", "billfn.notification.requested", id(), day("2026-03-05"), map[string]any{"kind": "invoice_overdue"})
	g.deliver(ev)
	if n := g.count(`SELECT count(*) FROM report_events`); n != 0 {
		t.Fatalf("log holds %d events", n)
	}
}

// Deliveries must be authenticated: an unsigned one is refused.
func TestUnsignedDeliveryIsRefused(t *testing.T) {
	g := newRig(t)
	ev := transfer(t, day("2026-03-05"), acctA, acctB, 1, "USD", "posted")
	testenv.SignOrigin(&ev) // its producer's proof: what is missing here is the delivery's
	body, _ := events.Marshal(ev)
	rec := g.request(http.MethodPost, "/", anonymous, body, "Content-Type", events.ContentTypeStructured)
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `"code":"unauthorized"`) {
		t.Fatalf("unsigned delivery: %d %s", rec.Code, rec.Body)
	}
	// A service token is a valid alternative to a signature.
	rec = g.request(http.MethodPost, "/", asService, body, "Content-Type", events.ContentTypeStructured)
	if rec.Code != http.StatusOK {
		t.Fatalf("service-token delivery: %d %s", rec.Code, rec.Body)
	}
	if n := g.count(`SELECT count(*) FROM report_events`); n != 1 {
		t.Fatal(fmt.Sprint("log holds ", n))
	}
}
