package store

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/shared/money"
)

// Figure is a count and an amount in minor units of the currency beside it.
type Figure = rollup.Cell

// SumRow is one summed rollup: the shape of every report's raw figures and
// of the summary's CSV.
type SumRow struct {
	Currency string
	Metric   string
	Dim      string
	Count    int64
	Amount   int64
}

// sums adds up rollups of [from, to) for a Scope: the global rollups (day
// rows when the range is whole days, hour rows otherwise) or the accounts'
// day rows.
func (s *Store) sums(ctx context.Context, sc Scope, from, to time.Time, currency string, metrics []string) ([]SumRow, error) {
	var rows pgx.Rows
	var err error
	if metrics == nil {
		metrics = []string{} // NULL would match nothing
	}
	if sc.All {
		grain := "h"
		if rollup.DayAligned(from, to) {
			grain = "d"
		}
		rows, err = s.Pool.Query(ctx, `SELECT currency, metric, dim, sum(count)::bigint, sum(amount)::bigint
			FROM report_rollups
			WHERE grain = $1 AND bucket >= $2 AND bucket < $3
			  AND ($4 = '' OR currency = $4) AND (cardinality($5::text[]) = 0 OR metric = ANY($5))
			GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, grain, from, to, currency, metrics)
	} else {
		if len(sc.Accounts) == 0 {
			return nil, nil
		}
		rows, err = s.Pool.Query(ctx, `SELECT currency, metric, dim, sum(count)::bigint, sum(amount)::bigint
			FROM report_account_rollups
			WHERE account_id = ANY($1::uuid[]) AND day >= $2::date AND day < $3::date
			  AND ($4 = '' OR currency = $4) AND (cardinality($5::text[]) = 0 OR metric = ANY($5))
			GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, sc.Accounts, from, to, currency, metrics)
	}
	if err != nil {
		return nil, readErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SumRow, error) {
		var x SumRow
		err := r.Scan(&x.Currency, &x.Metric, &x.Dim, &x.Count, &x.Amount)
		return x, err
	})
	return out, readErr(err)
}

// ---- summary ----

// Summary is the figures of a period, per currency.
type Summary struct {
	From       time.Time         `json:"from"`
	To         time.Time         `json:"to"`
	Currency   string            `json:"currency,omitempty"`
	AccountID  string            `json:"account_id,omitempty"`
	Source     string            `json:"source"` // rollups | snapshot
	Currencies []CurrencySummary `json:"currencies"`
}

// CurrencySummary is one currency's figures.
type CurrencySummary struct {
	Currency        string            `json:"currency"`
	Transfers       TransferSummary   `json:"transfers"`
	Holds           HoldSummary       `json:"holds"`
	Invoices        InvoiceSummary    `json:"invoices"`
	Payments        []GatewaySummary  `json:"payments"`
	Refunds         RefundSummary     `json:"refunds"`
	Disputes        Figure            `json:"disputes"`
	Unapplied       UnappliedSummary  `json:"unapplied"`
	MRR             MRRMovements      `json:"mrr_movements"`
	Subscriptions   SubscriptionCount `json:"subscriptions"`
	AccountsCreated int64             `json:"accounts_created"`
}

// TransferSummary counts transfers. For an account Scope, posted are the
// transfers the accounts sent and received those they got.
type TransferSummary struct {
	Posted        Figure   `json:"posted"`
	Received      *Figure  `json:"received,omitempty"`
	Rejected      Figure   `json:"rejected"`
	RejectReasons []Reason `json:"reject_reasons"`
}

// Reason is a reject or decline reason with its count and amount.
type Reason struct {
	Code   string `json:"code"`
	Count  int64  `json:"count"`
	Amount int64  `json:"amount"`
}

// HoldSummary counts holds.
type HoldSummary struct {
	Created  Figure `json:"created"`
	Captured Figure `json:"captured"`
	Voided   Figure `json:"voided"`
	Expired  Figure `json:"expired"`
}

// InvoiceSummary counts invoice transitions.
type InvoiceSummary struct {
	Created       Figure `json:"created"`
	Finalized     Figure `json:"finalized"`
	Paid          Figure `json:"paid"`
	Voided        Figure `json:"voided"`
	Overdue       Figure `json:"overdue"`
	Uncollectible Figure `json:"uncollectible"`
}

// GatewaySummary is one gateway's payments.
type GatewaySummary struct {
	Gateway       string `json:"gateway"`
	Created       Figure `json:"created"`
	Authorized    Figure `json:"authorized"`
	Captured      Figure `json:"captured"`
	Succeeded     Figure `json:"succeeded"`
	Failed        Figure `json:"failed"`
	Canceled      Figure `json:"canceled"`
	Refunded      Figure `json:"refunded"`
	RefundsFailed Figure `json:"refunds_failed"`
	// RefundsReversed are refunds that failed after succeeding.
	RefundsReversed Figure   `json:"refunds_reversed"`
	Disputed        Figure   `json:"disputed"`
	SuccessRate     Rate     `json:"success_rate"`
	DeclineReasons  []Reason `json:"decline_reasons"`
}

// Rate is a success rate as the two integers it comes from, plus basis
// points (1/100 of a percent) rounded half to even; no floats.
type Rate struct {
	Successes   int64  `json:"successes"`
	Attempts    int64  `json:"attempts"`
	BasisPoints *int64 `json:"basis_points"` // null without attempts
}

func NewRate(successes, attempts int64) Rate {
	r := Rate{Successes: successes, Attempts: attempts}
	if attempts > 0 {
		if bp, err := money.MulDivHalfEven(successes, 10000, attempts); err == nil {
			r.BasisPoints = &bp
		}
	}
	return r
}

// RefundSummary counts refunds: those that succeeded (when they did),
// those that failed after succeeding (reversed, when they failed: the money
// came back), those that failed without moving money, and the money
// refunded net of reversals (negative when more came back than went out).
type RefundSummary struct {
	Succeeded Figure `json:"succeeded"`
	Reversed  Figure `json:"reversed"`
	Failed    Figure `json:"failed"`
	Net       int64  `json:"net"`
}

// UnappliedSummary is money payments brought that their invoices did not
// need, credited to the customers' accounts, in total and by reason.
type UnappliedSummary struct {
	Count   int64    `json:"count"`
	Amount  int64    `json:"amount"`
	Reasons []Reason `json:"reasons"`
}

