package api

import (
	"context"
	"embed"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/store"

	"github.com/billfn/billfn/functions/aggregate-report/rollup"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/problem"
)

// The dashboard is a static shell (public: it holds no figures) and one
// authenticated endpoint that renders the panels, charts included, as
// HTML with inline SVG. The shell's script sends the bearer token the user
// pasted (kept in the tab's session storage) and shows the fragment.
//
// The panels are written by renderPanels (panels.go).
//
//go:embed dashboard/index.html dashboard/app.js dashboard/style.css
var dashboardFS embed.FS

// securityHeaders keep the shell and its assets from being framed or
// sniffed, and scripts and styles to our own files.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

func (s *API) dashboardPage(w http.ResponseWriter, r *http.Request) {
	b, _ := dashboardFS.ReadFile("dashboard/index.html")
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

var assetTypes = map[string]string{"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}

func (s *API) dashboardAsset(w http.ResponseWriter, r *http.Request) {
	name := path.Base(r.PathValue("file"))
	ct, ok := assetTypes[name]
	if !ok {
		problem.Write(w, r, problem.New(problem.NotFound, "no asset %s", name))
		return
	}
	b, _ := dashboardFS.ReadFile("dashboard/" + name)
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// ---- the panels ----

type kpi struct {
	ID, Label, Value, Unit, Note string
}

type chartPoint struct {
	X, Y  string
	Label string
	Value int64
}

type lineChart struct {
	ID, Title, Class string
	Area, Line       string
	Points           []chartPoint
	MaxLabel         string
	XLabels          []axisLabel
	Total            int64
	TotalLabel       string
	Empty            bool
}

type axisLabel struct {
	X, Text, Anchor string
}

type gatewayBar struct {
	Gateway, Y, TextY, DetailY, Width, Percent, Detail string
	BasisPoints                                        int64
	HasRate                                            bool
}

type declineRow struct {
	Gateway, Code string
	Count         int64
	Amount        string
}

type bar struct {
	ID, Label, Class, X, Y, W, H, LabelX, ValueY, Value string
	Amount, Count                                       int64
}

type reconRow struct {
	Date, Status, GatewayNet, LedgerNet, Difference string
	Mismatches                                      int
	IDs                                             []string
}

type panelsView struct {
	From, To, ToInclusive string
	Currency              string
	Currencies            string
	Scope                 string
	KPIs                  []kpi
	Revenue, Volume       lineChart
	Gateways              []gatewayBar
	GatewaysHeight        int
	Declines              []declineRow
	Aging                 []bar
	AgingTotal            string
	MRR                   []bar
	MRRMonth              string
	Recon                 []reconRow
	Generated             string
}

// dashboardPanels renders the panels for from..to (dates, both inclusive,
// as a person picks them) in one currency.
func (s *API) dashboardPanels(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "from", "to", "currency", "account_id")
	today := rollup.DayStart(s.now())
	from, fok := q.date("from")
	last, tok := q.date("to")
	cur := q.currency(false)
	if !tok {
		last = today
	}
	if !fok {
		from = last.AddDate(0, 0, -29)
	}
	to := last.AddDate(0, 0, 1)
	if len(q.errs) == 0 && (!from.Before(to) || to.Sub(from) > 366*24*time.Hour) {
		q.fail("to", "must be on or after from, at most 366 days later")
	}
	if err := q.err(); err != nil {
		problem.Write(w, r, err)
		return
	}
	sc, err := s.scopeOf(r, q.get("account_id"))
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	v, err := s.panels(r.Context(), sc, from, to, cur)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	b := renderPanels(v)
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "private, no-store")
	_, _ = w.Write(b)
}

// panels gathers every figure through the same cached reports the API serves.
func (s *API) panels(ctx context.Context, sc store.Scope, from, to time.Time, cur string) (panelsView, error) {
	v := panelsView{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly),
		ToInclusive: to.AddDate(0, 0, -1).Format(time.DateOnly), Generated: s.now().UTC().Format("2006-01-02 15:04 UTC")}
	v.Scope = "all accounts"
	if !sc.All {
		v.Scope = fmt.Sprintf("%d account(s)", len(sc.Accounts))
	}
	sum, err := cached(ctx, s, sc, "summary|"+rfc(from)+"|"+rfc(to)+"|", from, to,
		func(ctx context.Context) (store.Summary, error) { return s.Store.Summary(ctx, sc, from, to, "") })
	if err != nil {
		return v, err
	}
	var curs []string
	best, bestVol := "", int64(-1)
	for _, c := range sum.Currencies {
		if c.Currency == rollup.NoCurrency {
			continue
		}
		curs = append(curs, c.Currency)
		if c.Transfers.Posted.Amount > bestVol {
			best, bestVol = c.Currency, c.Transfers.Posted.Amount
		}
	}
	if cur == "" {
		cur = best
	}
	if cur == "" {
		cur = "USD"
	}
	if !slices.Contains(curs, cur) {
		curs = append(curs, cur)
		slices.Sort(curs)
	}
	v.Currency, v.Currencies = cur, strings.Join(curs, ",")
	var cs store.CurrencySummary
	for _, c := range sum.Currencies {
		if c.Currency == cur {
			cs = c
		}
	}
	c := money.Currency(cur)

	series := func(metric string) (store.Timeseries, error) {
		ts := store.Timeseries{Metric: metric, Granularity: "day", From: from, To: to, Currency: cur}
		key := "timeseries|" + metric + "||day|" + rfc(from) + "|" + rfc(to) + "|" + cur
		return cached(ctx, s, sc, key, from, to, func(ctx context.Context) (store.Timeseries, error) { return s.Store.Timeseries(ctx, sc, ts) })
	}
	rev, err := series(rollup.MInvoicePaid)
	if err != nil {
		return v, err
	}
	vol, err := series(rollup.MTransferPosted)
	if err != nil {
		return v, err
	}
	v.Revenue = newLineChart("chart-revenue", "Revenue (invoices paid)", "rev", rev, c)
	v.Volume = newLineChart("chart-volume", "Transfer volume (posted)", "vol", vol, c)

	last := to.AddDate(0, 0, -1)
	aging, err := cached(ctx, s, sc, "aging|"+last.Format(time.DateOnly)+"|"+cur, store.Beginning, to,
		func(ctx context.Context) (store.Aging, error) { return s.Store.Aging(ctx, sc, last, cur) })
	if err != nil {
		return v, err
	}
	month := last.AddDate(0, 0, 1-last.Day())
	mrr, err := cached(ctx, s, sc, "mrr|"+month.Format("2006-01")+"|"+cur, store.Beginning, month.AddDate(0, 1, 0),
		func(ctx context.Context) (store.MRR, error) { return s.Store.MRR(ctx, sc, month, cur) })
	if err != nil {
		return v, err
	}
	var m store.MRRCurrency
	for _, x := range mrr.Currencies {
		if x.Currency == cur {
			m = x
		}
	}
	v.MRRMonth = mrr.Month

	var succ, att int64
	for _, g := range cs.Payments {
		succ += g.SuccessRate.Successes
		att += g.SuccessRate.Attempts
	}
	rate := store.NewRate(succ, att)
	var agingTotal store.Figure
	for _, a := range aging.Currencies {
		if a.Currency == cur {
			agingTotal = a.Total
		}
	}
	v.KPIs = []kpi{
		{"kpi-volume", "Transfer volume", FormatMoney(cs.Transfers.Posted.Amount, c), cur, plural(cs.Transfers.Posted.Count, "transfer")},
		{"kpi-revenue", "Revenue", FormatMoney(cs.Invoices.Paid.Amount, c), cur, plural(cs.Invoices.Paid.Count, "invoice") + " paid"},
		{"kpi-success", "Payment success", fmtRate(rate), "", fmt.Sprintf("%d of %d attempts", succ, att)},
		// Refunds net of those that came back (failed after succeeding).
		{"kpi-refunds", "Refunds", FormatMoney(cs.Refunds.Net, c), cur, plural(cs.Refunds.Succeeded.Count, "refund") + reversedNote(cs.Refunds.Reversed.Count) + ", " + plural(cs.Disputes.Count, "dispute")},
		{"kpi-mrr", "MRR " + mrr.Month, FormatMoney(m.Closing, c), cur, "ARR " + FormatMoney(m.ARR, c) + " · " + plural(m.ActiveSubscriptions, "subscription")},
		{"kpi-ar", "Receivables", FormatMoney(agingTotal.Amount, c), cur, plural(agingTotal.Count, "open invoice") + " on " + v.ToInclusive},
	}

	for i, g := range cs.Payments {
		y := i * 58
		gb := gatewayBar{Gateway: g.Gateway, TextY: itoa(int64(y + 16)), Y: itoa(int64(y + 24)), DetailY: itoa(int64(y + 50)),
			Percent: fmtRate(g.SuccessRate),
			Detail:  fmt.Sprintf("%d of %d attempts · %s %s captured", g.SuccessRate.Successes, g.SuccessRate.Attempts, FormatMoney(g.Captured.Amount, c), cur)}
		if g.SuccessRate.BasisPoints != nil {
			gb.HasRate, gb.BasisPoints = true, *g.SuccessRate.BasisPoints
			gb.Width = itoa(*g.SuccessRate.BasisPoints * 360 / 10000)
		} else {
			gb.Width = "0"
		}
		v.Gateways = append(v.Gateways, gb)
		for _, d := range g.DeclineReasons {
			v.Declines = append(v.Declines, declineRow{Gateway: g.Gateway, Code: d.Code, Count: d.Count, Amount: FormatMoney(d.Amount, c)})
		}
	}
	v.GatewaysHeight = max(58, len(cs.Payments)*58)
	slices.SortStableFunc(v.Declines, func(a, b declineRow) int { return int(b.Count - a.Count) })
	v.Declines = v.Declines[:min(4, len(v.Declines))]

	// AR aging bars.
	var buckets []store.AgingBucket
	for _, a := range aging.Currencies {
		if a.Currency == cur {
			buckets = a.Buckets
		}
	}
	if buckets == nil {
		for _, b := range store.AgingBuckets {
			buckets = append(buckets, store.AgingBucket{Bucket: b})
		}
	}
	var maxA int64 = 1
	for _, b := range buckets {
		maxA = max(maxA, b.Amount)
	}
	for i, b := range buckets {
		h := b.Amount * 120 / maxA
		if b.Amount > 0 && h < 2 {
			h = 2
		}
		x := 20 + i*76
		class := "bar-aging"
		if i >= 3 {
			class += " later"
		} else if i >= 1 {
			class += " late"
		}
		v.Aging = append(v.Aging, bar{ID: "aging-" + b.Bucket, Label: agingLabel(b.Bucket), Class: class,
			X: itoa(int64(x)), W: "52", Y: itoa(150 - h), H: itoa(h), LabelX: itoa(int64(x + 26)), ValueY: itoa(144 - h),
			Value: fmtShort(b.Amount, c), Amount: b.Amount, Count: b.Count})
	}
	v.AgingTotal = FormatMoney(agingTotal.Amount, c) + " " + cur

	// MRR bridge (waterfall).
	steps := []struct {
		label string
		delta int64
		total bool
	}{
		{"Opening", m.Opening, true}, {"New", m.New + m.Reactivation, false}, {"Expand", m.Expansion, false},
		{"Contract", -m.Contraction, false}, {"Churn", -m.Churned, false}, {"Closing", m.Closing, true},
	}
	var top int64 = 1
	run := int64(0)
	for _, st := range steps {
		if st.total {
			run = st.delta
		} else {
			run += st.delta
		}
		top = max(top, run, run-st.delta)
	}
	run = 0
	for i, st := range steps {
		lo, hi := run, run+st.delta
		class := "wf-up"
		switch {
		case st.total:
			lo, hi, class = 0, st.delta, "wf-total"
			run = st.delta
		case st.delta < 0:
			lo, hi, class = run+st.delta, run, "wf-down"
			run += st.delta
		default:
			run += st.delta
		}
		y1, y2 := 150-hi*120/top, 150-lo*120/top
		h := max(y2-y1, 1)
		x := 14 + i*64
		val := fmtShort(st.delta, c)
		if st.delta > 0 && !st.total {
			val = "+" + val
		}
		v.MRR = append(v.MRR, bar{ID: "mrr-" + strings.ToLower(st.label), Label: st.label, Class: class, X: itoa(int64(x)), W: "44",
			Y: itoa(y1), H: itoa(h), LabelX: itoa(int64(x + 22)), ValueY: itoa(y1 - 6), Value: val, Amount: st.delta})
	}

	// Reconciliation of the last days of the range (up to seven).
	for d := last; !d.Before(from) && !d.Before(last.AddDate(0, 0, -6)); d = d.AddDate(0, 0, -1) {
		day := d
		rec, err := cached(ctx, s, sc, "reconciliation|"+day.Format(time.DateOnly), store.Beginning, day.AddDate(0, 0, 2),
			func(ctx context.Context) (store.Reconciliation, error) { return s.Store.Reconciliation(ctx, sc, day) })
		if err != nil {
			return v, err
		}
		row := reconRow{Date: rec.Date, Status: rec.Status}
		var gn, ln int64
		for _, g := range rec.Gateways {
			if g.Currency == cur {
				gn += g.GatewayNet
				ln += g.LedgerNet
			}
		}
		if len(rec.Gateways) == 0 && len(rec.Mismatches) == 0 {
			row.Status = "none"
		}
		row.GatewayNet, row.LedgerNet, row.Difference = FormatMoney(gn, c), FormatMoney(ln, c), FormatMoney(gn-ln, c)
		row.Mismatches = len(rec.Mismatches)
		for i, mm := range rec.Mismatches {
			if i == 3 {
				row.IDs = append(row.IDs, fmt.Sprintf("+%d more", len(rec.Mismatches)-3))
				break
			}
			row.IDs = append(row.IDs, mm.PaymentID)
		}
		v.Recon = append(v.Recon, row)
	}
	return v, nil
}

