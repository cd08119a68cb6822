package api

import (
	"context"
	"encoding/csv"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/httpx"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
)

// dayCover is the range of whole days that holds [from, to).
func dayCover(from, to time.Time) (time.Time, time.Time) {
	return rollup.DayStart(from), rollup.DayStart(to.Add(-time.Nanosecond)).AddDate(0, 0, 1)
}

// prepare runs what every report does first: choose the representation,
// read the parameters (via parse, which must not touch the database),
// then resolve the caller's Scope.
func (s *API) prepare(w http.ResponseWriter, r *http.Request, q *query, parse func()) (asCSV bool, sc store.Scope, ok bool) {
	asCSV, err := wantsCSV(r)
	if err == nil {
		parse()
		err = q.err()
	}
	if err == nil {
		sc, err = s.scopeOf(r, q.get("account_id"))
	}
	if err != nil {
		problem.Write(w, r, err)
		return false, sc, false
	}
	return asCSV, sc, true
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Cache-Control", "private, no-store")
	w.Header().Set("Vary", "Accept, Authorization")
	httpx.WriteJSON(w, http.StatusOK, v)
}

// csvCell neutralises spreadsheet formulas in text cells (CSV injection):
// a cell starting with = + - @ or a control character is prefixed with '.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// streamCSV writes a CSV header and rows, flushing as it goes.
func streamCSV(w http.ResponseWriter, name string, header []string, rows func(emit func(...string))) {
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	h.Set("Cache-Control", "private, no-store")
	h.Set("Vary", "Accept, Authorization")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write(header)
	n := 0
	rows(func(cells ...string) {
		_ = cw.Write(cells)
		if n++; n%1000 == 0 {
			cw.Flush()
		}
	})
	cw.Flush()
}

// ---- GET /reports/summary ----

func (s *API) getSummary(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "from", "to", "currency", "account_id")
	var from, to time.Time
	var cur string
	asCSV, sc, ok := s.prepare(w, r, q, func() {
		cur = q.currency(false)
		from, to = q.span(s.now(), 24*time.Hour, 30*24*time.Hour)
	})
	if !ok {
		return
	}
	if !sc.All {
		if q.requireDays(from, to, "account figures are kept per day"); q.err() != nil {
			problem.Write(w, r, q.err())
			return
		}
	}
	vf, vt := dayCover(from, to)
	rep, err := cached(r.Context(), s, sc, "summary|"+rfc(from)+"|"+rfc(to)+"|"+cur, vf, vt,
		func(ctx context.Context) (store.Summary, error) { return s.Store.Summary(ctx, sc, from, to, cur) })
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rep.AccountID = q.get("account_id")
	if !asCSV {
		writeJSON(w, rep)
		return
	}
	streamCSV(w, "summary-"+from.Format("20060102T15")+"-"+to.Format("20060102T15"),
		[]string{"currency", "metric", "dimension", "count", "amount"}, func(emit func(...string)) {
			for _, x := range store.SummaryRows(rep.Currencies) {
				emit(x.Currency, x.Metric, csvCell(x.Dim), itoa(x.Count), itoa(x.Amount))
			}
		})
}

// ---- GET /reports/timeseries ----

