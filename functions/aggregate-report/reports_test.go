package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/events"
)

// Receivables as of a date: each open invoice in its bracket by days past
// due, partial captures deducted, paid and voided invoices gone, and the
// same invoices seen as of an earlier date.
func TestAgingBucketsReceivablesAsOfAnyDate(t *testing.T) {
	g := newRig(t)
	fin := day("2026-01-01").Add(9 * time.Hour)
	open := func(due string, total int64) (string, events.Event) {
		inv := id()
		return inv, invoice(t, fin, "finalized", invoiceFields{id: inv, account: acctA, cur: "USD", status: "open", due: due,
			total: total, dueAmount: total, finalizedAt: &fin})
	}
	asOf := "2026-04-10"
	_, notDue := open("2026-04-20", 100)     // current
	_, dueToday := open("2026-04-10", 200)   // current (0 days past due)
	_, late5 := open("2026-04-05", 300)      // 1-30
	_, late30 := open("2026-03-11", 400)     // 1-30 (30 days)
	_, late31 := open("2026-03-10", 500)     // 31-60
	_, late75 := open("2026-01-25", 600)     // 61-90
	inv91, late91 := open("2026-01-09", 700) // 90+
	invPaid, paidOne := open("2026-03-01", 800)
	invPart, partial := open("2026-03-01", 1000)
	g.deliver(notDue, dueToday, late5, late30, late31, late75, late91, paidOne, partial,
		account(t, fin, acctA, userA, "ACC-A", "USD"),
		// 250 captured on the partial invoice in February
		payment(t, day("2026-02-10"), "captured", paymentFields{id: id(), account: acctA, invoice: invPart, cur: "USD", gateway: "stripe", amount: 250, captured: 250}),
		// paid in March, written off on April 12 (after the as-of date)
		invoice(t, day("2026-03-05"), "paid", invoiceFields{id: invPaid, account: acctA, cur: "USD", status: "paid", due: "2026-03-01", total: 800, paid: 800}),
		invoice(t, day("2026-04-12"), "uncollectible", invoiceFields{id: inv91, account: acctA, cur: "USD", status: "uncollectible", due: "2026-01-09", total: 700, dueAmount: 700}),
	)
	var a store.Aging
	g.getJSON("/reports/aging?as_of="+asOf, asAdmin, &a)
	if len(a.Currencies) != 1 {
		t.Fatalf("aging %+v", a)
	}
	got := map[string]string{}
	for _, b := range a.Currencies[0].Buckets {
		got[b.Bucket] = strconv.FormatInt(b.Count, 10) + "/" + strconv.FormatInt(b.Amount, 10)
	}
	// partial: 1000 − 250 = 750, 40 days late → 31-60
	want := map[string]string{"current": "2/300", "1-30": "2/700", "31-60": "2/1250", "61-90": "1/600", "90+": "1/700"}
	if !reflect.DeepEqual(got, want) || a.Currencies[0].Total != (store.Figure{Count: 8, Amount: 3550}) {
		t.Fatalf("aging as of %s: %v total %v, want %v", asOf, got, a.Currencies[0].Total, want)
	}
	// As of the end of 2026-02-01 the paid invoice was still open, the
	// partial capture not yet made, and the write-off far away.
	g.getJSON("/reports/aging?as_of=2026-02-01", asAdmin, &a)
	if tot := a.Currencies[0].Total; tot.Count != 9 || tot.Amount != 4600 {
		t.Fatalf("aging as of 2026-02-01: %+v", a.Currencies[0])
	}
	// Before finalization nothing was receivable.
	g.getJSON("/reports/aging?as_of=2025-12-31", asAdmin, &a)
	if len(a.Currencies) != 0 {
		t.Fatalf("aging before any finalization: %+v", a)
	}
	// The owner sees the same; someone else sees nothing.
	g.getJSON("/reports/aging?as_of="+asOf, asCustomer(userA), &a)
	if a.Currencies[0].Total.Amount != 3550 {
		t.Fatalf("owner's aging %+v", a)
	}
	g.getJSON("/reports/aging?as_of="+asOf, asCustomer(userB), &a)
	if len(a.Currencies) != 0 {
		t.Fatalf("stranger's aging %+v", a)
	}
}

// MRR bridge per month: opening, movements, closing, ARR, subscriptions.
func TestMRRBridgeAcrossMonths(t *testing.T) {
	g := newRig(t)
	s1, s2, s3 := id(), id(), id()
	g.deliver(
		subscription(t, day("2026-01-05"), "created", s1, acctA, "active", 2900, "USD"),
		subscription(t, day("2026-01-06"), "created", s2, acctB, "active", 9900, "USD"),
		subscription(t, day("2026-01-07"), "created", s3, acctB, "trialing", 4900, "USD"),
		subscription(t, day("2026-02-03"), "updated", s1, acctA, "active", 4900, "USD"),    // +2000
		subscription(t, day("2026-02-04"), "updated", s2, acctB, "active", 7900, "USD"),    // −2000
		subscription(t, day("2026-02-10"), "updated", s3, acctB, "active", 4900, "USD"),    // trial converts: new
		subscription(t, day("2026-02-20"), "canceled", s1, acctA, "canceled", 4900, "USD"), // churn 4900
		subscription(t, day("2026-02-01"), "created", id(), acctA, "active", 1000, "EUR"),
	)
	var jan, feb store.MRR
	g.getJSON("/reports/mrr?month=2026-01", asAdmin, &jan)
	g.getJSON("/reports/mrr?month=2026-02&currency=usd", asAdmin, &feb)
	want := store.MRRCurrency{Currency: "USD", Opening: 0, New: 12800, Closing: 12800, ARR: 153600, NewSubscriptions: 2, ActiveSubscriptions: 2}
	if len(jan.Currencies) != 1 || jan.Currencies[0] != want {
		t.Fatalf("January %+v, want %+v", jan.Currencies, want)
	}
	want = store.MRRCurrency{Currency: "USD", Opening: 12800, New: 4900, Expansion: 2000, Contraction: 2000, Churned: 4900,
		Closing: 12800, ARR: 153600, NewSubscriptions: 1, ChurnedSubscriptions: 1, ActiveSubscriptions: 2}
	if len(feb.Currencies) != 1 || feb.Currencies[0] != want {
		t.Fatalf("February USD %+v, want %+v", feb.Currencies, want)
	}
	// A customer sees the MRR of its own accounts only.
	g.deliver(account(t, day("2026-01-01"), acctB, userB, "ACC-B", "USD"))
	var mine store.MRR
	g.getJSON("/reports/mrr?month=2026-02", asCustomer(userB), &mine)
	if len(mine.Currencies) != 1 || mine.Currencies[0].Closing != 7900+4900 || mine.Currencies[0].Contraction != 2000 {
		t.Fatalf("customer B's MRR %+v", mine.Currencies)
	}
}