// MRRMovements are the MRR changes of a period.
type MRRMovements struct {
	New          Figure `json:"new"`
	Reactivation Figure `json:"reactivation"`
	Expansion    Figure `json:"expansion"`
	Contraction  Figure `json:"contraction"`
	Churned      Figure `json:"churned"`
	Net          int64  `json:"net"`
}

// SubscriptionCount counts subscription lifecycle events.
type SubscriptionCount struct {
	Created  int64 `json:"created"`
	Canceled int64 `json:"canceled"`
}

// BuildSummary turns summed rows into per-currency summaries. It is also
// how a summary CSV is read back (the CSV holds exactly these rows).
func BuildSummary(rows []SumRow, accountScope bool) ([]CurrencySummary, error) {
	var t total
	byCur := map[string]*CurrencySummary{}
	gws := map[string]map[string]*GatewaySummary{}
	get := func(c string) *CurrencySummary {
		cs := byCur[c]
		if cs == nil {
			cs = &CurrencySummary{Currency: c, Payments: []GatewaySummary{}, Transfers: TransferSummary{RejectReasons: []Reason{}},
				Unapplied: UnappliedSummary{Reasons: []Reason{}}}
			if accountScope {
				cs.Transfers.Received = &Figure{}
			}
			byCur[c] = cs
			gws[c] = map[string]*GatewaySummary{}
		}
		return cs
	}
	gw := func(c, name string) *GatewaySummary {
		g := gws[c][name]
		if g == nil {
			g = &GatewaySummary{Gateway: name, DeclineReasons: []Reason{}}
			gws[c][name] = g
		}
		return g
	}
	for _, r := range rows {
		cs := get(r.Currency)
		f := Figure{Count: r.Count, Amount: r.Amount}
		switch r.Metric {
		case rollup.MTransferPosted:
			cs.Transfers.Posted = f
		case rollup.MTransferReceived:
			if cs.Transfers.Received != nil {
				*cs.Transfers.Received = f
			}
		case rollup.MTransferRejected:
			cs.Transfers.Rejected.Count += r.Count
			t.add(&cs.Transfers.Rejected.Amount, r.Amount)
			cs.Transfers.RejectReasons = append(cs.Transfers.RejectReasons, Reason{r.Dim, r.Count, r.Amount})
		case rollup.MHoldCreated:
			cs.Holds.Created = f
		case rollup.MHoldCaptured:
			cs.Holds.Captured = f
		case rollup.MHoldVoided:
			cs.Holds.Voided = f
		case rollup.MHoldExpired:
			cs.Holds.Expired = f
		case rollup.MInvoiceCreated:
			cs.Invoices.Created = f
		case rollup.MInvoiceFinalized:
			cs.Invoices.Finalized = f
		case rollup.MInvoicePaid:
			cs.Invoices.Paid = f
		case rollup.MInvoiceVoided:
			cs.Invoices.Voided = f
		case rollup.MInvoiceOverdue:
			cs.Invoices.Overdue = f
		case rollup.MInvoiceUncollectible:
			cs.Invoices.Uncollectible = f
		case rollup.MPaymentCreated:
			gw(r.Currency, r.Dim).Created = f
		case rollup.MPaymentAuthorized:
			gw(r.Currency, r.Dim).Authorized = f
		case rollup.MPaymentCaptured:
			gw(r.Currency, r.Dim).Captured = f
		case rollup.MPaymentSucceeded:
			gw(r.Currency, r.Dim).Succeeded = f
		case rollup.MPaymentFailed:
			gw(r.Currency, r.Dim).Failed = f
		case rollup.MPaymentCanceled:
			gw(r.Currency, r.Dim).Canceled = f
		case rollup.MPaymentDecline:
			name, code, _ := strings.Cut(r.Dim, "|")
			g := gw(r.Currency, name)
			g.DeclineReasons = append(g.DeclineReasons, Reason{code, r.Count, r.Amount})
		case rollup.MRefundSucceeded:
			cs.Refunds.Succeeded.Count += r.Count
			t.add(&cs.Refunds.Succeeded.Amount, r.Amount)
			gw(r.Currency, r.Dim).Refunded = f
		case rollup.MRefundFailed:
			cs.Refunds.Failed.Count += r.Count
			t.add(&cs.Refunds.Failed.Amount, r.Amount)
			gw(r.Currency, r.Dim).RefundsFailed = f
		case rollup.MRefundReversed:
			cs.Refunds.Reversed.Count += r.Count
			t.add(&cs.Refunds.Reversed.Amount, r.Amount)
			gw(r.Currency, r.Dim).RefundsReversed = f
		case rollup.MDisputeOpened:
			cs.Disputes.Count += r.Count
			t.add(&cs.Disputes.Amount, r.Amount)
			gw(r.Currency, r.Dim).Disputed = f
		case rollup.MPaymentUnapplied:
			cs.Unapplied.Count += r.Count
			t.add(&cs.Unapplied.Amount, r.Amount)
			cs.Unapplied.Reasons = append(cs.Unapplied.Reasons, Reason{r.Dim, r.Count, r.Amount})
		case rollup.MMRRNew:
			cs.MRR.New = f
		case rollup.MMRRReactivation:
			cs.MRR.Reactivation = f
		case rollup.MMRRExpansion:
			cs.MRR.Expansion = f
		case rollup.MMRRContraction:
			cs.MRR.Contraction = f
		case rollup.MMRRChurned:
			cs.MRR.Churned = f
		case rollup.MSubscriptionCreated:
			cs.Subscriptions.Created = r.Count
		case rollup.MSubscriptionCanceled:
			cs.Subscriptions.Canceled = r.Count
		case rollup.MAccountCreated:
			cs.AccountsCreated = r.Count
		}
	}
	out := make([]CurrencySummary, 0, len(byCur))
	for _, c := range slices.Sorted(func(yield func(string) bool) {
		for k := range byCur {
			if !yield(k) {
				return
			}
		}
	}) {
		cs := byCur[c]
		m := &cs.MRR
		t.add(&m.Net, m.New.Amount)
		t.add(&m.Net, m.Reactivation.Amount)
		t.add(&m.Net, m.Expansion.Amount)
		t.sub(&m.Net, m.Contraction.Amount)
		t.sub(&m.Net, m.Churned.Amount)
		cs.Refunds.Net = cs.Refunds.Succeeded.Amount
		t.sub(&cs.Refunds.Net, cs.Refunds.Reversed.Amount)
		for _, g := range gws[c] {
			g.SuccessRate = NewRate(g.Succeeded.Count, g.Succeeded.Count+g.Failed.Count)
			slices.SortFunc(g.DeclineReasons, func(a, b Reason) int { return cmp.Compare(a.Code, b.Code) })
			cs.Payments = append(cs.Payments, *g)
		}
		slices.SortFunc(cs.Payments, func(a, b GatewaySummary) int { return cmp.Compare(a.Gateway, b.Gateway) })
		slices.SortFunc(cs.Transfers.RejectReasons, func(a, b Reason) int { return cmp.Compare(a.Code, b.Code) })
		slices.SortFunc(cs.Unapplied.Reasons, func(a, b Reason) int { return cmp.Compare(a.Code, b.Code) })
		out = append(out, *cs)
	}
	if t.err != nil {
		return nil, t.err
	}
	return out, nil
}