func (s *API) getTimeseries(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "metric", "dim", "granularity", "from", "to", "currency", "account_id")
	ts := store.Timeseries{}
	asCSV, sc, ok := s.prepare(w, r, q, func() {
		ts.Metric, ts.Dim, ts.Granularity = q.get("metric"), q.get("dim"), q.get("granularity")
		switch {
		case ts.Metric == "":
			q.fail("metric", "is required: one of revenue, "+strings.Join(rollup.Metrics, ", "))
		case ts.Metric == "revenue":
			ts.Metric = rollup.MInvoicePaid
		case !slices.Contains(rollup.Metrics, ts.Metric):
			q.fail("metric", "must be one of revenue, "+strings.Join(rollup.Metrics, ", "))
		}
		ts.Currency = q.currency(false)
		now := s.now()
		switch ts.Granularity {
		case "hour":
			ts.From, ts.To = q.span(now, time.Hour, 48*time.Hour)
		case "", "day":
			ts.Granularity = "day"
			ts.From, ts.To = q.span(now, 24*time.Hour, 30*24*time.Hour)
			q.requireDays(ts.From, ts.To, "daily buckets start at midnight")
		case "month":
			_, fok := q.instant("from")
			_, tok := q.instant("to")
			first := rollup.DayStart(now).AddDate(0, 0, 1-now.UTC().Day())
			ts.From, ts.To = q.span(now, 24*time.Hour, 0)
			if !tok {
				ts.To = first.AddDate(0, 1, 0)
			}
			if !fok {
				ts.From = ts.To.AddDate(-1, 0, 0)
			}
			if len(q.errs) == 0 && (ts.From.Day() != 1 || ts.To.Day() != 1 || !rollup.DayAligned(ts.From, ts.To) || !ts.From.Before(ts.To)) {
				q.fail("from", "from and to must be first days of months (2026-01-01) for monthly buckets, from before to")
			}
		default:
			q.fail("granularity", "must be hour, day or month")
		}
		if len(q.errs) == 0 && len(store.BucketStarts(ts.Granularity, ts.From, ts.To)) > store.MaxPoints {
			q.fail("from", "the range holds more than 5000 buckets; choose a coarser granularity")
		}
	})
	if !ok {
		return
	}
	if !sc.All && ts.Granularity == "hour" {
		problem.Write(w, r, problem.Invalid(problem.Param("granularity",
			"account figures are kept per day: use day or month")))
		return
	}
	vf, vt := dayCover(ts.From, ts.To)
	key := "timeseries|" + ts.Metric + "|" + ts.Dim + "|" + ts.Granularity + "|" + rfc(ts.From) + "|" + rfc(ts.To) + "|" + ts.Currency
	rep, err := cached(r.Context(), s, sc, key, vf, vt, func(ctx context.Context) (store.Timeseries, error) {
		return s.Store.Timeseries(ctx, sc, ts)
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rep.AccountID = q.get("account_id")
	if !asCSV {
		writeJSON(w, rep)
		return
	}
	streamCSV(w, "timeseries-"+strings.ReplaceAll(rep.Metric, ".", "-")+"-"+rep.Granularity,
		[]string{"currency", "start", "count", "amount"}, func(emit func(...string)) {
			for _, se := range rep.Series {
				for _, p := range se.Points {
					emit(se.Currency, rfc(p.Start), itoa(p.Count), itoa(p.Amount))
				}
			}
		})
}

// ---- GET /reports/aging ----

func (s *API) getAging(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "as_of", "currency", "account_id")
	var asOf time.Time
	var cur string
	asCSV, sc, ok := s.prepare(w, r, q, func() {
		cur = q.currency(false)
		var given bool
		if asOf, given = q.date("as_of"); !given {
			asOf = rollup.DayStart(s.now())
		}
	})
	if !ok {
		return
	}
	rep, err := cached(r.Context(), s, sc, "aging|"+asOf.Format(time.DateOnly)+"|"+cur, store.Beginning, asOf.AddDate(0, 0, 1),
		func(ctx context.Context) (store.Aging, error) { return s.Store.Aging(ctx, sc, asOf, cur) })
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rep.AccountID = q.get("account_id")
	if !asCSV {
		writeJSON(w, rep)
		return
	}
	streamCSV(w, "aging-"+rep.AsOf, []string{"currency", "bucket", "count", "amount"}, func(emit func(...string)) {
		for _, c := range rep.Currencies {
			for _, b := range c.Buckets {
				emit(c.Currency, b.Bucket, itoa(b.Count), itoa(b.Amount))
			}
		}
	})
}

// ---- GET /reports/mrr ----