func agingLabel(b string) string {
	if b == "current" {
		return "Current"
	}
	return b + " days"
}

func newLineChart(id, title, class string, ts store.Timeseries, c money.Currency) lineChart {
	ch := lineChart{ID: id, Title: title, Class: class}
	var pts []store.Point
	if len(ts.Series) > 0 {
		pts = ts.Series[0].Points
	}
	const left, right, top, bottom = 64.0, 590.0, 14.0, 150.0
	var maxV int64
	for _, p := range pts {
		maxV = max(maxV, p.Amount)
		ch.Total += p.Amount
	}
	ch.TotalLabel = FormatMoney(ch.Total, c)
	ch.Empty = ch.Total == 0
	scaleMax := niceCeil(maxV)
	ch.MaxLabel = fmtShort(scaleMax, c)
	if len(pts) == 0 {
		return ch
	}
	step := 0.0
	if len(pts) > 1 {
		step = (right - left) / float64(len(pts)-1)
	}
	var line, area strings.Builder
	for i, p := range pts {
		x := left + step*float64(i)
		if len(pts) == 1 {
			x = (left + right) / 2
		}
		y := bottom - (bottom-top)*float64(p.Amount)/float64(max(scaleMax, 1))
		xs, ys := strconv.FormatFloat(x, 'f', 1, 64), strconv.FormatFloat(y, 'f', 1, 64)
		if i == 0 {
			fmt.Fprintf(&line, "M%s,%s", xs, ys)
			fmt.Fprintf(&area, "M%s,%.1f L%s,%s", xs, bottom, xs, ys)
		} else {
			fmt.Fprintf(&line, " L%s,%s", xs, ys)
			fmt.Fprintf(&area, " L%s,%s", xs, ys)
		}
		ch.Points = append(ch.Points, chartPoint{X: xs, Y: ys, Value: p.Amount,
			Label: p.Start.Format("Jan 2") + ": " + FormatMoney(p.Amount, c) + " " + string(c)})
		if i == len(pts)-1 {
			fmt.Fprintf(&area, " L%s,%.1f Z", xs, bottom)
		}
	}
	ch.Line, ch.Area = line.String(), area.String()
	for _, i := range []int{0, len(pts) / 2, len(pts) - 1} {
		anchor := "middle"
		if i == 0 {
			anchor = "start"
		} else if i == len(pts)-1 {
			anchor = "end"
		}
		ch.XLabels = append(ch.XLabels, axisLabel{X: ch.Points[i].X, Text: pts[i].Start.Format("Jan 2"), Anchor: anchor})
		if len(pts) == 1 {
			break
		}
	}
	return ch
}