// Daily cash reconciliation: a planted mismatch is found, with the ids
// involved; matched payments are not listed; a posting within the grace
// period after midnight still counts for the day.
func TestReconciliationFindsAPlantedMismatch(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-10")
	ok1, ok2, late, missing, short, refunded := id(), id(), id(), id(), id(), id()
	capture := func(p string, at time.Time, amount int64, gw string) events.Event {
		return payment(t, at, "captured", paymentFields{id: p, account: acctA, cur: "USD", gateway: gw, amount: amount, captured: amount})
	}
	post := func(p string, at time.Time, amount int64, kind, gw string) events.Event {
		if kind == "refund" {
			return transfer(t, at, acctA, acctB, amount, "USD", "posted", withMeta(kind, p, gw))
		}
		return transfer(t, at, acctB, acctA, amount, "USD", "posted", withMeta(kind, p, gw))
	}
	shortPost := post(short, d.Add(10*time.Hour), 900, "payment_capture", "stripe")
	rejected := transfer(t, d.Add(11*time.Hour), acctB, acctA, 700, "USD", "account_frozen", withMeta("payment_capture", missing, "stripe"))
	g.deliver(
		capture(ok1, d.Add(9*time.Hour), 1000, "stripe"), post(ok1, d.Add(9*time.Hour+time.Second), 1000, "payment_capture", "stripe"),
		capture(ok2, d.Add(9*time.Hour), 2500, "sandbox"), post(ok2, d.Add(9*time.Hour+time.Second), 2500, "payment_capture", "sandbox"),
		// captured at 23:59:50, posted 00:00:10 the next day: within the grace period
		capture(late, d.Add(24*time.Hour-10*time.Second), 400, "stripe"), post(late, d.Add(24*time.Hour+10*time.Second), 400, "payment_capture", "stripe"),
		// captured, but the ledger rejected the posting: planted mismatch 1
		capture(missing, d.Add(11*time.Hour), 700, "stripe"), rejected,
		// captured 1000, the ledger posted 900: planted mismatch 2
		capture(short, d.Add(10*time.Hour), 1000, "stripe"), shortPost,
		// a refund correctly posted
		capture(refunded, d.Add(12*time.Hour), 600, "sandbox"), post(refunded, d.Add(12*time.Hour), 600, "payment_capture", "sandbox"),
		refund(t, d.Add(13*time.Hour), "succeeded", "re_77", refunded, acctA, 200, "USD", "sandbox"),
		post(refunded, d.Add(13*time.Hour), 200, "refund", "sandbox"),
		// internal settlement moves no gateway cash and is ignored
		transfer(t, d.Add(9*time.Hour), acctA, acctB, 1000, "USD", "posted", withMeta("invoice_settlement", ok1, "stripe")),
	)
	var rec store.Reconciliation
	g.getJSON("/reports/reconciliation?date=2026-03-10", asAdmin, &rec)
	if rec.Status != "mismatch" || len(rec.Mismatches) != 2 {
		t.Fatalf("reconciliation %s with %d mismatches: %+v", rec.Status, len(rec.Mismatches), rec.Mismatches)
	}
	byID := map[string]store.Mismatch{}
	for _, m := range rec.Mismatches {
		byID[m.PaymentID] = m
	}
	m := byID[missing]
	if m.GatewayCaptured != 700 || m.LedgerCaptured != 0 || m.Difference != 700 || !slices.Equal(m.Reasons, []string{"capture_not_posted", "ledger_rejected"}) ||
		len(m.EventIDs) != 1 || !slices.Equal(m.RejectedIDs, []string{rejected.Subject()}) {
		t.Fatalf("missing posting: %+v", m)
	}
	m = byID[short]
	if m.GatewayCaptured != 1000 || m.LedgerCaptured != 900 || m.Difference != 100 ||
		!slices.Equal(m.TransferIDs, []string{shortPost.Subject()}) || m.Gateway != "stripe" {
		t.Fatalf("short posting: %+v", m)
	}
	gw := map[string]store.ReconTotals{}
	for _, x := range rec.Gateways {
		gw[x.Gateway] = x
	}
	// stripe captured 1000+400(23:59:50)+700+1000 that day; the ledger posted 1000+900 that day (400 came after midnight)
	if s := gw["stripe"]; s.GatewayCaptured != 3100 || s.LedgerCaptured != 1900 || s.Mismatches != 2 || s.Status != "mismatch" {
		t.Fatalf("stripe totals %+v", s)
	}
	if s := gw["sandbox"]; s.GatewayNet != 2900 || s.LedgerNet != 2900 || s.Status != "matched" || s.Difference != 0 {
		t.Fatalf("sandbox totals %+v", s)
	}
	// Fixing the posting clears the mismatch (cached report invalidated).
	g.deliver(post(short, d.Add(15*time.Hour), 100, "payment_capture", "stripe"))
	g.getJSON("/reports/reconciliation?date=2026-03-10", asAdmin, &rec)
	if len(rec.Mismatches) != 1 || rec.Mismatches[0].PaymentID != missing {
		t.Fatalf("after the correcting posting: %+v", rec.Mismatches)
	}
	// Pages of one.
	g.deliver(capture(id(), d.Add(16*time.Hour), 5, "stripe"))
	var page store.Reconciliation
	g.getJSON("/reports/reconciliation?date=2026-03-10&limit=1", asAdmin, &page)
	if !page.HasMore || len(page.Mismatches) != 1 {
		t.Fatalf("first page %+v", page)
	}
	seen := []string{page.Mismatches[0].PaymentID}
	g.getJSON("/reports/reconciliation?date=2026-03-10&limit=1&cursor="+page.NextCursor, asAdmin, &page)
	seen = append(seen, page.Mismatches[0].PaymentID)
	if page.HasMore || len(page.Mismatches) != 1 || seen[0] >= seen[1] {
		t.Fatalf("second page %+v (seen %v)", page, seen)
	}
}

