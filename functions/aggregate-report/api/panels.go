package api

import (
	"strings"

	"github.com/billfn/billfn/shared/htmlesc"
)

// renderPanels writes the dashboard's panels (the HTML fragment the shell
// shows), section by section. It was html/template until issue 20; the
// page is the same (testdata/*.golden, written by that template), and the
// binary no longer links the template engine (see shared/htmlesc).
func renderPanels(v panelsView) []byte {
	var w htmlesc.Builder
	w.Printf(`<div class="panels" data-range-from="%s" data-range-to="%s" data-currency="%s" data-currencies="%s">`+"\n",
		v.From, v.ToInclusive, v.Currency, v.Currencies)
	panelKPIs(&w, v.KPIs)
	w.Raw("\n\n" + `<section class="grid">`)
	panelLineChart(&w, v.Revenue, v.Currency)
	panelLineChart(&w, v.Volume, v.Currency)
	w.Raw("\n</section>\n\n" + `<section class="grid3">`)
	panelGateways(&w, v)
	panelAging(&w, v)
	panelMRR(&w, v)
	w.Raw("\n</section>\n\n")
	panelRecon(&w, v)
	w.Printf("\n"+`<p class="footer">Figures for %s, %s to %s (UTC days), amounts in %s. Rendered %s.</p>`+"\n</div>\n",
		v.Scope, v.From, v.ToInclusive, v.Currency, v.Generated)
	return []byte(w.String())
}

func panelKPIs(w *htmlesc.Builder, kpis []kpi) {
	w.Raw(`<section class="kpis">`)
	for _, k := range kpis {
		w.Printf("\n"+`  <div class="card kpi" data-testid="%s">`, k.ID)
		w.Printf("\n"+`    <div class="label">%s</div>`, k.Label)
		w.Printf("\n"+`    <div class="value"><span class="figure">%s</span>`, k.Value)
		if k.Unit != "" {
			w.Printf(`<small>%s</small>`, k.Unit)
		}
		w.Printf("</div>\n"+`    <div class="note">%s</div>`+"\n  </div>", k.Note)
	}
	w.Raw("\n</section>")
}

func panelLineChart(w *htmlesc.Builder, c lineChart, currency string) {
	w.Raw("\n" + `  <div class="card">`)
	w.Printf("\n"+`    <h2>%s <span class="sub">· %s %s in the period</span></h2>`, c.Title, c.TotalLabel, currency)
	w.Printf("\n"+`    <svg id="%s" viewBox="0 0 600 176" role="img" aria-label="%s" data-total="%v" data-points="%v">`,
		c.ID, c.Title, c.Total, len(c.Points))
	w.Raw("\n" + `      <line class="axis" x1="64" y1="150" x2="590" y2="150"/>` +
		"\n" + `      <line class="axis" x1="64" y1="14" x2="590" y2="14" stroke-dasharray="3 4"/>` +
		"\n" + `      <line class="axis" x1="64" y1="82" x2="590" y2="82" stroke-dasharray="3 4"/>`)
	w.Printf("\n"+`      <text x="58" y="18" text-anchor="end">%s</text>`, c.MaxLabel)
	w.Raw("\n" + `      <text x="58" y="154" text-anchor="end">0</text>`)
	if len(c.Points) > 0 {
		w.Printf("\n"+`      <path class="area-%s" d="%s"/>`, c.Class, c.Area)
		w.Printf("\n"+`      <path class="line-%s" d="%s"/>`, c.Class, c.Line)
		for _, p := range c.Points {
			w.Printf("\n"+`      <circle class="line-%s" cx="%s" cy="%s" r="2.2" data-value="%v"><title>%s</title></circle>`,
				c.Class, p.X, p.Y, p.Value, p.Label)
		}
	}
	for _, l := range c.XLabels {
		w.Printf("\n"+`      <text x="%s" y="170" text-anchor="%s">%s</text>`, l.X, l.Anchor, l.Text)
	}
	if c.Empty {
		w.Printf(`<text x="327" y="86" text-anchor="middle">no %s in this period</text>`, strings.ToLower(c.Title))
	}
	w.Raw("\n    </svg>\n  </div>")
}