func (s *API) getMRR(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "month", "currency", "account_id")
	var month time.Time
	var cur string
	asCSV, sc, ok := s.prepare(w, r, q, func() {
		cur = q.currency(false)
		var given bool
		if month, given = q.month("month"); !given {
			now := rollup.DayStart(s.now())
			month = now.AddDate(0, 0, 1-now.Day())
		}
	})
	if !ok {
		return
	}
	rep, err := cached(r.Context(), s, sc, "mrr|"+month.Format("2006-01")+"|"+cur, store.Beginning, month.AddDate(0, 1, 0),
		func(ctx context.Context) (store.MRR, error) { return s.Store.MRR(ctx, sc, month, cur) })
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rep.AccountID = q.get("account_id")
	if !asCSV {
		writeJSON(w, rep)
		return
	}
	streamCSV(w, "mrr-"+rep.Month, []string{"currency", "opening", "new", "reactivation", "expansion", "contraction",
		"churned", "closing", "arr", "new_subscriptions", "churned_subscriptions", "active_subscriptions"}, func(emit func(...string)) {
		for _, c := range rep.Currencies {
			emit(c.Currency, itoa(c.Opening), itoa(c.New), itoa(c.Reactivation), itoa(c.Expansion), itoa(c.Contraction),
				itoa(c.Churned), itoa(c.Closing), itoa(c.ARR), itoa(c.NewSubscriptions), itoa(c.ChurnedSubscriptions),
				itoa(c.ActiveSubscriptions))
		}
	})
}

// ---- GET /reports/reconciliation ----

// reconCursor is the keyset position in a day's mismatches.
type reconCursor struct {
	Payment  string `json:"p"`
	Currency string `json:"c"`
}

func (s *API) getReconciliation(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "date", "limit", "cursor", "account_id")
	var day time.Time
	var limit int
	var after reconCursor
	var hasCursor bool
	asCSV, sc, ok := s.prepare(w, r, q, func() {
		var given bool
		if day, given = q.date("date"); !given {
			day = rollup.DayStart(s.now()).AddDate(0, 0, -1)
		}
		limit, hasCursor = q.paging(r, 100, 1000, &after)
	})
	if !ok {
		return
	}
	// The day's figures depend on postings up to the grace period after it.
	rep, err := cached(r.Context(), s, sc, "reconciliation|"+day.Format(time.DateOnly), store.Beginning, day.AddDate(0, 0, 2),
		func(ctx context.Context) (store.Reconciliation, error) { return s.Store.Reconciliation(ctx, sc, day) })
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	rep.AccountID = q.get("account_id")
	rep.WithUnappliedLists() // an entry cached before the lists existed
	if asCSV {
		// The CSV holds every mismatch (it streams; no pages).
		// The columns after rejected_transfer_ids came with unapplied money
		// (added, never renamed): rows "unapplied" (one per payment_unapplied,
		// its reason in reasons, its event in event_ids) and
		// "unapplied_total" (per currency).
		streamCSV(w, "reconciliation-"+rep.Date, []string{"row", "gateway", "currency", "payment_id", "gateway_captured",
			"gateway_refunded", "ledger_captured", "ledger_refunded", "difference", "status", "reasons", "event_ids",
			"transfer_ids", "rejected_transfer_ids", "invoice_id", "account_id", "count", "amount"}, func(emit func(...string)) {
			for _, g := range rep.Gateways {
				emit("gateway", csvCell(g.Gateway), g.Currency, "", itoa(g.GatewayCaptured), itoa(g.GatewayRefunded),
					itoa(g.LedgerCaptured), itoa(g.LedgerRefunded), itoa(g.Difference), g.Status, "", "", "", "", "", "", "", "")
			}
			for _, m := range rep.Mismatches {
				emit("mismatch", csvCell(m.Gateway), m.Currency, csvCell(m.PaymentID), itoa(m.GatewayCaptured),
					itoa(m.GatewayRefunded), itoa(m.LedgerCaptured), itoa(m.LedgerRefunded), itoa(m.Difference), "mismatch",
					strings.Join(m.Reasons, " "), csvCell(strings.Join(m.EventIDs, " ")), csvCell(strings.Join(m.TransferIDs, " ")),
					csvCell(strings.Join(m.RejectedIDs, " ")), "", "", "", "")
			}
			for _, u := range rep.Unapplied {
				emit("unapplied", csvCell(u.Gateway), u.Currency, csvCell(u.PaymentID), "", "", "", "", "", "credited",
					csvCell(u.Reason), csvCell(u.EventID), "", "", csvCell(u.InvoiceID), csvCell(u.AccountID), "1", itoa(u.Amount))
			}
			for _, t := range rep.UnappliedTotals {
				emit("unapplied_total", "", t.Currency, "", "", "", "", "", "", "credited", "", "", "", "", "", "",
					itoa(t.Count), itoa(t.Amount))
			}
		})
		return
	}
	page := rep.Mismatches
	if hasCursor {
		i, _ := slices.BinarySearchFunc(page, after, func(m store.Mismatch, c reconCursor) int {
			return strings.Compare(m.PaymentID+"\x00"+m.Currency, c.Payment+"\x00"+c.Currency)
		})
		for i < len(page) && page[i].PaymentID == after.Payment && page[i].Currency == after.Currency {
			i++
		}
		page = page[i:]
	}
	if len(page) > limit {
		page = page[:limit]
		last := page[limit-1]
		rep.HasMore, rep.NextCursor = true, encodeCursor(reconCursor{last.PaymentID, last.Currency})
	}
	rep.Mismatches = page
	writeJSON(w, rep)
}