// Top accounts: ranked by volume sent + received, system accounts left
// out unless asked for, keyset pages that never repeat or skip.
func TestTopAccountsRankAndPaginate(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-01")
	sys := "5e5e0000-0000-4000-8000-000000000000"
	accts := []string{id(), id(), id(), id(), id()}
	evs := []events.Event{account(t, d, sys, "00000000-0000-0000-0000-000000000000", "SYS-CLEARING-USD", "USD")}
	for i, a := range accts {
		evs = append(evs, account(t, d, a, userA, "ACC-"+strconv.Itoa(i), "USD"))
		// account i receives (i+1)×1000 from the clearing account, on two days
		evs = append(evs, transfer(t, d.Add(time.Hour), sys, a, int64(i+1)*600, "USD", "posted"),
			transfer(t, d.AddDate(0, 0, 1), sys, a, int64(i+1)*400, "USD", "posted"))
	}
	// ties are broken by account id
	evs = append(evs, transfer(t, d.Add(time.Hour), accts[0], accts[1], 0, "USD", "posted"))
	g.deliver(evs...)
	var page store.TopAccounts
	var order []string
	cursor := ""
	for i := 0; i < 10; i++ {
		u := "/reports/top-accounts?currency=USD&from=2026-03-01&to=2026-03-03&limit=2"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		g.getJSON(u, asAdmin, &page)
		for _, a := range page.Data {
			order = append(order, a.AccountID)
		}
		if !page.HasMore {
			break
		}
		cursor = page.NextCursor
	}
	want := []string{accts[4], accts[3], accts[2], accts[1], accts[0]}
	if !slices.Equal(order, want) {
		t.Fatalf("ranking %v, want %v", order, want)
	}
	g.getJSON("/reports/top-accounts?currency=USD&from=2026-03-01&to=2026-03-03&limit=1&include_system=true", asAdmin, &page)
	if page.Data[0].Number != "SYS-CLEARING-USD" || page.Data[0].Sent != (store.Figure{Count: 10, Amount: 15000}) || page.Data[0].Volume != 15000 {
		t.Fatalf("with system accounts: %+v", page.Data)
	}
	g.getJSON("/reports/top-accounts?currency=USD&from=2026-03-02&to=2026-03-03&limit=1", asAdmin, &page)
	if page.Data[0].AccountID != accts[4] || page.Data[0].Received != (store.Figure{Count: 1, Amount: 2000}) {
		t.Fatalf("second day only: %+v", page.Data)
	}
}

// Timeseries: every bucket present (zeros too), hour/day/month agree.
func TestTimeseriesBucketsAgreeAcrossGranularities(t *testing.T) {
	g := newRig(t)
	g.deliver(
		transfer(t, at("2026-01-31T23:30:00Z"), acctA, acctB, 100, "USD", "posted"),
		transfer(t, at("2026-02-01T00:10:00Z"), acctA, acctB, 200, "USD", "posted"),
		transfer(t, at("2026-02-01T05:10:00Z"), acctA, acctB, 300, "EUR", "posted"),
		transfer(t, at("2026-03-15T12:00:00Z"), acctA, acctB, 400, "USD", "posted"),
	)
	var hour, daily, monthly store.Timeseries
	g.getJSON("/reports/timeseries?metric=transfer.posted&granularity=hour&from=2026-01-31T22:00:00Z&to=2026-02-01T02:00:00Z&currency=USD", asAdmin, &hour)
	if len(hour.Series) != 1 || len(hour.Series[0].Points) != 4 {
		t.Fatalf("hourly %+v", hour)
	}
	amounts := func(ps []store.Point) (out []int64) {
		for _, p := range ps {
			out = append(out, p.Amount)
		}
		return out
	}
	if got := amounts(hour.Series[0].Points); !slices.Equal(got, []int64{0, 100, 200, 0}) {
		t.Fatalf("hourly amounts %v", got)
	}
	g.getJSON("/reports/timeseries?metric=transfer.posted&granularity=day&from=2026-01-31&to=2026-02-02", asAdmin, &daily)
	if len(daily.Series) != 2 || daily.Series[0].Currency != "EUR" || !slices.Equal(amounts(daily.Series[1].Points), []int64{100, 200}) {
		t.Fatalf("daily %+v", daily)
	}
	g.getJSON("/reports/timeseries?metric=transfer.posted&granularity=month&from=2026-01-01&to=2026-04-01&currency=USD", asAdmin, &monthly)
	if got := amounts(monthly.Series[0].Points); !slices.Equal(got, []int64{100, 200, 400}) || !monthly.Series[0].Points[1].Start.Equal(day("2026-02-01")) {
		t.Fatalf("monthly %v", monthly.Series[0].Points)
	}
	// A customer's monthly series comes from its accounts' day rows.
	g.deliver(account(t, day("2026-01-01"), acctA, userA, "ACC-A", "USD"))
	g.getJSON("/reports/timeseries?metric=transfer.posted&granularity=month&from=2026-01-01&to=2026-04-01&currency=USD", asCustomer(userA), &monthly)
	if got := amounts(monthly.Series[0].Points); !slices.Equal(got, []int64{100, 200, 400}) {
		t.Fatalf("customer monthly %v", got)
	}
	// revenue is invoice.paid
	g.getJSON("/reports/timeseries?metric=revenue&from=2026-01-31&to=2026-02-02&currency=USD", asAdmin, &daily)
	if daily.Metric != rollup.MInvoicePaid || len(daily.Series[0].Points) != 2 || daily.Series[0].Points[0].Amount != 0 {
		t.Fatalf("revenue series %+v", daily)
	}
}

func readCSV(t *testing.T, body string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, body)
	}
	return recs
}

func num(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("CSV number %q: %v", s, err)
	}
	return n
}