// SummaryRows flattens summaries back into the rows they were built from
// (the summary CSV).
func SummaryRows(cs []CurrencySummary) []SumRow {
	var out []SumRow
	add := func(c, metric, dim string, f Figure) {
		if f.Count != 0 || f.Amount != 0 {
			out = append(out, SumRow{c, metric, dim, f.Count, f.Amount})
		}
	}
	for _, s := range cs {
		c := s.Currency
		add(c, rollup.MTransferPosted, "", s.Transfers.Posted)
		if s.Transfers.Received != nil {
			add(c, rollup.MTransferReceived, "", *s.Transfers.Received)
		}
		for _, r := range s.Transfers.RejectReasons {
			add(c, rollup.MTransferRejected, r.Code, Figure{Count: r.Count, Amount: r.Amount})
		}
		add(c, rollup.MHoldCreated, "", s.Holds.Created)
		add(c, rollup.MHoldCaptured, "", s.Holds.Captured)
		add(c, rollup.MHoldVoided, "", s.Holds.Voided)
		add(c, rollup.MHoldExpired, "", s.Holds.Expired)
		add(c, rollup.MInvoiceCreated, "", s.Invoices.Created)
		add(c, rollup.MInvoiceFinalized, "", s.Invoices.Finalized)
		add(c, rollup.MInvoicePaid, "", s.Invoices.Paid)
		add(c, rollup.MInvoiceVoided, "", s.Invoices.Voided)
		add(c, rollup.MInvoiceOverdue, "", s.Invoices.Overdue)
		add(c, rollup.MInvoiceUncollectible, "", s.Invoices.Uncollectible)
		for _, g := range s.Payments {
			add(c, rollup.MPaymentCreated, g.Gateway, g.Created)
			add(c, rollup.MPaymentAuthorized, g.Gateway, g.Authorized)
			add(c, rollup.MPaymentCaptured, g.Gateway, g.Captured)
			add(c, rollup.MPaymentSucceeded, g.Gateway, g.Succeeded)
			add(c, rollup.MPaymentFailed, g.Gateway, g.Failed)
			add(c, rollup.MPaymentCanceled, g.Gateway, g.Canceled)
			for _, d := range g.DeclineReasons {
				add(c, rollup.MPaymentDecline, g.Gateway+"|"+d.Code, Figure{Count: d.Count, Amount: d.Amount})
			}
			add(c, rollup.MRefundSucceeded, g.Gateway, g.Refunded)
			add(c, rollup.MRefundFailed, g.Gateway, g.RefundsFailed)
			add(c, rollup.MRefundReversed, g.Gateway, g.RefundsReversed)
			add(c, rollup.MDisputeOpened, g.Gateway, g.Disputed)
		}
		for _, r := range s.Unapplied.Reasons {
			add(c, rollup.MPaymentUnapplied, r.Code, Figure{Count: r.Count, Amount: r.Amount})
		}
		add(c, rollup.MMRRNew, "", s.MRR.New)
		add(c, rollup.MMRRReactivation, "", s.MRR.Reactivation)
		add(c, rollup.MMRRExpansion, "", s.MRR.Expansion)
		add(c, rollup.MMRRContraction, "", s.MRR.Contraction)
		add(c, rollup.MMRRChurned, "", s.MRR.Churned)
		add(c, rollup.MSubscriptionCreated, "", Figure{Count: s.Subscriptions.Created})
		add(c, rollup.MSubscriptionCanceled, "", Figure{Count: s.Subscriptions.Canceled})
		add(c, rollup.MAccountCreated, "", Figure{Count: s.AccountsCreated})
	}
	return out
}

// Summary computes a summary (or reads the tick's snapshot of that day).
func (s *Store) Summary(ctx context.Context, sc Scope, from, to time.Time, currency string) (Summary, error) {
	out := Summary{From: from, To: to, Currency: currency, Source: "rollups"}
	if sc.All && rollup.DayAligned(from, to) && to.Sub(from) == 24*time.Hour {
		var snap Summary
		if ok, err := s.readSnapshot(ctx, "summary", from, &snap); err != nil {
			return out, err
		} else if ok {
			snap.Source, snap.Currency = "snapshot", currency
			snap.Currencies = filterCurrency(snap.Currencies, currency, func(c CurrencySummary) string { return c.Currency })
			for i := range snap.Currencies { // a snapshot written before unapplied money was reported
				if snap.Currencies[i].Unapplied.Reasons == nil {
					snap.Currencies[i].Unapplied.Reasons = []Reason{}
				}
			}
			return snap, nil
		}
	}
	rows, err := s.sums(ctx, sc, from, to, currency, nil)
	if err != nil {
		return out, err
	}
	out.Currencies, err = BuildSummary(rows, !sc.All)
	return out, err
}

func filterCurrency[T any](list []T, currency string, cur func(T) string) []T {
	if currency == "" {
		return list
	}
	out := list[:0:0]
	for _, v := range list {
		if cur(v) == currency {
			out = append(out, v)
		}
	}
	return out
}

// ---- timeseries ----

