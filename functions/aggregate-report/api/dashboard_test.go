package api

import (
	"testing"
	"time"

	"github.com/billfn/billfn/functions/aggregate-report/store"
	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/testenv"
)

func series(from time.Time, amounts ...int64) store.Timeseries {
	ts := store.Timeseries{Series: []store.Series{{Currency: "USD"}}}
	for i, a := range amounts {
		ts.Series[0].Points = append(ts.Series[0].Points, store.Point{Start: from.AddDate(0, 0, i), Count: 1, Amount: a})
	}
	return ts
}

// The panels of a busy period, of an empty one and of one day, with values
// that need escaping where a gateway, a decline code or a payment id goes.
func TestPanelsRenderAsTheTemplateDid(t *testing.T) {
	from := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	usd := money.Currency("USD")
	busy := panelsView{From: "2026-03-01", To: "2026-03-05", ToInclusive: "2026-03-04", Currency: "USD", Currencies: "EUR,USD",
		Scope: "all accounts", Generated: "2026-03-05 10:00 UTC",
		KPIs: []kpi{{"kpi-volume", "Transfer volume", "1,234.50", "USD", "3 transfers"},
			{"kpi-success", "Payment success", "50.00%", "", "1 of 2 attempts"},
			{"kpi-mrr", "MRR 2026-03", "0.00", "USD", "ARR 0.00 · 0 subscriptions"}},
		Revenue: newLineChart("chart-revenue", "Revenue (invoices paid)", "rev", series(from, 0, 125000, 99, 4_000_000), usd),
		Volume:  newLineChart("chart-volume", "Transfer volume (posted)", "vol", series(from, 0, 0, 0, 0), usd),
		Gateways: []gatewayBar{
			{Gateway: "sandbox", Y: "24", TextY: "16", DetailY: "50", Width: "180", Percent: "50.00%", Detail: "1 of 2 attempts · 10.00 USD captured", BasisPoints: 5000, HasRate: true},
			{Gateway: `<script>alert("x")</script>`, Y: "82", TextY: "74", DetailY: "108", Width: "0", Percent: "—", Detail: "0 of 0 attempts · Tom & Jerry's +1"},
		},
		GatewaysHeight: 116,
		Declines: []declineRow{{Gateway: "sandbox", Code: "card_declined", Count: 3, Amount: "30.00"},
			{Gateway: "stripe", Code: `"insufficient" & <funds>`, Count: 1, Amount: "1,000.00"}},
		Aging: []bar{{ID: "aging-current", Label: "Current", Class: "bar-aging", X: "20", Y: "30", W: "52", H: "120", LabelX: "46", ValueY: "24", Value: "1.2k", Amount: 120000, Count: 2},
			{ID: "aging-1-30", Label: "1-30 days", Class: "bar-aging late", X: "96", Y: "150", W: "52", H: "0", LabelX: "122", ValueY: "144", Value: "0"}},
		AgingTotal: "1,200.00 USD",
		MRR: []bar{{ID: "mrr-opening", Label: "Opening", Class: "wf-total", X: "14", Y: "30", W: "44", H: "120", LabelX: "36", ValueY: "24", Value: "100", Amount: 10000},
			{ID: "mrr-new", Label: "New", Class: "wf-up", X: "78", Y: "20", W: "44", H: "10", LabelX: "100", ValueY: "14", Value: "+10", Amount: 1000},
			{ID: "mrr-churn", Label: "Churn", Class: "wf-down", X: "142", Y: "20", W: "44", H: "5", LabelX: "164", ValueY: "14", Value: "-5", Amount: -500}},
		MRRMonth: "2026-03",
		Recon: []reconRow{{Date: "2026-03-04", Status: "matched", GatewayNet: "10.00", LedgerNet: "10.00", Difference: "0.00"},
			{Date: "2026-03-03", Status: "mismatched", GatewayNet: "10.00", LedgerNet: "0.00", Difference: "10.00", Mismatches: 1, IDs: []string{"pay_<1>"}},
			{Date: "2026-03-02", Status: "mismatched", GatewayNet: "-1.00", LedgerNet: "0.00", Difference: "-1.00", Mismatches: 5, IDs: []string{"pay_a", "pay_'b'", "pay_c", "+2 more"}},
			{Date: "2026-03-01", Status: "none", GatewayNet: "0.00", LedgerNet: "0.00", Difference: "0.00"}},
	}
	empty := panelsView{From: "2026-02-01", To: "2026-03-01", ToInclusive: "2026-02-28", Currency: "EUR", Currencies: "EUR",
		Scope: "2 account(s)", Generated: "2026-03-01 00:00 UTC",
		Revenue:        newLineChart("chart-revenue", "Revenue (invoices paid)", "rev", store.Timeseries{}, "EUR"),
		Volume:         newLineChart("chart-volume", "Transfer volume (posted)", "vol", store.Timeseries{}, "EUR"),
		GatewaysHeight: 58, AgingTotal: "0.00 EUR", MRRMonth: "2026-02"}
	oneDay := empty
	oneDay.Revenue = newLineChart("chart-revenue", "Revenue (invoices paid)", "rev", series(from, 5000), "JPY")
	oneDay.Gateways = []gatewayBar{{Gateway: "sandbox", Y: "24", TextY: "16", DetailY: "50", Width: "360", Percent: "100.00%", Detail: "2 of 2", BasisPoints: 10000, HasRate: true}}
	oneDay.Recon = []reconRow{{Date: "2026-02-28", Status: "unknown", Mismatches: 0}}
	for name, v := range map[string]panelsView{"panels-busy.html.golden": busy, "panels-empty.html.golden": empty, "panels-one-day.html.golden": oneDay} {
		got := renderPanels(v)
		testenv.Golden(t, name, got)
	}
}