// Every report's CSV holds exactly the figures of its JSON; the summary's
// CSV rows rebuild the same summary.
func TestCSVRoundTripsEveryReport(t *testing.T) {
	g := newRig(t)
	g.setNow(day("2026-03-20"))
	d := day("2026-03-10")
	pay, inv := id(), id()
	g.deliver(
		account(t, d, acctA, userA, "=HYPERLINK(\"x\")", "USD"),
		transfer(t, d.Add(time.Hour), acctA, acctB, 1050, "USD", "posted"),
		transfer(t, d.Add(time.Hour), acctA, acctB, 7, "JPY", "posted"),
		transfer(t, d.Add(time.Hour), acctA, acctB, 99, "USD", "insufficient_funds"),
		invoice(t, d, "finalized", invoiceFields{id: inv, account: acctA, cur: "USD", status: "open", due: "2026-03-01", total: 5000, dueAmount: 5000}),
		payment(t, d.Add(2*time.Hour), "captured", paymentFields{id: pay, account: acctA, cur: "USD", gateway: "stripe", amount: 2000, captured: 2000}),
		payment(t, d.Add(2*time.Hour), "failed", paymentFields{id: id(), account: acctA, cur: "USD", gateway: "stripe", amount: 10, decline: "insufficient_funds"}),
		subscription(t, d, "created", id(), acctA, "active", 2900, "USD"),
		dispute(t, d.Add(3*time.Hour), "stripe", "dp_1", pay, 2000, "USD"),
	)
	get := func(path string, hdr ...string) string {
		rec := g.request(http.MethodGet, path, asAdmin, nil, hdr...)
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d %s", path, rec.Code, rec.Body)
		}
		return rec.Body.String()
	}

	// summary: .csv path and Accept: text/csv give the same rows
	var sum store.Summary
	g.getJSON("/reports/summary?from=2026-03-10&to=2026-03-11", asAdmin, &sum)
	body := get("/reports/summary.csv?from=2026-03-10&to=2026-03-11")
	if other := get("/reports/summary?from=2026-03-10&to=2026-03-11", "Accept", "text/csv"); other != body {
		t.Fatal("Accept: text/csv and .csv differ")
	}
	recs := readCSV(t, body)
	if !slices.Equal(recs[0], []string{"currency", "metric", "dimension", "count", "amount"}) {
		t.Fatalf("summary header %v", recs[0])
	}
	var rows []store.SumRow
	for _, r := range recs[1:] {
		rows = append(rows, store.SumRow{Currency: r[0], Metric: r[1], Dim: r[2], Count: num(t, r[3]), Amount: num(t, r[4])})
	}
	if back, err := store.BuildSummary(rows, false); err != nil || !reflect.DeepEqual(back, sum.Currencies) {
		a, _ := json.Marshal(back)
		b, _ := json.Marshal(sum.Currencies)
		t.Fatalf("summary CSV does not round-trip:\n csv  %s\n json %s", a, b)
	}

	// timeseries
	var ts store.Timeseries
	g.getJSON("/reports/timeseries?metric=transfer.posted&granularity=hour&from=2026-03-10T00:00:00Z&to=2026-03-10T03:00:00Z", asAdmin, &ts)
	recs = readCSV(t, get("/reports/timeseries.csv?metric=transfer.posted&granularity=hour&from=2026-03-10T00:00:00Z&to=2026-03-10T03:00:00Z"))
	i := 1
	for _, se := range ts.Series {
		for _, p := range se.Points {
			r := recs[i]
			if r[0] != se.Currency || r[1] != p.Start.UTC().Format(time.RFC3339) || num(t, r[2]) != p.Count || num(t, r[3]) != p.Amount {
				t.Fatalf("timeseries row %d %v != %+v", i, r, p)
			}
			i++
		}
	}
	if i != len(recs) || i != 7 {
		t.Fatalf("timeseries CSV has %d rows, JSON %d points", len(recs)-1, i-1)
	}

	// aging
	var ag store.Aging
	g.getJSON("/reports/aging?as_of=2026-03-20", asAdmin, &ag)
	recs = readCSV(t, get("/reports/aging.csv?as_of=2026-03-20"))
	if len(recs) != 6 || recs[2][1] != "1-30" || num(t, recs[2][3]) != ag.Currencies[0].Buckets[1].Amount || num(t, recs[2][3]) != 5000 {
		t.Fatalf("aging CSV %v vs %+v", recs, ag)
	}

	// MRR
	var mrr store.MRR
	g.getJSON("/reports/mrr?month=2026-03", asAdmin, &mrr)
	recs = readCSV(t, get("/reports/mrr.csv?month=2026-03"))
	m := mrr.Currencies[0]
	if got := recs[1]; got[0] != "USD" || num(t, got[7]) != m.Closing || num(t, got[8]) != m.ARR || num(t, got[11]) != m.ActiveSubscriptions || m.ARR != 34800 {
		t.Fatalf("MRR CSV %v vs %+v", recs, m)
	}

	// reconciliation: the capture has no posting
	var rec store.Reconciliation
	g.getJSON("/reports/reconciliation?date=2026-03-10", asAdmin, &rec)
	recs = readCSV(t, get("/reports/reconciliation.csv?date=2026-03-10"))
	if len(recs) != 3 || recs[1][0] != "gateway" || recs[2][0] != "mismatch" || recs[2][3] != pay ||
		num(t, recs[2][8]) != rec.Mismatches[0].Difference || recs[2][10] != "capture_not_posted" || recs[2][11] != rec.Mismatches[0].EventIDs[0] {
		t.Fatalf("reconciliation CSV %v vs %+v", recs, rec)
	}

	// top accounts, and a formula in a text cell is neutralised
	var top store.TopAccounts
	g.getJSON("/reports/top-accounts?currency=USD&from=2026-03-10&to=2026-03-11&limit=5", asAdmin, &top)
	recs = readCSV(t, get("/reports/top-accounts.csv?currency=USD&from=2026-03-10&to=2026-03-11&limit=5"))
	if len(recs) != len(top.Data)+1 || recs[1][1] != top.Data[0].AccountID || num(t, recs[1][3]) != top.Data[0].Volume || recs[1][8] != "10.50" {
		t.Fatalf("top accounts CSV %v vs %+v", recs, top)
	}
	if recs[1][2] != `'=HYPERLINK("x")` {
		t.Fatalf("formula cell not neutralised: %q", recs[1][2])
	}
}