// niceCeil rounds a chart's maximum up to 1, 2 or 5 × a power of ten.
func niceCeil(v int64) int64 {
	if v <= 0 {
		return 0
	}
	p := int64(1)
	for p <= v/10 {
		p *= 10
	}
	for _, m := range []int64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return v
}

// FormatMoney formats minor units exactly, with thousands separators.
func FormatMoney(minor int64, c money.Currency) string {
	s := money.Format(minor, c)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	out := b.String()
	if hasFrac {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

// fmtShort formats a chart label: whole major units, with k/M suffixes.
func fmtShort(minor int64, c money.Currency) string {
	exp := c.Exponent()
	if exp < 0 {
		exp = 2
	}
	major := minor / money.Pow10(exp)
	neg := major < 0
	if neg {
		major = -major
	}
	var s string
	switch {
	case major >= 10_000_000:
		s = itoa(major/1_000_000) + "M"
	case major >= 1_000_000:
		s = itoa(major/1_000_000) + "." + itoa(major%1_000_000/100_000) + "M"
	case major >= 10_000:
		s = itoa(major/1000) + "k"
	case major >= 1000:
		s = itoa(major/1000) + "." + itoa(major%1000/100) + "k"
	default:
		s = itoa(major)
	}
	if neg {
		s = "-" + s
	}
	return s
}

// fmtRate formats basis points as a percentage with two decimals.
func fmtRate(r store.Rate) string {
	if r.BasisPoints == nil {
		return "—"
	}
	bp := *r.BasisPoints
	return fmt.Sprintf("%d.%02d%%", bp/100, bp%100)
}

// reversedNote names the refunds that came back, when there are any.
func reversedNote(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d reversed)", n)
}

func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return itoa(n) + " " + word + "s"
}