func encodeCursor(pos any) string { return httpx.EncodeCursor(pos) }

// ---- GET /reports/top-accounts ----

func (s *API) getTopAccounts(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "from", "to", "currency", "limit", "cursor", "include_system", "account_id")
	var from, to time.Time
	var cur string
	var limit int
	var after store.TopCursor
	var hasCursor, system bool
	asCSV, sc, ok := s.prepare(w, r, q, func() {
		cur = q.currency(true)
		from, to = q.span(s.now(), 24*time.Hour, 30*24*time.Hour)
		q.requireDays(from, to, "account figures are kept per day")
		limit, hasCursor = q.paging(r, 10, 1000, &after)
		system = q.boolean("include_system")
	})
	if !ok {
		return
	}
	if asCSV && q.get("limit") == "" {
		limit = 1000
	}
	var pos *store.TopCursor
	var rank int64 // the place of the row before this page's first
	if hasCursor {
		pos, rank = &after, max(after.Rank, 0)
	}
	key := "top|" + rfc(from) + "|" + rfc(to) + "|" + cur + "|" + itoa(int64(limit)) + "|" + q.get("cursor") + "|" + q.get("include_system")
	rep, err := cached(r.Context(), s, sc, key, from, to, func(ctx context.Context) (store.TopAccounts, error) {
		return s.Store.TopAccounts(ctx, sc, from, to, cur, limit, pos, system)
	})
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if !asCSV {
		writeJSON(w, rep)
		return
	}
	if rep.NextCursor != "" {
		w.Header().Set("Link", `<`+r.URL.Path+"?"+withCursor(r, rep.NextCursor)+`>; rel="next"`)
	}
	streamCSV(w, "top-accounts-"+cur, []string{"rank", "account_id", "number", "volume", "sent_count", "sent_amount",
		"received_count", "received_amount", "volume_decimal"}, func(emit func(...string)) {
		for i, a := range rep.Data {
			emit(itoa(rank+int64(i+1)), a.AccountID, csvCell(a.Number), itoa(a.Volume), itoa(a.Sent.Count), itoa(a.Sent.Amount),
				itoa(a.Received.Count), itoa(a.Received.Amount), money.Format(a.Volume, money.Currency(cur)))
		}
	})
}

func withCursor(r *http.Request, cursor string) string {
	v := r.URL.Query()
	v.Set("cursor", cursor)
	return v.Encode()
}