// Every client mistake is a problem+json 4xx with a stable code, never a 500.
func TestBadInputAnswersProblem4xx(t *testing.T) {
	g := newRig(t)
	cases := []struct {
		path, accept string
		status       int
		code, param  string
	}{
		{"/reports/summary?from=yesterday", "", 422, "validation_failed", "from"},
		{"/reports/summary?from=2026-03-02&to=2026-03-01", "", 422, "validation_failed", "to"},
		{"/reports/summary?from=2026-03-01T10:30:00Z", "", 422, "validation_failed", "from"},
		{"/reports/summary?currency=DOGE", "", 422, "validation_failed", "currency"},
		{"/reports/summary?currencty=USD", "", 422, "validation_failed", "currencty"},
		{"/reports/summary?currency=USD&currency=EUR", "", 422, "validation_failed", "currency"},
		{"/reports/summary?from=1000-01-01&to=2026-01-01", "", 422, "validation_failed", "to"},
		{"/reports/summary?account_id=nope", "", 422, "validation_failed", "account_id"},
		{"/reports/summary?account_id=" + id(), "", 404, "not_found", ""},
		{"/reports/summary", "application/xml", 406, "not_acceptable", ""},
		{"/reports/timeseries", "", 422, "validation_failed", "metric"},
		{"/reports/timeseries?metric=transfer.flown", "", 422, "validation_failed", "metric"},
		{"/reports/timeseries?metric=revenue&granularity=week", "", 422, "validation_failed", "granularity"},
		{"/reports/timeseries?metric=revenue&granularity=hour&from=2020-01-01&to=2026-01-01", "", 422, "validation_failed", "from"},
		{"/reports/timeseries?metric=revenue&granularity=month&from=2026-01-15", "", 422, "validation_failed", "from"},
		{"/reports/timeseries?metric=revenue&granularity=day&from=2026-01-01T05:00:00Z", "", 422, "validation_failed", "from"},
		{"/reports/aging?as_of=2026-02-30", "", 422, "validation_failed", "as_of"},
		{"/reports/mrr?month=2026-13", "", 422, "validation_failed", "month"},
		{"/reports/reconciliation?date=03/10/2026", "", 422, "validation_failed", "date"},
		{"/reports/reconciliation?limit=0", "", 422, "validation_failed", "limit"},
		{"/reports/reconciliation?cursor=%%%", "", 400, "bad_request", ""},
		{"/reports/reconciliation?cursor=zzz!", "", 422, "validation_failed", "cursor"},
		{"/reports/top-accounts", "", 422, "validation_failed", "currency"},
		{"/reports/top-accounts?currency=USD&cursor=eyJ4IjoxfQ", "", 422, "validation_failed", "cursor"},
		{"/reports/top-accounts?currency=USD&include_system=maybe", "", 422, "validation_failed", "include_system"},
		{"/reports/top-accounts?currency=USD&limit=5000", "", 422, "validation_failed", "limit"},
		{"/reports/nothing", "", 404, "not_found", ""},
		{"/dashboard/panels?from=2020-01-01&to=2026-01-01", "", 422, "validation_failed", "to"},
		{"/dashboard/assets/secrets.txt", "", 404, "not_found", ""},
		{"/admin/check?from=2026-01-02&to=2026-01-01", "", 422, "validation_failed", "to"},
		{"/admin/check?scope=all", "", 422, "validation_failed", "scope"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			rec := g.request(http.MethodGet, c.path, asAdmin, nil, "Accept", c.accept)
			var doc struct {
				Code   string `json:"code"`
				Status int    `json:"status"`
				Errors []struct {
					Parameter string `json:"parameter"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || rec.Code != c.status || doc.Code != c.code ||
				rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d %s %s, want %d %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body, c.status, c.code)
			}
			if c.param != "" && (len(doc.Errors) == 0 || doc.Errors[0].Parameter != c.param) {
				t.Fatalf("errors %+v do not name %q", doc.Errors, c.param)
			}
		})
	}
	rec := g.request(http.MethodPost, "/admin/rebuild", asAdmin, []byte(`{"from":"2026-01-01","until":"x"}`), "Content-Type", "application/json")
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"code":"bad_request"`) {
		t.Fatalf("unknown member: %d %s", rec.Code, rec.Body)
	}
	rec = g.request(http.MethodPost, "/admin/rebuild", asAdmin, []byte(`{"from":"2026-01-01"`), "Content-Type", "application/json")
	if rec.Code != 400 {
		t.Fatalf("truncated JSON: %d %s", rec.Code, rec.Body)
	}
	rec = g.request(http.MethodPost, "/admin/rebuild", asAdmin, []byte(`{"from":"soon"}`), "Content-Type", "application/json")
	if rec.Code != 422 || !strings.Contains(rec.Body.String(), `"pointer":"#/from"`) {
		t.Fatalf("bad date: %d %s", rec.Code, rec.Body)
	}
	rec = g.request(http.MethodDelete, "/reports/summary", asAdmin, nil)
	if rec.Code != 405 {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
}

// Authorization: a token is required; admin and service see everything; a
// customer only its own accounts, and someone else's account is 404.
func TestCustomersSeeOnlyTheirOwnAccounts(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-10")
	acctC := id()
	g.deliver(
		account(t, d, acctA, userA, "ACC-A", "USD"),
		account(t, d, acctC, userA, "ACC-C", "USD"),
		account(t, d, acctB, userB, "ACC-B", "USD"),
		transfer(t, d.Add(time.Hour), acctA, acctB, 1000, "USD", "posted"),
		transfer(t, d.Add(time.Hour), acctB, acctC, 300, "USD", "posted"),
		transfer(t, d.Add(time.Hour), acctA, acctC, 50, "USD", "posted"),
	)
	const q = "/reports/summary?from=2026-03-10&to=2026-03-11"
	if rec := g.request(http.MethodGet, q, anonymous, nil); rec.Code != 401 || rec.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d", rec.Code)
	}
	var s store.Summary
	for _, who := range []caller{asAdmin, asService} {
		g.getJSON(q, who, &s)
		if p := s.Currencies[0].Transfers.Posted; p != (store.Figure{Count: 3, Amount: 1350}) || s.Currencies[0].Transfers.Received != nil {
			t.Fatalf("%s sees %+v", who.role, s.Currencies[0].Transfers)
		}
	}
	g.getJSON(q, asCustomer(userA), &s)
	tr := s.Currencies[0].Transfers
	if tr.Posted != (store.Figure{Count: 2, Amount: 1050}) || *tr.Received != (store.Figure{Count: 2, Amount: 350}) {
		t.Fatalf("user A sees %+v %+v", tr.Posted, *tr.Received)
	}
	g.getJSON(q+"&account_id="+acctC, asCustomer(userA), &s)
	if tr := s.Currencies[0].Transfers; tr.Posted.Count != 0 || *tr.Received != (store.Figure{Count: 2, Amount: 350}) || s.AccountID != acctC {
		t.Fatalf("user A's account C: %+v", tr)
	}
	for _, path := range []string{q + "&account_id=" + acctB, "/reports/aging?account_id=" + acctB,
		"/reports/top-accounts?currency=USD&account_id=" + acctB, "/reports/reconciliation?account_id=" + acctB,
		"/reports/mrr?account_id=" + strings.ToUpper(acctB), "/reports/timeseries?metric=revenue&account_id=" + acctB,
		"/dashboard/panels?account_id=" + acctB, q + "&account_id=" + id()} {
		rec := g.request(http.MethodGet, path, asCustomer(userA), nil)
		if rec.Code != 404 || !strings.Contains(rec.Body.String(), `"code":"not_found"`) {
			t.Fatalf("%s as user A: %d %s", path, rec.Code, rec.Body)
		}
	}
	g.getJSON(q+"&account_id="+acctB, asAdmin, &s)
	if s.Currencies[0].Transfers.Posted.Amount != 300 {
		t.Fatalf("admin on account B %+v", s.Currencies[0].Transfers)
	}
	var top store.TopAccounts
	g.getJSON("/reports/top-accounts?currency=USD&from=2026-03-10&to=2026-03-11", asCustomer(userA), &top)
	if len(top.Data) != 2 || top.Data[0].AccountID != acctA {
		t.Fatalf("user A's top accounts %+v", top.Data)
	}
	// A customer without accounts sees zero figures, not someone else's.
	g.getJSON(q, asCustomer(id()), &s)
	if len(s.Currencies) != 0 {
		t.Fatalf("stranger sees %+v", s.Currencies)
	}
	// Hourly figures exist only for the whole system.
	if rec := g.request(http.MethodGet, "/reports/timeseries?metric=revenue&granularity=hour", asCustomer(userA), nil); rec.Code != 422 {
		t.Fatalf("customer hourly series: %d %s", rec.Code, rec.Body)
	}
	// Admin endpoints are for admins.
	for _, who := range []caller{asService, asCustomer(userA)} {
		if rec := g.request(http.MethodGet, "/admin/check", who, nil); rec.Code != 403 {
			t.Fatalf("check as %s: %d", who.role, rec.Code)
		}
		if rec := g.request(http.MethodPost, "/admin/rebuild", who, nil); rec.Code != 403 {
			t.Fatalf("rebuild as %s: %d", who.role, rec.Code)
		}
	}
}

// A cached report is served from Redis until newer events of its days
// land; then the next request sees them. Events of other days do not
// evict it.
func TestCachedReportIsInvalidatedWhenNewerEventsLand(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-10")
	g.deliver(transfer(t, d.Add(time.Hour), acctA, acctB, 100, "USD", "posted"))
	const q = "/reports/summary?from=2026-03-10&to=2026-03-11"
	hits := func() int64 {
		rec := g.request(http.MethodGet, "/metrics", anonymous, nil)
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(line, `billfn_cache_requests_total{cache="aggregate-report:reports",result="hit"}`) {
				n, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
				return int64(n)
			}
		}
		return 0
	}
	var s store.Summary
	g.getJSON(q, asAdmin, &s)
	before := hits()
	g.getJSON(q, asAdmin, &s)
	if hits() != before+1 || s.Currencies[0].Transfers.Posted.Amount != 100 {
		t.Fatalf("second read was not a cache hit (%d → %d)", before, hits())
	}
	// An event of another day leaves the entry alone.
	g.deliver(transfer(t, d.AddDate(0, 0, 3), acctA, acctB, 5, "USD", "posted"))
	g.getJSON(q, asAdmin, &s)
	if hits() != before+2 {
		t.Fatal("an event of another day evicted the report")
	}
	// An event of that day makes the next read see it.
	g.deliver(transfer(t, d.Add(2*time.Hour), acctA, acctB, 900, "USD", "posted"))
	g.getJSON(q, asAdmin, &s)
	if s.Currencies[0].Transfers.Posted.Amount != 1000 {
		t.Fatalf("stale report after a newer event: %+v", s.Currencies[0].Transfers.Posted)
	}
	// The entry really lives in Redis.
	keys, err := g.d.Redis.Keys(context.Background(), g.d.Config.Redis.Prefix+"aggregate-report:reports:summary|*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("no summary key in Redis (%v)", err)
	}
}

// Rankings read folded weeks where they are current: the same answer as
// from the day rollups alone; a late event makes its week fall back to day
// rows until the tick folds it again.
func TestTopAccountsFromFoldedWeeksEqualTheDays(t *testing.T) {
	g := newRig(t)
	g.d.Events.TickEvery = time.Millisecond
	g.setNow(at("2026-04-01T09:00:00Z")) // a Wednesday: weeks before Monday 03-30 are closed
	w := newWorld(t, 5, 30)
	var evs []events.Event
	for i := 0; i < 1500; i++ {
		d := day("2026-02-02").Add(time.Duration(w.rng.Int64N(int64(58 * 24 * time.Hour))))
		evs = append(evs, transfer(t, d, w.pick(w.accounts), w.pick(w.accounts), 1+w.rng.Int64N(10_000), "USD", "posted"))
	}
	g.deliverInBatches(evs, 500)
	ctx := context.Background()
	from, to := day("2026-02-02"), day("2026-04-01")
	// expected: the ranking from the day rollups alone
	want := func() []store.TopAccount {
		rows, err := g.d.Pool.Query(ctx, `SELECT account_id::text, sum(amount)::bigint FROM report_account_rollups
			WHERE currency = 'USD' AND metric IN ('transfer.posted', 'transfer.received') AND day >= $1 AND day < $2
			GROUP BY account_id ORDER BY 2 DESC, 1`, from, to)
		if err != nil {
			t.Fatal(err)
		}
		var out []store.TopAccount
		for rows.Next() {
			var a store.TopAccount
			_ = rows.Scan(&a.AccountID, &a.Volume)
			out = append(out, a)
		}
		return out
	}
	rank := func() []store.TopAccount {
		top, err := g.svc.Store.TopAccounts(ctx, store.Scope{All: true}, from, to, "USD", 100, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		return top.Data
	}
	same := func(stage string) {
		got, exp := rank(), want()
		if len(got) != len(exp) {
			t.Fatalf("%s: %d accounts ranked, want %d", stage, len(got), len(exp))
		}
		for i := range exp {
			if got[i].AccountID != exp[i].AccountID || got[i].Volume != exp[i].Volume || got[i].Sent.Amount+got[i].Received.Amount != exp[i].Volume {
				t.Fatalf("%s: rank %d = %+v, want %+v", stage, i, got[i], exp[i])
			}
		}
	}
	same("before folding")
	for g.tick() == 200 {
		if n := g.count(`SELECT count(*) FROM report_week_compactions`); n == 8 {
			break
		}
	}
	if weeks, days, err := g.svc.Store.RankingSources(ctx, from, to); err != nil || len(weeks) != 8 || len(days) != 2 {
		t.Fatalf("sources: %d weeks, %d days (%v); want 8 folded weeks and 2 open days", len(weeks), len(days), err)
	}
	same("from folded weeks")
	// A late event for a folded week: that week is read from its days.
	g.deliver(transfer(t, at("2026-02-10T10:00:00Z"), w.accounts[0], w.accounts[1], 777_777, "USD", "posted"))
	if weeks, _, _ := g.svc.Store.RankingSources(ctx, from, to); len(weeks) != 7 {
		t.Fatalf("%d weeks trusted after a late event, want 7", len(weeks))
	}
	same("after a late event")
	if g.tick() != 200 {
		t.Fatal("tick failed")
	}
	if weeks, _, _ := g.svc.Store.RankingSources(ctx, from, to); len(weeks) != 8 {
		t.Fatalf("%d weeks trusted after the next tick, want 8", len(weeks))
	}
	same("after folding again")
}

// Money a payment brought that its invoice did not need is credited to the
// account: the reconciliation lists it (JSON and CSV) with totals per
// currency and stays matched, since the cash at the gateway was posted;
// the summary counts it by reason; a customer sees its own; anyone but
// generate-invoice saying so is parked; the rebuild agrees.
func TestUnappliedMoneyShowsInTheReconciliationWithoutAMismatch(t *testing.T) {
	g := newRig(t)
	g.setNow(day("2026-03-20"))
	d := day("2026-03-10")
	pay, payEUR, inv, revenue := id(), id(), id(), id()
	res := g.deliver(
		account(t, d, acctA, userA, "ACC-A", "USD"),
		account(t, d, acctB, userB, "ACC-B", "EUR"),
		// 1500 captured for a 1000 invoice and posted; 500 of it was not needed
		payment(t, d.Add(9*time.Hour), "captured", paymentFields{id: pay, account: acctA, invoice: inv, cur: "USD", gateway: "stripe", amount: 1500, captured: 1500}),
		transfer(t, d.Add(9*time.Hour+time.Second), g.clearingID(), acctA, 1500, "USD", "posted", withMeta("payment_capture", pay, "stripe")),
		transfer(t, d.Add(9*time.Hour+2*time.Second), acctA, revenue, 1500, "USD", "posted", withMeta("invoice_settlement", pay, "stripe")),
		unapplied(t, "generate-invoice", d.Add(9*time.Hour+3*time.Second), pay, inv, acctA, 500, "USD", "overpayment"),
		transfer(t, d.Add(9*time.Hour+4*time.Second), revenue, acctA, 500, "USD", "posted", withMeta("invoice_unapplied", pay, "stripe")),
		// a payment in another currency than its invoice: all of it credited
		payment(t, d.Add(10*time.Hour), "captured", paymentFields{id: payEUR, account: acctB, invoice: inv, cur: "EUR", gateway: "sandbox", amount: 300, captured: 300}),
		transfer(t, d.Add(10*time.Hour+time.Second), g.clearingID(), acctB, 300, "EUR", "posted", withMeta("payment_capture", payEUR, "sandbox")),
		unapplied(t, "generate-invoice", d.Add(10*time.Hour+3*time.Second), payEUR, inv, acctB, 300, "EUR", "currency_mismatch"),
		// the next day's does not belong to this day
		unapplied(t, "generate-invoice", d.Add(30*time.Hour), id(), inv, acctA, 70, "USD", "invoice_void"),
		// not generate-invoice's word: parked, never counted
		unapplied(t, "capture-payment", d.Add(11*time.Hour), pay, inv, acctA, 999, "USD", "overpayment"),
	)
	if res.Parked != 1 || res.Processed != 11 {
		t.Fatalf("delivery %+v, want the forged event parked", res)
	}
	if n := g.count(`SELECT count(*) FROM report_events WHERE type = 'billfn.invoice.payment_unapplied'`); n != 3 {
		t.Fatalf("log holds %d unapplied events, want 3", n)
	}

	var rec store.Reconciliation
	g.getJSON("/reports/reconciliation?date=2026-03-10", asAdmin, &rec)
	if rec.Status != "matched" || len(rec.Mismatches) != 0 {
		t.Fatalf("unapplied money made a mismatch: %+v", rec)
	}
	for _, gw := range rec.Gateways {
		if gw.Difference != 0 || gw.Status != "matched" {
			t.Fatalf("gateway totals %+v", gw)
		}
	}
	if len(rec.Unapplied) != 2 {
		t.Fatalf("unapplied %+v", rec.Unapplied)
	}
	u := rec.Unapplied[0]
	if u.PaymentID != pay || u.InvoiceID != inv || u.AccountID != acctA || u.Gateway != "stripe" || u.Currency != "USD" ||
		u.Amount != 500 || u.Reason != "overpayment" || u.InvoiceStatus != "paid" || u.EventID == "" || !u.At.Equal(d.Add(9*time.Hour+3*time.Second)) {
		t.Fatalf("first unapplied %+v", u)
	}
	if u = rec.Unapplied[1]; u.PaymentID != payEUR || u.AccountID != acctB || u.Currency != "EUR" || u.Amount != 300 || u.Reason != "currency_mismatch" {
		t.Fatalf("second unapplied %+v", u)
	}
	if !slices.Equal(rec.UnappliedTotals, []store.UnappliedTotal{{Currency: "EUR", Count: 1, Amount: 300}, {Currency: "USD", Count: 1, Amount: 500}}) {
		t.Fatalf("unapplied totals %+v", rec.UnappliedTotals)
	}

	// CSV: the old columns where they were, the new ones after them.
	resp := g.request(http.MethodGet, "/reports/reconciliation.csv?date=2026-03-10", asAdmin, nil)
	recs := readCSV(t, resp.Body.String())
	if !slices.Equal(recs[0], []string{"row", "gateway", "currency", "payment_id", "gateway_captured", "gateway_refunded",
		"ledger_captured", "ledger_refunded", "difference", "status", "reasons", "event_ids", "transfer_ids",
		"rejected_transfer_ids", "invoice_id", "account_id", "count", "amount"}) {
		t.Fatalf("reconciliation CSV header %v", recs[0])
	}
	var kinds []string
	for _, r := range recs[1:] {
		kinds = append(kinds, r[0]+" "+r[9])
	}
	if !slices.Equal(kinds, []string{"gateway matched", "gateway matched", "unapplied credited", "unapplied credited",
		"unapplied_total credited", "unapplied_total credited"}) {
		t.Fatalf("reconciliation CSV rows %v", recs)
	}
	if r := recs[3]; r[1] != "stripe" || r[2] != "USD" || r[3] != pay || r[10] != "overpayment" || r[11] != rec.Unapplied[0].EventID ||
		r[14] != inv || r[15] != acctA || r[16] != "1" || num(t, r[17]) != 500 {
		t.Fatalf("unapplied CSV row %v", r)
	}
	if r := recs[5]; r[2] != "EUR" || num(t, r[16]) != 1 || num(t, r[17]) != 300 {
		t.Fatalf("unapplied total CSV row %v", r)
	}

	// The summary counts it by reason, per currency.
	var sum store.Summary
	g.getJSON("/reports/summary?from=2026-03-10&to=2026-03-12", asAdmin, &sum)
	byCur := map[string]store.UnappliedSummary{}
	for _, c := range sum.Currencies {
		byCur[c.Currency] = c.Unapplied
	}
	if u := byCur["USD"]; u.Count != 2 || u.Amount != 570 || !slices.Equal(u.Reasons, []store.Reason{{Code: "invoice_void", Count: 1, Amount: 70}, {Code: "overpayment", Count: 1, Amount: 500}}) {
		t.Fatalf("USD unapplied in the summary %+v", u)
	}
	if u := byCur["EUR"]; u.Count != 1 || u.Amount != 300 {
		t.Fatalf("EUR unapplied in the summary %+v", u)
	}

	// A customer sees its own accounts' only.
	g.getJSON("/reports/reconciliation?date=2026-03-10", asCustomer(userB), &rec)
	if len(rec.Unapplied) != 1 || rec.Unapplied[0].AccountID != acctB || len(rec.UnappliedTotals) != 1 {
		t.Fatalf("customer B's reconciliation %+v", rec)
	}
	g.getJSON("/reports/summary?from=2026-03-10&to=2026-03-12&currency=USD", asCustomer(userB), &sum)
	for _, c := range sum.Currencies {
		if c.Unapplied.Count != 0 {
			t.Fatalf("customer B sees A's unapplied money: %+v", c.Unapplied)
		}
	}

	// The rebuild from the log gives the same figures and rows.
	if c := g.check("2026-03-01", "2026-04-01"); !c.Equal || c.Differences != 0 {
		t.Fatalf("check %+v", c)
	}
	if _, err := g.d.Pool.Exec(context.Background(), `UPDATE report_unapplied SET amount = amount + 1 WHERE payment_id = $1`, pay); err != nil {
		t.Fatal(err)
	}
	if c := g.check("2026-03-01", "2026-04-01"); c.Equal || c.Differences != 1 || c.Samples[0].Table != "report_unapplied" {
		t.Fatalf("tampered unapplied row not found: %+v", c)
	}
	if rep, err := store.Rebuild(context.Background(), g.d.Pool, rollup.Range{From: day("2026-03-01"), To: day("2026-04-01")}, 0, nil); err != nil || rep.Differences != 1 {
		t.Fatalf("rebuild %+v %v", rep, err)
	}
	if c := g.check("2026-03-01", "2026-04-01"); !c.Equal {
		t.Fatalf("after rebuild %+v", c)
	}
	g.getJSON("/reports/reconciliation?date=2026-03-10", asAdmin, &rec)
	if len(rec.Unapplied) != 2 || rec.Unapplied[0].Amount != 500 || rec.Status != "matched" {
		t.Fatalf("after rebuild %+v", rec)
	}
}

// clearingID is a system clearing account for postings.
func (g *rig) clearingID() string { return "c1ea0000-0000-4000-8000-000000000001" }

// TestReconciliationHoldsADayToItsOwnGatewayEvents: the grace period after
// a day lets the ledger's postings of that day's captures and refunds
// arrive; it does not make the next day's first minutes part of the day.
// A refund at 00:14:59 the next day, posted two seconds later (00:15:01),
// was counted as the day's gateway refund with no posting before the
// cutoff: a refund_not_posted on a day whose books agree, frozen in its
// snapshot. A capture after midnight posted within the grace is no excess
// either.
func TestReconciliationHoldsADayToItsOwnGatewayEvents(t *testing.T) {
	g := newRig(t)
	d := day("2026-03-10")
	refunded, early := id(), id()
	post := func(p string, at time.Time, amount int64, kind, gw string) events.Event {
		if kind == "refund" {
			return transfer(t, at, acctA, acctB, amount, "USD", "posted", withMeta(kind, p, gw))
		}
		return transfer(t, at, acctB, acctA, amount, "USD", "posted", withMeta(kind, p, gw))
	}
	next := d.Add(24 * time.Hour)
	g.deliver(
		payment(t, d.Add(10*time.Hour), "captured", paymentFields{id: refunded, account: acctA, cur: "USD", gateway: "stripe", amount: 1000, captured: 1000}),
		post(refunded, d.Add(10*time.Hour+time.Second), 1000, "payment_capture", "stripe"),
		refund(t, next.Add(15*time.Minute-time.Second), "succeeded", "re_late", refunded, acctA, 200, "USD", "stripe"),
		post(refunded, next.Add(15*time.Minute+time.Second), 200, "refund", "stripe"),
		// posted at 23:59:59.5 for a capture the gateway reported at 00:00:00.5
		post(early, next.Add(-500*time.Millisecond), 300, "payment_capture", "stripe"),
		payment(t, next.Add(500*time.Millisecond), "captured", paymentFields{id: early, account: acctA, cur: "USD", gateway: "stripe", amount: 300, captured: 300}),
	)
	for _, date := range []string{"2026-03-10", "2026-03-11"} {
		var rec store.Reconciliation
		g.getJSON("/reports/reconciliation?date="+date, asAdmin, &rec)
		if rec.Status != "matched" || len(rec.Mismatches) != 0 {
			t.Errorf("%s: %s with mismatches %+v", date, rec.Status, rec.Mismatches)
		}
	}
}