func panelGateways(w *htmlesc.Builder, v panelsView) {
	w.Raw("\n" + `  <div class="card">` + "\n    <h2>Payment success by gateway</h2>")
	if len(v.Gateways) == 0 {
		w.Raw(`<p class="empty">No payment attempts in this period.</p>` + "\n  </div>")
		return
	}
	w.Printf("\n"+`    <svg id="chart-gateways" viewBox="0 0 360 %v" role="img" aria-label="payment success rate by gateway">`, v.GatewaysHeight)
	for _, g := range v.Gateways {
		w.Printf("\n"+`      <text x="0" y="%s" class="val big">%s</text>`, g.TextY, g.Gateway)
		w.Printf("\n"+`      <text x="360" y="%s" text-anchor="end" class="val big" data-testid="success-%s">%s</text>`, g.TextY, g.Gateway, g.Percent)
		w.Printf("\n"+`      <rect class="bar-track" x="0" y="%s" width="360" height="12" rx="6"/>`, g.Y)
		w.Printf("\n"+`      <rect class="bar-ok" x="0" y="%s" width="%s" height="12" rx="6" data-gateway="%s" data-basis-points="%v"/>`,
			g.Y, g.Width, g.Gateway, g.BasisPoints)
		w.Printf("\n"+`      <text x="0" y="%s">%s</text>`, g.DetailY, g.Detail)
	}
	w.Raw("\n    </svg>")
	if len(v.Declines) > 0 {
		w.Raw("\n" + `    <table class="declines">` +
			"\n" + `      <thead><tr><th>Top decline reasons</th><th>Gateway</th><th class="num">Attempts</th><th class="num">Amount</th></tr></thead>` +
			"\n      <tbody>")
		for _, d := range v.Declines {
			w.Printf(`<tr><td><code>%s</code></td><td>%s</td><td class="num">%v</td><td class="num">%s</td></tr>`, d.Code, d.Gateway, d.Count, d.Amount)
		}
		w.Raw("</tbody>\n    </table>")
	}
	w.Raw("\n  </div>")
}

func panelAging(w *htmlesc.Builder, v panelsView) {
	w.Printf("\n"+`  <div class="card">`+"\n"+`    <h2>AR aging <span class="sub">· %s open on %s</span></h2>`, v.AgingTotal, v.ToInclusive)
	w.Raw("\n" + `    <svg id="chart-aging" viewBox="0 0 400 176" role="img" aria-label="accounts receivable aging">` +
		"\n" + `      <line class="axis" x1="10" y1="150" x2="390" y2="150"/>`)
	for _, b := range v.Aging {
		w.Printf("\n"+`      <rect class="%s" x="%s" y="%s" width="%s" height="%s" rx="3" data-amount="%v" data-count="%v"><title>%s: %s (%v)</title></rect>`,
			b.Class, b.X, b.Y, b.W, b.H, b.Amount, b.Count, b.Label, b.Value, b.Count)
		barLabels(w, b)
	}
	w.Raw("\n    </svg>\n  </div>")
}

func panelMRR(w *htmlesc.Builder, v panelsView) {
	w.Printf("\n"+`  <div class="card">`+"\n"+`    <h2>MRR bridge <span class="sub">· %s</span></h2>`, v.MRRMonth)
	w.Raw("\n" + `    <svg id="chart-mrr" viewBox="0 0 400 176" role="img" aria-label="MRR bridge">` +
		"\n" + `      <line class="axis" x1="6" y1="150" x2="394" y2="150"/>`)
	for _, b := range v.MRR {
		w.Printf("\n"+`      <rect class="%s" x="%s" y="%s" width="%s" height="%s" rx="3" data-amount="%v"/>`, b.Class, b.X, b.Y, b.W, b.H, b.Amount)
		barLabels(w, b)
	}
	w.Raw("\n    </svg>\n  </div>")
}

// barLabels writes a bar's value above it and its label under the axis.
func barLabels(w *htmlesc.Builder, b bar) {
	w.Printf("\n"+`      <text x="%s" y="%s" text-anchor="middle" class="val" data-testid="%s">%s</text>`, b.LabelX, b.ValueY, b.ID, b.Value)
	w.Printf("\n"+`      <text x="%s" y="166" text-anchor="middle">%s</text>`, b.LabelX, b.Label)
}

func panelRecon(w *htmlesc.Builder, v panelsView) {
	w.Printf(`<section class="card">`+"\n"+`  <h2>Cash reconciliation <span class="sub">· gateways' captures − refunds vs the ledger, %s</span></h2>`, v.Currency)
	w.Raw("\n" + `  <table id="recon">` +
		"\n" + `    <thead><tr><th>Day</th><th>Status</th><th class="num">Gateways net</th><th class="num">Ledger net</th><th class="num">Difference</th><th>Mismatched payments</th></tr></thead>` +
		"\n    <tbody>")
	for _, r := range v.Recon {
		w.Printf("\n"+`      <tr data-testid="recon-%s" data-status="%s" data-mismatches="%v">`, r.Date, r.Status, r.Mismatches)
		w.Printf("\n        <td>%s</td>\n        <td>", r.Date)
		switch r.Status {
		case "matched":
			w.Raw(`<span class="badge ok">matched</span>`)
		case "none":
			w.Raw(`<span class="badge none">no activity</span>`)
		default:
			es := "es"
			if r.Mismatches == 1 {
				es = ""
			}
			w.Printf(`<span class="badge bad">%v mismatch%s</span>`, r.Mismatches, es)
		}
		w.Printf("</td>\n"+`        <td class="num">%s</td><td class="num">%s</td><td class="num">%s</td>`+"\n        <td>", r.GatewayNet, r.LedgerNet, r.Difference)
		for i, id := range r.IDs {
			if i > 0 {
				w.Raw(", ")
			}
			w.Printf("<code>%s</code>", id)
		}
		w.Raw("</td>\n      </tr>")
	}
	w.Raw("\n    </tbody>\n  </table>\n</section>")
}