// Timeseries is one metric over time, per currency, every bucket present.
type Timeseries struct {
	Metric      string    `json:"metric"`
	Dim         string    `json:"dim,omitempty"`
	Granularity string    `json:"granularity"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Currency    string    `json:"currency,omitempty"`
	AccountID   string    `json:"account_id,omitempty"`
	Series      []Series  `json:"series"`
}

// Series is one currency's points.
type Series struct {
	Currency string  `json:"currency"`
	Points   []Point `json:"points"`
}

// Point is one bucket: its start, count and amount.
type Point struct {
	Start  time.Time `json:"start"`
	Count  int64     `json:"count"`
	Amount int64     `json:"amount"`
}

// MaxPoints bounds a series.
const MaxPoints = 5000

// BucketStarts lists the buckets of [from, to).
func BucketStarts(granularity string, from, to time.Time) []time.Time {
	var out []time.Time
	for t := from; t.Before(to) && len(out) <= MaxPoints; {
		out = append(out, t)
		switch granularity {
		case "hour":
			t = t.Add(time.Hour)
		case "day":
			t = t.AddDate(0, 0, 1)
		default:
			t = t.AddDate(0, 1, 0)
		}
	}
	return out
}

func (s *Store) Timeseries(ctx context.Context, sc Scope, ts Timeseries) (Timeseries, error) {
	var rows pgx.Rows
	var err error
	bucket := "bucket"
	if ts.Granularity == "month" {
		bucket = "date_trunc('month', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
	}
	switch {
	case sc.All:
		grain := "d"
		if ts.Granularity == "hour" {
			grain = "h"
		}
		rows, err = s.Pool.Query(ctx, `SELECT currency, `+bucket+` AS b, sum(count)::bigint, sum(amount)::bigint
			FROM report_rollups
			WHERE grain = $1 AND metric = $2 AND ($3 = '' OR dim = $3) AND bucket >= $4 AND bucket < $5 AND ($6 = '' OR currency = $6)
			GROUP BY 1, 2`, grain, ts.Metric, ts.Dim, ts.From, ts.To, ts.Currency)
	case len(sc.Accounts) == 0:
		ts.Series = []Series{}
		return ts, nil
	default:
		day := "day::timestamp AT TIME ZONE 'UTC'"
		if ts.Granularity == "month" {
			day = "date_trunc('month', day)::timestamp AT TIME ZONE 'UTC'"
		}
		rows, err = s.Pool.Query(ctx, `SELECT currency, `+day+` AS b, sum(count)::bigint, sum(amount)::bigint
			FROM report_account_rollups
			WHERE account_id = ANY($1::uuid[]) AND metric = $2 AND ($3 = '' OR dim = $3)
			  AND day >= $4::date AND day < $5::date AND ($6 = '' OR currency = $6)
			GROUP BY 1, 2`, sc.Accounts, ts.Metric, ts.Dim, ts.From, ts.To, ts.Currency)
	}
	if err != nil {
		return ts, readErr(err)
	}
	type key struct {
		cur string
		at  int64
	}
	vals := map[key]Figure{}
	curs := map[string]bool{}
	for rows.Next() {
		var c string
		var at time.Time
		var f Figure
		if err := rows.Scan(&c, &at, &f.Count, &f.Amount); err != nil {
			rows.Close()
			return ts, err
		}
		vals[key{c, at.Unix()}] = f
		curs[c] = true
	}
	if err := rows.Err(); err != nil {
		return ts, readErr(err)
	}
	if ts.Currency != "" {
		curs[ts.Currency] = true
	}
	starts := BucketStarts(ts.Granularity, ts.From, ts.To)
	ts.Series = []Series{}
	for _, c := range sortedKeys(curs) {
		se := Series{Currency: c, Points: make([]Point, len(starts))}
		for i, t := range starts {
			f := vals[key{c, t.Unix()}]
			se.Points[i] = Point{Start: t, Count: f.Count, Amount: f.Amount}
		}
		ts.Series = append(ts.Series, se)
	}
	return ts, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ---- aging ----

// Aging is accounts receivable as of the end of a day, by days past due.
type Aging struct {
	AsOf       string          `json:"as_of"`
	Currency   string          `json:"currency,omitempty"`
	AccountID  string          `json:"account_id,omitempty"`
	Source     string          `json:"source"`
	Currencies []AgingCurrency `json:"currencies"`
}

// AgingCurrency is one currency's receivables.
type AgingCurrency struct {
	Currency string        `json:"currency"`
	Buckets  []AgingBucket `json:"buckets"`
	Total    Figure        `json:"total"`
}

// AgingBucket is the open invoices of one age bracket.
type AgingBucket struct {
	Bucket string `json:"bucket"`
	Count  int64  `json:"count"`
	Amount int64  `json:"amount"`
}

// AgingBuckets are the brackets, by days past the due date.
var AgingBuckets = []string{"current", "1-30", "31-60", "61-90", "90+"}

func (s *Store) Aging(ctx context.Context, sc Scope, asOf time.Time, currency string) (Aging, error) {
	out := Aging{AsOf: asOf.Format(time.DateOnly), Currency: currency, Source: "rollups"}
	if sc.All {
		var snap Aging
		if ok, err := s.readSnapshot(ctx, "aging", asOf, &snap); err != nil {
			return out, err
		} else if ok {
			snap.Source, snap.Currency = "snapshot", currency
			snap.Currencies = filterCurrency(snap.Currencies, currency, func(c AgingCurrency) string { return c.Currency })
			return snap, nil
		}
	}
	out.Currencies = []AgingCurrency{}
	if !sc.All && len(sc.Accounts) == 0 {
		return out, nil
	}
	end := asOf.AddDate(0, 0, 1)
	// An invoice is receivable from its finalization until it is paid,
	// voided or written off; captures for it reduce what is owed.
	rows, err := s.Pool.Query(ctx, `
		WITH open AS (
			SELECT i.currency, i.due_date,
			       greatest(i.amount_due - coalesce((SELECT sum(p.amount) FROM report_invoice_payments p
			                 WHERE p.invoice_id = i.invoice_id AND p.at > i.finalized_at AND p.at < $1), 0), 0) AS owed
			FROM report_invoices i
			WHERE i.finalized_at < $1 AND (i.closed_at IS NULL OR i.closed_at >= $1)
			  AND ($3 = '' OR i.currency = $3) AND ($4 OR i.account_id = ANY($5::uuid[]))
		)
		SELECT currency,
		       CASE WHEN due_date IS NULL OR $2::date - due_date <= 0 THEN 'current'
		            WHEN $2::date - due_date <= 30 THEN '1-30'
		            WHEN $2::date - due_date <= 60 THEN '31-60'
		            WHEN $2::date - due_date <= 90 THEN '61-90'
		            ELSE '90+' END AS bucket,
		       count(*), sum(owed)::bigint
		FROM open WHERE owed > 0 GROUP BY 1, 2`, end, asOf, currency, sc.All, accountsOrEmpty(sc))
	if err != nil {
		return out, readErr(err)
	}
	type key struct{ cur, bucket string }
	vals := map[key]Figure{}
	curs := map[string]bool{}
	for rows.Next() {
		var k key
		var f Figure
		if err := rows.Scan(&k.cur, &k.bucket, &f.Count, &f.Amount); err != nil {
			rows.Close()
			return out, err
		}
		vals[k] = f
		curs[k.cur] = true
	}
	if err := rows.Err(); err != nil {
		return out, readErr(err)
	}
	var t total
	for _, c := range sortedKeys(curs) {
		ac := AgingCurrency{Currency: c}
		for _, b := range AgingBuckets {
			f := vals[key{c, b}]
			ac.Buckets = append(ac.Buckets, AgingBucket{b, f.Count, f.Amount})
			ac.Total.Count += f.Count
			t.add(&ac.Total.Amount, f.Amount)
		}
		out.Currencies = append(out.Currencies, ac)
	}
	if t.err != nil {
		return Aging{}, t.err
	}
	return out, nil
}

func accountsOrEmpty(sc Scope) []string {
	if sc.Accounts == nil {
		return []string{}
	}
	return sc.Accounts
}

// ---- MRR ----

// MRR is a month's recurring revenue movements and the MRR at its end.
type MRR struct {
	Month      string        `json:"month"`
	Currency   string        `json:"currency,omitempty"`
	AccountID  string        `json:"account_id,omitempty"`
	Source     string        `json:"source"`
	Currencies []MRRCurrency `json:"currencies"`
}

// MRRCurrency is one currency's MRR bridge: opening + new + reactivation +
// expansion − contraction − churned = closing; ARR = closing × 12.
type MRRCurrency struct {
	Currency             string `json:"currency"`
	Opening              int64  `json:"opening"`
	New                  int64  `json:"new"`
	Reactivation         int64  `json:"reactivation"`
	Expansion            int64  `json:"expansion"`
	Contraction          int64  `json:"contraction"`
	Churned              int64  `json:"churned"`
	Closing              int64  `json:"closing"`
	ARR                  int64  `json:"arr"`
	NewSubscriptions     int64  `json:"new_subscriptions"`
	ChurnedSubscriptions int64  `json:"churned_subscriptions"`
	ActiveSubscriptions  int64  `json:"active_subscriptions"`
}

var mrrMetrics = []string{rollup.MMRRNew, rollup.MMRRReactivation, rollup.MMRRExpansion, rollup.MMRRContraction, rollup.MMRRChurned}

func (s *Store) MRR(ctx context.Context, sc Scope, month time.Time, currency string) (MRR, error) {
	out := MRR{Month: month.Format("2006-01"), Currency: currency, Source: "rollups", Currencies: []MRRCurrency{}}
	end := month.AddDate(0, 1, 0)
	if sc.All {
		var snap MRR
		if ok, err := s.readSnapshot(ctx, "mrr", end.AddDate(0, 0, -1), &snap); err != nil {
			return out, err
		} else if ok {
			snap.Source, snap.Currency = "snapshot", currency
			snap.Currencies = filterCurrency(snap.Currencies, currency, func(c MRRCurrency) string { return c.Currency })
			return snap, nil
		}
	}
	before, err := s.sums(ctx, sc, Beginning, month, currency, mrrMetrics)
	if err != nil {
		return out, err
	}
	during, err := s.sums(ctx, sc, month, end, currency, mrrMetrics)
	if err != nil {
		return out, err
	}
	var t total
	by := map[string]*MRRCurrency{}
	get := func(c string) *MRRCurrency {
		if by[c] == nil {
			by[c] = &MRRCurrency{Currency: c}
		}
		return by[c]
	}
	for _, r := range before {
		m := get(r.Currency)
		switch r.Metric {
		case rollup.MMRRNew, rollup.MMRRReactivation:
			t.add(&m.Opening, r.Amount)
			m.ActiveSubscriptions += r.Count
		case rollup.MMRRExpansion:
			t.add(&m.Opening, r.Amount)
		case rollup.MMRRContraction:
			t.sub(&m.Opening, r.Amount)
		case rollup.MMRRChurned:
			t.sub(&m.Opening, r.Amount)
			m.ActiveSubscriptions -= r.Count
		}
	}
	for _, r := range during {
		m := get(r.Currency)
		switch r.Metric {
		case rollup.MMRRNew:
			t.add(&m.New, r.Amount)
			m.NewSubscriptions += r.Count
			m.ActiveSubscriptions += r.Count
		case rollup.MMRRReactivation:
			t.add(&m.Reactivation, r.Amount)
			m.NewSubscriptions += r.Count
			m.ActiveSubscriptions += r.Count
		case rollup.MMRRExpansion:
			t.add(&m.Expansion, r.Amount)
		case rollup.MMRRContraction:
			t.add(&m.Contraction, r.Amount)
		case rollup.MMRRChurned:
			t.add(&m.Churned, r.Amount)
			m.ChurnedSubscriptions += r.Count
			m.ActiveSubscriptions -= r.Count
		}
	}
	for _, c := range sortedKeys(by) {
		m := by[c]
		m.Closing = m.Opening
		t.add(&m.Closing, m.New)
		t.add(&m.Closing, m.Reactivation)
		t.add(&m.Closing, m.Expansion)
		t.sub(&m.Closing, m.Contraction)
		t.sub(&m.Closing, m.Churned)
		if t.err != nil {
			return out, t.err
		}
		arr, err := money.Mul(m.Closing, 12)
		if err != nil {
			return out, ErrAmountOverflow()
		}
		m.ARR = arr
		out.Currencies = append(out.Currencies, *m)
	}
	return out, nil
}

// ---- reconciliation ----

// Reconciliation compares, for one day, the cash each gateway captured
// minus refunded with what the ledger posted for it.
type Reconciliation struct {
	Date         string        `json:"date"`
	Status       string        `json:"status"` // matched | mismatch
	GraceSeconds int64         `json:"grace_seconds"`
	AccountID    string        `json:"account_id,omitempty"`
	Source       string        `json:"source"`
	Gateways     []ReconTotals `json:"gateways"`
	Mismatches   []Mismatch    `json:"mismatches"`
	NextCursor   string        `json:"next_cursor,omitempty"`
	HasMore      bool          `json:"has_more"`
	// Money payments brought that their invoices did not need, reported
	// that day and credited to the customers' accounts (inside billfn,
	// revenue → account): listed, never a mismatch. Every one of the day,
	// on every page.
	Unapplied       []Unapplied      `json:"unapplied"`
	UnappliedTotals []UnappliedTotal `json:"unapplied_totals"`
}

// Unapplied is one billfn.invoice.payment_unapplied: money credited to the
// account instead of its invoice.
type Unapplied struct {
	PaymentID     string    `json:"payment_id"`
	InvoiceID     string    `json:"invoice_id"`
	AccountID     string    `json:"account_id"`
	Gateway       string    `json:"gateway"` // the payment's, "" when unknown
	Currency      string    `json:"currency"`
	Amount        int64     `json:"amount"`
	Reason        string    `json:"reason"` // invoice_paid | invoice_void | overpayment | currency_mismatch
	InvoiceStatus string    `json:"invoice_status"`
	EventID       string    `json:"event_id"`
	At            time.Time `json:"at"`
}

// UnappliedTotal is one currency's money credited instead of applied that day.
type UnappliedTotal struct {
	Currency string `json:"currency"`
	Count    int64  `json:"count"`
	Amount   int64  `json:"amount"`
}

// WithUnappliedLists makes a reconciliation's lists non-null (a snapshot
// written before they existed has none).
func (r *Reconciliation) WithUnappliedLists() {
	if r.Unapplied == nil {
		r.Unapplied = []Unapplied{}
	}
	if r.UnappliedTotals == nil {
		r.UnappliedTotals = []UnappliedTotal{}
	}
}

// ReconTotals is one gateway and currency's day: what it captured and
// refunded that day, what the ledger posted for it that day.
type ReconTotals struct {
	Gateway         string `json:"gateway"`
	Currency        string `json:"currency"`
	GatewayCaptured int64  `json:"gateway_captured"`
	GatewayRefunded int64  `json:"gateway_refunded"`
	GatewayNet      int64  `json:"gateway_net"`
	LedgerCaptured  int64  `json:"ledger_captured"`
	LedgerRefunded  int64  `json:"ledger_refunded"`
	LedgerNet       int64  `json:"ledger_net"`
	Difference      int64  `json:"difference"` // gateway_net − ledger_net
	Mismatches      int64  `json:"mismatches"`
	Status          string `json:"status"`
}

// Mismatch is a payment whose gateway and ledger sides disagree, with every
// id involved.
type Mismatch struct {
	PaymentID       string   `json:"payment_id"`
	Gateway         string   `json:"gateway"`
	Currency        string   `json:"currency"`
	GatewayCaptured int64    `json:"gateway_captured"`
	GatewayRefunded int64    `json:"gateway_refunded"`
	LedgerCaptured  int64    `json:"ledger_captured"`
	LedgerRefunded  int64    `json:"ledger_refunded"`
	Difference      int64    `json:"difference"`
	Reasons         []string `json:"reasons"`
	EventIDs        []string `json:"event_ids"`    // gateway-side events (captures, refunds)
	TransferIDs     []string `json:"transfer_ids"` // ledger transfers
	RejectedIDs     []string `json:"rejected_transfer_ids"`
}

func (s *Store) Reconciliation(ctx context.Context, sc Scope, day time.Time) (Reconciliation, error) {
	out := Reconciliation{Date: day.Format(time.DateOnly), GraceSeconds: int64(s.ReconGrace / time.Second),
		Source: "rollups", Gateways: []ReconTotals{}, Mismatches: []Mismatch{}}
	out.WithUnappliedLists()
	if sc.All {
		var snap Reconciliation
		if ok, err := s.readSnapshot(ctx, "reconciliation", day, &snap); err != nil {
			return out, err
		} else if ok {
			snap.Source = "snapshot"
			snap.WithUnappliedLists()
			return snap, nil
		}
	}
	out.Status = "matched"
	if !sc.All && len(sc.Accounts) == 0 {
		return out, nil
	}
	end := day.AddDate(0, 0, 1)
	cutoff := end.Add(s.ReconGrace)
	acct := accountsOrEmpty(sc)
	b := &pgx.Batch{}
	var sum total
	totals := map[[2]string]*ReconTotals{}
	tot := func(gw, cur string) *ReconTotals {
		k := [2]string{gw, cur}
		if totals[k] == nil {
			totals[k] = &ReconTotals{Gateway: gw, Currency: cur}
		}
		return totals[k]
	}
	b.Queue(`SELECT gateway, currency, side, kind, sum(amount)::bigint FROM report_recon
		WHERE at >= $1 AND at < $2 AND status IN ('succeeded', 'reversed', 'posted') AND ($3 OR account_id = ANY($4::uuid[]))
		GROUP BY 1, 2, 3, 4`, day, end, sc.All, acct).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var gw, cur, side, kind string
			var amount int64
			if err := rows.Scan(&gw, &cur, &side, &kind, &amount); err != nil {
				return err
			}
			t := tot(gw, cur)
			switch side + "/" + kind {
			case "gateway/capture":
				sum.add(&t.GatewayCaptured, amount)
			case "gateway/refund":
				sum.add(&t.GatewayRefunded, amount)
			case "gateway/refund_reversal": // refunded money that came back
				sum.sub(&t.GatewayRefunded, amount)
			case "ledger/refund_reversal":
				sum.sub(&t.LedgerRefunded, amount)
			case "ledger/capture":
				sum.add(&t.LedgerCaptured, amount)
			case "ledger/refund":
				sum.add(&t.LedgerRefunded, amount)
			}
		}
		return rows.Err()
	})
	// A refund that failed after succeeding came back: its reversal (the
	// gateway's failure, the ledger's refund_reversal posting) counts
	// against the refunds on its side.
	const refunded = `CASE r.kind WHEN 'refund_reversal' THEN -r.amount ELSE r.amount END`
	// Every payment with activity that day is compared over its whole
	// history up to the day's end plus the grace period: a difference left
	// from an earlier day stays visible until it is fixed. A customer's
	// scope sees its own accounts' rows of it only: a row's payment_id is
	// what its transfer's metadata said, not proof that the payment is the
	// customer's.
	b.Queue(`
		WITH active AS (
			SELECT DISTINCT payment_id FROM report_recon
			WHERE at >= $1 AND at < $2 AND ($4 OR account_id = ANY($5::uuid[]))
		)
		SELECT r.payment_id, r.currency,
		       coalesce(min(r.gateway) FILTER (WHERE r.side = 'gateway'), min(r.gateway)),
		       coalesce(sum(r.amount) FILTER (WHERE r.side = 'gateway' AND r.kind = 'capture' AND r.at < $2), 0)::bigint,
		       coalesce(sum(`+refunded+`) FILTER (WHERE r.side = 'gateway' AND r.kind <> 'capture' AND r.at < $2), 0)::bigint,
		       coalesce(sum(r.amount) FILTER (WHERE r.side = 'gateway' AND r.kind = 'capture' AND r.at >= $2), 0)::bigint,
		       coalesce(sum(`+refunded+`) FILTER (WHERE r.side = 'gateway' AND r.kind <> 'capture' AND r.at >= $2), 0)::bigint,
		       coalesce(sum(r.amount) FILTER (WHERE r.side = 'ledger' AND r.kind = 'capture' AND r.status = 'posted'), 0)::bigint,
		       coalesce(sum(`+refunded+`) FILTER (WHERE r.side = 'ledger' AND r.kind <> 'capture' AND r.status = 'posted'), 0)::bigint,
		       coalesce(array_agg(r.event_id ORDER BY r.at, r.event_id) FILTER (WHERE r.side = 'gateway' AND r.at < $2), '{}'),
		       coalesce(array_agg(r.ref ORDER BY r.at, r.ref) FILTER (WHERE r.side = 'ledger' AND r.status = 'posted'), '{}'),
		       coalesce(array_agg(r.ref ORDER BY r.at, r.ref) FILTER (WHERE r.side = 'ledger' AND r.status = 'rejected'), '{}')
		FROM report_recon r JOIN active a USING (payment_id)
		WHERE r.at < $3 AND ($4 OR r.account_id = ANY($5::uuid[]))
		GROUP BY r.payment_id, r.currency
		ORDER BY r.payment_id, r.currency`, day, end, cutoff, sc.All, acct).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var m Mismatch
			var capturedAfter, refundedAfter int64 // at the gateway after the day's end, within the grace
			if err := rows.Scan(&m.PaymentID, &m.Currency, &m.Gateway, &m.GatewayCaptured, &m.GatewayRefunded, &capturedAfter, &refundedAfter,
				&m.LedgerCaptured, &m.LedgerRefunded, &m.EventIDs, &m.TransferIDs, &m.RejectedIDs); err != nil {
				return err
			}
			// The day is held to its own gateway events; a posting within
			// the grace may be of an event after the day's end too, and
			// is then no excess.
			m.LedgerCaptured = postedFor(&sum, m.GatewayCaptured, capturedAfter, m.LedgerCaptured)
			m.LedgerRefunded = postedFor(&sum, m.GatewayRefunded, refundedAfter, m.LedgerRefunded)
			gwNet, ledgerNet := m.GatewayCaptured, m.LedgerCaptured
			sum.sub(&gwNet, m.GatewayRefunded)
			sum.sub(&ledgerNet, m.LedgerRefunded)
			m.Difference = gwNet
			sum.sub(&m.Difference, ledgerNet)
			switch {
			case m.GatewayCaptured > m.LedgerCaptured:
				m.Reasons = append(m.Reasons, "capture_not_posted")
			case m.GatewayCaptured < m.LedgerCaptured:
				m.Reasons = append(m.Reasons, "capture_posted_in_excess")
			}
			switch {
			case m.GatewayRefunded > m.LedgerRefunded:
				m.Reasons = append(m.Reasons, "refund_not_posted")
			case m.GatewayRefunded < m.LedgerRefunded:
				m.Reasons = append(m.Reasons, "refund_posted_in_excess")
			}
			if len(m.Reasons) == 0 {
				continue
			}
			if len(m.RejectedIDs) > 0 {
				m.Reasons = append(m.Reasons, "ledger_rejected")
			}
			if m.PaymentID == "" {
				m.Reasons = append(m.Reasons, "no_payment_id")
			}
			out.Mismatches = append(out.Mismatches, m)
		}
		return rows.Err()
	})
	// Money credited instead of applied: the day's own events. It moved
	// inside billfn (revenue → the account), not at a gateway, so it takes
	// no part in the comparison above.
	b.Queue(`SELECT u.payment_id::text, u.invoice_id::text, u.account_id::text, coalesce(p.gateway, ''), u.currency,
			u.amount, u.reason, u.invoice_status, u.event_id, u.at
		FROM report_unapplied u LEFT JOIN report_payments p USING (payment_id)
		WHERE u.at >= $1 AND u.at < $2 AND ($3 OR u.account_id = ANY($4::uuid[]))
		ORDER BY u.at, u.payment_id, u.event_id`, day, end, sc.All, acct).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var u Unapplied
			if err := rows.Scan(&u.PaymentID, &u.InvoiceID, &u.AccountID, &u.Gateway, &u.Currency, &u.Amount, &u.Reason,
				&u.InvoiceStatus, &u.EventID, &u.At); err != nil {
				return err
			}
			u.At = u.At.UTC()
			out.Unapplied = append(out.Unapplied, u)
		}
		return rows.Err()
	})
	if err := s.Pool.SendBatch(ctx, b).Close(); err != nil {
		return out, readErr(err)
	}
	byCur := map[string]*UnappliedTotal{}
	for _, u := range out.Unapplied {
		t := byCur[u.Currency]
		if t == nil {
			t = &UnappliedTotal{Currency: u.Currency}
			byCur[u.Currency] = t
		}
		t.Count++
		sum.add(&t.Amount, u.Amount)
	}
	for _, c := range sortedKeys(byCur) {
		out.UnappliedTotals = append(out.UnappliedTotals, *byCur[c])
	}
	for _, m := range out.Mismatches {
		tot(m.Gateway, m.Currency).Mismatches++
	}
	for _, t := range totals {
		t.GatewayNet, t.LedgerNet = t.GatewayCaptured, t.LedgerCaptured
		sum.sub(&t.GatewayNet, t.GatewayRefunded)
		sum.sub(&t.LedgerNet, t.LedgerRefunded)
		t.Difference = t.GatewayNet
		sum.sub(&t.Difference, t.LedgerNet)
		t.Status = "matched"
		if t.Mismatches > 0 {
			t.Status = "mismatch"
			out.Status = "mismatch"
		}
		out.Gateways = append(out.Gateways, *t)
	}
	slices.SortFunc(out.Gateways, func(a, b ReconTotals) int {
		return cmp.Or(cmp.Compare(a.Gateway, b.Gateway), cmp.Compare(a.Currency, b.Currency))
	})
	if sum.err != nil {
		return Reconciliation{}, sum.err
	}
	return out, nil
}

// postedFor is the part of posted (the ledger's postings up to the day's
// end plus the grace) that answers gateway (the gateway's events up to
// the day's end): postings within the grace may answer the gateway's
// events after the day's end (after, within the grace as well) instead,
// so as much of posted as after can explain is left out, and no more.
func postedFor(t *total, gateway, after, posted int64) int64 {
	if gateway > posted && after < 0 {
		// A reversal after the day's end, posted within the grace, took
		// the posted figure below the day's own: it answers that reversal.
		most := posted
		t.sub(&most, after)
		return min(gateway, most)
	}
	if gateway >= posted {
		return posted
	}
	least := posted
	t.sub(&least, after)
	return max(gateway, least)
}

// ---- top accounts ----

// TopAccounts ranks accounts by the volume they sent and received.
type TopAccounts struct {
	From       time.Time    `json:"from"`
	To         time.Time    `json:"to"`
	Currency   string       `json:"currency"`
	Data       []TopAccount `json:"data"`
	NextCursor string       `json:"next_cursor,omitempty"`
	HasMore    bool         `json:"has_more"`
}

// TopAccount is one account's posted transfers.
type TopAccount struct {
	AccountID string `json:"account_id"`
	Number    string `json:"number"`
	Volume    int64  `json:"volume"` // sent + received
	Sent      Figure `json:"sent"`
	Received  Figure `json:"received"`
}

// TopCursor is the keyset position: volume descending, account id
// ascending; Rank is the place of that account in the ranking, so the next
// page's ranks go on from it (the CSV's rank column).
type TopCursor struct {
	Volume  int64  `json:"v"`
	Account string `json:"a"`
	Rank    int64  `json:"r,omitempty"`
}

func (s *Store) TopAccounts(ctx context.Context, sc Scope, from, to time.Time, currency string, limit int,
	after *TopCursor, includeSystem bool) (TopAccounts, error) {
	out := TopAccounts{From: from, To: to, Currency: currency, Data: []TopAccount{}}
	if !sc.All && len(sc.Accounts) == 0 {
		return out, nil
	}
	cv, ca := int64(math.MaxInt64), ""
	if after != nil {
		cv, ca = after.Volume, after.Account
	}
	// Rank by volume first (the keyset is volume descending, account id
	// ascending), then read the sent/received split of the page's accounts.
	const page = `
		SELECT r.account_id::text, coalesce(a.number, ''), r.volume
		FROM ranked r LEFT JOIN report_accounts a USING (account_id)
		WHERE ($1 OR a.number IS NULL OR a.number NOT LIKE 'SYS-%')
		  AND (r.volume < $3 OR (r.volume = $3 AND r.account_id::text > $2))
		ORDER BY r.volume DESC, r.account_id
		LIMIT $4`
	var rows pgx.Rows
	var err error
	if sc.All {
		// Everyone's accounts: folded weeks where they are current, days elsewhere.
		weeks, days, err := s.RankingSources(ctx, from, to)
		if err != nil {
			return out, readErr(err)
		}
		rows, err = s.Pool.Query(ctx, `
			WITH src AS (
				SELECT account_id, sent + recv AS v FROM report_account_weeks WHERE currency = $5 AND week = ANY($6::date[])
				UNION ALL
				SELECT account_id, amount FROM report_account_rollups
				WHERE currency = $5 AND metric IN ('transfer.posted', 'transfer.received') AND day = ANY($7::date[])
			), ranked AS (SELECT account_id, sum(v)::bigint AS volume FROM src GROUP BY account_id)`+page,
			includeSystem, ca, cv, limit+1, currency, nonNil(weeks), nonNil(days))
		if err != nil {
			return out, readErr(err)
		}
	} else {
		rows, err = s.Pool.Query(ctx, `
			WITH ranked AS (
				SELECT account_id, sum(amount)::bigint AS volume FROM report_account_rollups
				WHERE account_id = ANY($5::uuid[]) AND currency = $6 AND metric IN ('transfer.posted', 'transfer.received')
				  AND day >= $7::date AND day < $8::date
				GROUP BY account_id)`+page,
			includeSystem, ca, cv, limit+1, sc.Accounts, currency, from, to)
		if err != nil {
			return out, readErr(err)
		}
	}
	for rows.Next() {
		var a TopAccount
		if err := rows.Scan(&a.AccountID, &a.Number, &a.Volume); err != nil {
			rows.Close()
			return out, readErr(err)
		}
		out.Data = append(out.Data, a)
	}
	if err := rows.Err(); err != nil {
		return out, readErr(err)
	}
	if len(out.Data) > limit {
		out.Data = out.Data[:limit]
		last := out.Data[limit-1]
		out.HasMore = true
		var rank int64
		if after != nil {
			rank = max(after.Rank, 0)
		}
		out.NextCursor = encodeCursor(TopCursor{last.Volume, last.AccountID, rank + int64(limit)})
	}
	if len(out.Data) == 0 {
		return out, nil
	}
	ids := make([]string, len(out.Data))
	at := map[string]*TopAccount{}
	for i := range out.Data {
		ids[i] = out.Data[i].AccountID
		at[ids[i]] = &out.Data[i]
	}
	rows, err = s.Pool.Query(ctx, `
		SELECT account_id::text,
		       coalesce(sum(count) FILTER (WHERE metric = 'transfer.posted'), 0)::bigint,
		       coalesce(sum(amount) FILTER (WHERE metric = 'transfer.posted'), 0)::bigint,
		       coalesce(sum(count) FILTER (WHERE metric = 'transfer.received'), 0)::bigint,
		       coalesce(sum(amount) FILTER (WHERE metric = 'transfer.received'), 0)::bigint
		FROM report_account_rollups
		WHERE account_id = ANY($1::uuid[]) AND currency = $2 AND metric IN ('transfer.posted', 'transfer.received')
		  AND day >= $3::date AND day < $4::date
		GROUP BY account_id`, ids, currency, from, to)
	if err != nil {
		return out, readErr(err)
	}
	for rows.Next() {
		var id string
		var sent, recv Figure
		if err := rows.Scan(&id, &sent.Count, &sent.Amount, &recv.Count, &recv.Amount); err != nil {
			rows.Close()
			return out, readErr(err)
		}
		if a := at[id]; a != nil {
			a.Sent, a.Received = sent, recv
		}
	}
	return out, rows.Err()
}

func nonNil[T any](v []T) []T {
	if v == nil {
		return []T{}
	}
	return v
}
