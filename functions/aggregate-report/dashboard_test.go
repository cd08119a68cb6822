package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/billfn/billfn/functions/aggregate-report/api"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/money"
)

// dashboardSeed is a month of a small business, with known figures.
type dashboardSeed struct {
	volume, revenue int64
	refunds         int64
	mismatchDay     string
}

// seedDashboard delivers 2026-02-14..2026-03-14: transfers and paid
// invoices every day, payments at two gateways (stripe 20 of 30 succeed,
// sandbox 29 of 30), open invoices in every aging bracket, subscriptions
// moving MRR in March, captures posted by the ledger except one.
func seedDashboard(t testing.TB, g *rig) dashboardSeed {
	var s dashboardSeed
	start := day("2026-02-14")
	clearing := "c1ea0000-0000-4000-8000-000000000001"
	var evs []events.Event
	evs = append(evs, account(t, start, clearing, "00000000-0000-0000-0000-000000000000", "SYS-CLEARING-USD", "USD"),
		account(t, start, acctA, userA, "ACC-7F3K-9Q2M", "USD"), account(t, start, acctB, userB, "ACC-2B8D-4R1X", "USD"))
	for i := 0; i < 29; i++ {
		d := start.AddDate(0, 0, i)
		// volume grows through the month with a weekly rhythm
		for k, share := range []int64{5, 3, 2} {
			amount := share * (120_000 + int64(i)*9_000 + int64((i*7919)%13)*11_000)
			if d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
				amount = amount * 6 / 10
			}
			evs = append(evs, transfer(t, d.Add(time.Duration(9+k*3)*time.Hour), acctA, acctB, amount, "USD", "posted"))
			s.volume += amount
		}
		if i%4 == 0 {
			evs = append(evs, transfer(t, d.Add(15*time.Hour), acctB, acctA, 25_000, "EUR", "posted"))
		}
		inv := id()
		rev := 180_000 + int64(i)*4_000 + int64((i*31)%7)*15_000
		evs = append(evs, invoice(t, d.Add(16*time.Hour), "paid", invoiceFields{id: inv, account: acctA, cur: "USD", status: "paid",
			due: d.Format(time.DateOnly), total: rev, paid: rev, finalizedAt: ptr(d)}))
		s.revenue += rev
	}
	// Payments: 30 at each gateway over the 29 days (the first day has two);
	// stripe declines every third (20 of 30 succeed), sandbox once (29 of 30).
	for j := 0; j < 30; j++ {
		i := j % 29
		d := start.AddDate(0, 0, i)
		for _, gw := range []string{"stripe", "sandbox"} {
			p := id()
			amount := int64(50_000 + i*1_000)
			f := paymentFields{id: p, account: acctA, cur: "USD", gateway: gw, amount: amount}
			at := d.Add(14 * time.Hour)
			if (gw == "stripe" && j%3 == 2) || (gw == "sandbox" && j == 17) {
				f.decline = "card_declined"
				evs = append(evs, payment(t, at, "failed", f))
				continue
			}
			f.captured = amount
			evs = append(evs, payment(t, at, "captured", f))
			if gw == "stripe" && j == 25 {
				s.mismatchDay = d.Format(time.DateOnly) // the ledger never posts this capture
				continue
			}
			evs = append(evs, transfer(t, at.Add(2*time.Second), clearing, acctA, amount, "USD", "posted", withMeta("payment_capture", p, gw)))
			s.volume += amount
			if j%9 == 4 {
				evs = append(evs, refund(t, at.Add(time.Hour), "succeeded", "re_"+p[:6], p, acctA, amount/5, "USD", gw),
					transfer(t, at.Add(time.Hour+time.Second), acctA, clearing, amount/5, "USD", "posted", withMeta("refund", p, gw)))
				s.refunds += amount / 5
				s.volume += amount / 5
			}
		}
	}
	// open invoices as of 2026-03-14: current 3×1500.00, 1-30 2×4000.00, 31-60 9000.00, 90+ 2500.00
	for _, o := range []struct {
		due   string
		total int64
	}{{"2026-03-20", 150_000}, {"2026-03-25", 150_000}, {"2026-03-14", 150_000}, {"2026-03-01", 400_000}, {"2026-02-20", 400_000},
		{"2026-02-01", 900_000}, {"2025-12-01", 250_000}} {
		fin := day("2025-11-20")
		evs = append(evs, invoice(t, fin, "finalized", invoiceFields{id: id(), account: acctB, cur: "USD", status: "open", due: o.due,
			total: o.total, dueAmount: o.total, finalizedAt: &fin}))
	}
	// MRR: ten subscriptions at 290.00 from February; in March three new at
	// 490.00, one upgraded to 990.00 and one canceled.
	var subs []string
	for i := 0; i < 10; i++ {
		sid := id()
		subs = append(subs, sid)
		evs = append(evs, subscription(t, start.AddDate(0, 0, i), "created", sid, acctA, "active", 29_000, "USD"))
	}
	for i := 0; i < 3; i++ {
		evs = append(evs, subscription(t, day("2026-03-02").AddDate(0, 0, i*3), "created", id(), acctB, "active", 49_000, "USD"))
	}
	evs = append(evs, subscription(t, day("2026-03-05"), "updated", subs[0], acctA, "active", 99_000, "USD"),
		subscription(t, day("2026-03-09"), "canceled", subs[1], acctA, "canceled", 29_000, "USD"))
	g.deliverInBatches(evs, 400)
	return s
}

const chromiumPath = "/usr/bin/chromium"

// browser starts Debian's chromium headless with a new empty profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Debian's chromium is needed for the dashboard test and is not installed (%v);\n"+
			"install it with: apt-get install -y chromium", err)
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1100),
	)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// The dashboard, loaded in headless Chromium against a seeded database,
// draws the seeded figures; the screenshot goes to docs/dashboard.png when
// UPDATE_SCREENSHOT=1.
func TestDashboardRendersTheSeededFigures(t *testing.T) {
	g := newRig(t)
	g.setNow(at("2026-03-15T08:00:00Z"))
	seed := seedDashboard(t, g)
	srv := httptest.NewServer(g.h)
	defer srv.Close()
	ctx := browser(t)
	token := g.kit.Token(t, asAdmin.sub, auth.RoleAdmin)

	// The shell is public and holds no figures: without a token the page asks for one.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1400, 1100), chromedp.Navigate(srv.URL+"/dashboard"),
		chromedp.WaitVisible(`#login`)); err != nil {
		t.Fatal(err)
	}
	panels, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("panels").innerHTML`))
	if err != nil || panels != "" {
		t.Fatalf("figures without a token: %q (%v)", panels, err)
	}
	// A bad token is refused and the page says so. A link's token only
	// fills in the form; signing in takes the press a person makes.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/dashboard?currency=USD#token=not-a-jwt"),
		chromedp.WaitVisible(`#tokenunread`), chromedp.Click(`#signin`)); err != nil {
		t.Fatal(err)
	}
	refused, err := chromedp.Run(ctx, chromedp.Poll[string](`document.getElementById("loginerror").textContent`))
	if err != nil || !strings.Contains(refused, "refused") {
		t.Fatalf("a bad token: %q (%v)", refused, err)
	}

	url := srv.URL + "/dashboard?from=2026-02-14&to=2026-03-14&currency=USD#token=" + token
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(`#tokensub`), chromedp.Click(`#signin`),
		chromedp.WaitVisible(`body[data-state="ready"]`)); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`(() => {
		const q = s => document.querySelector(s);
		const text = s => (q(s) || {textContent: "missing"}).textContent.trim();
		const attr = (s, a) => (q(s) || {getAttribute: () => "missing"}).getAttribute(a);
		const dots = [...document.querySelectorAll("#chart-revenue circle")];
		return {
			hash: location.hash,
			volume: text('[data-testid="kpi-volume"] .figure'),
			revenue: text('[data-testid="kpi-revenue"] .figure'),
			success: text('[data-testid="kpi-success"] .figure'),
			refunds: text('[data-testid="kpi-refunds"] .figure'),
			mrr: text('[data-testid="kpi-mrr"] .figure'),
			mrrNote: text('[data-testid="kpi-mrr"] .note'),
			ar: text('[data-testid="kpi-ar"] .figure'),
			stripe: text('[data-testid="success-stripe"]'),
			sandbox: text('[data-testid="success-sandbox"]'),
			stripeBar: attr('#chart-gateways rect.bar-ok[data-gateway="stripe"]', "width"),
			agingLabels: [...document.querySelectorAll('#chart-aging rect')].map(r => r.getAttribute("data-amount")).join(","),
			mrrClosing: attr('#chart-mrr rect.wf-total:last-of-type', "data-amount"),
			mrrBars: [...document.querySelectorAll('#chart-mrr rect')].map(r => r.getAttribute("data-amount")).join(","),
			revenueTotal: attr('#chart-revenue', "data-total"),
			declines: [...document.querySelectorAll("table.declines tbody tr:first-child td")].slice(0, 3).map(td => td.textContent).join(" "),
			revenuePoints: String(dots.length),
			revenueFirst: dots.length ? dots[0].getAttribute("data-value") : "",
			volumeTotal: attr('#chart-volume', "data-total"),
			mismatch: attr('[data-testid="recon-2026-03-11"]', "data-status") + "/" + attr('[data-testid="recon-2026-03-11"]', "data-mismatches"),
			matched: attr('[data-testid="recon-2026-03-12"]', "data-status"),
			reconRows: String(document.querySelectorAll("#recon tbody tr").length),
			currencies: [...document.querySelectorAll("#currency option")].map(o => o.value).join(","),
			from: q("#from").value, to: q("#to").value,
		};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	usd := money.Currency("USD")
	want := map[string]string{
		"hash":          "", // the token left the address bar at once
		"volume":        api.FormatMoney(seed.volume, usd),
		"revenue":       api.FormatMoney(seed.revenue, usd),
		"success":       "81.67%", // (20 + 29) / (30 + 30)
		"refunds":       api.FormatMoney(seed.refunds, usd),
		"mrr":           "4,780.00", // 2,900.00 + 3×490.00 + 700.00 − 290.00
		"mrrNote":       "ARR 57,360.00 · 12 subscriptions",
		"ar":            "24,000.00",
		"stripe":        "66.67%",
		"sandbox":       "96.67%",
		"stripeBar":     "240", // 6667 bp of 360 px
		"agingLabels":   "450000,800000,900000,0,250000",
		"mrrBars":       "290000,147000,70000,0,-29000,478000",
		"declines":      "card_declined stripe 10",
		"revenueTotal":  fmt.Sprint(seed.revenue),
		"revenuePoints": "29",
		"revenueFirst":  "180000",
		"volumeTotal":   fmt.Sprint(seed.volume),
		"mismatch":      "mismatch/1",
		"matched":       "matched",
		"reconRows":     "7",
		"currencies":    "EUR,USD",
		"from":          "2026-02-14",
		"to":            "2026-03-14",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if seed.mismatchDay != "2026-03-11" {
		t.Fatal("the seed lost its planted mismatch")
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		out = filepath.Join("..", "..", "docs", "dashboard.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))

	// The filters reload the panels: EUR only.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.getElementById("currency").value = "EUR"; document.getElementById("filters").requestSubmit(); 0`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(`[data-currency="EUR"]`)); err != nil {
		t.Fatal(err)
	}
	eur, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('[data-testid="kpi-volume"] .figure').textContent + " " + location.search`))
	if err != nil || eur != "2,000.00 ?from=2026-02-14&to=2026-03-14&currency=EUR" {
		t.Fatalf("EUR panels: %q (%v)", eur, err)
	}
}

// The shell and its assets are public and locked down; the panels need a token.
func TestDashboardShellIsPublicButItsFiguresAreNot(t *testing.T) {
	g := newRig(t)
	for _, path := range []string{"/dashboard", "/dashboard/assets/app.js", "/dashboard/assets/style.css"} {
		rec := g.request(http.MethodGet, path, anonymous, nil)
		if rec.Code != 200 || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") ||
			rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: %d %v", path, rec.Code, rec.Header())
		}
	}
	rec := g.request(http.MethodGet, "/dashboard/panels", anonymous, nil)
	if rec.Code != 401 {
		t.Fatalf("panels without a token: %d", rec.Code)
	}
	rec = g.request(http.MethodGet, "/dashboard/panels?currency=USD", asCustomer(userA), nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Figures for 0 account(s)") || !strings.Contains(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("customer panels: %d %s", rec.Code, rec.Body)
	}
}

// panelsWatch serves h and keeps the bearer token of every request for the
// panels, so a test can tell whose figures the page asked for, and when.
type panelsWatch struct {
	h      http.Handler
	mu     sync.Mutex
	tokens []string
}

func (p *panelsWatch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/dashboard/panels" {
		p.mu.Lock()
		p.tokens = append(p.tokens, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		p.mu.Unlock()
	}
	p.h.ServeHTTP(w, r)
}

// watchedDashboard serves a rig's function behind a panelsWatch and opens
// a browser: the login tests' common start.
func watchedDashboard(t *testing.T) (*rig, *panelsWatch, *httptest.Server, context.Context) {
	g := newRig(t)
	watch := &panelsWatch{h: g.h}
	srv := httptest.NewServer(watch)
	t.Cleanup(srv.Close)
	return g, watch, srv, browser(t)
}

func (p *panelsWatch) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tokens...)
}

// settled waits until the page has either shown the login form or loaded
// (or failed to load) the figures, and gives a request it might still make
// a moment to arrive.
func settled(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`["login", "ready", "error"].includes(document.body.dataset.state || "")`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Sleep(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
}

// loginView is what the page shows and holds while it asks for a token.
type loginView struct {
	Hash, State, Field, Stored, Panels string
	Login                              bool // the login form is shown
	Sub, Role, Unread                  string
	Replaces, Keep                     bool // the note that a session is replaced, and the button to keep it
	SignOut                            bool // the Sign out button: shown only while a session is held
}

func readLogin(t *testing.T, ctx context.Context) loginView {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[loginView](`(() => {
		const q = id => document.getElementById(id);
		const shown = id => !!q(id) && !q(id).hidden && !q(id).closest("[hidden]");
		const text = id => shown(id) ? q(id).textContent : "";
		return {
			Hash: location.hash, State: document.body.dataset.state || "",
			Field: q("token").value, Stored: sessionStorage.getItem("billfn.token") || "",
			Panels: q("panels").innerHTML, Login: shown("login"),
			Sub: text("tokensub"), Role: text("tokenrole"), Unread: text("tokenunread"),
			Replaces: shown("tokenreplace"), Keep: shown("keep"), SignOut: shown("signout"),
		};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A link alone signs no one in (login CSRF: a link carrying an attacker's
// token would show the visitor the attacker's figures as their own). The
// token of a #token= link only fills in the login form, which names whom
// it signs in as; the figures load when the person presses Sign in. Nor
// does a link replace the session a tab already has.
func TestALinkWithATokenDoesNotSignInByItself(t *testing.T) {
	g, watch, srv, ctx := watchedDashboard(t)
	admin := g.kit.Token(t, asAdmin.sub, auth.RoleAdmin)
	other := g.kit.Token(t, userA, auth.RoleCustomer)

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/dashboard?currency=USD#token="+admin)); err != nil {
		t.Fatal(err)
	}
	settled(t, ctx)
	v := readLogin(t, ctx)
	if !v.Login || v.State != "login" || v.Panels != "" || len(watch.seen()) != 0 {
		t.Fatalf("a link signed in by itself: login form shown %v, state %q, panels asked with %d token(s), panels %.80q",
			v.Login, v.State, len(watch.seen()), v.Panels)
	}
	if v.Hash != "" || v.Field != admin || v.Stored != "" || v.Sub != asAdmin.sub || v.Role != "admin" || v.Replaces || v.Keep || v.SignOut {
		t.Fatalf("the link's token should pre-fill the form, name its subject and role, leave the address bar and stay out of storage: %+v", v)
	}
	// The person presses Sign in: now the figures load, with that token.
	if err := chromedp.Do(ctx, chromedp.Click(`#signin`), chromedp.WaitVisible(`body[data-state="ready"]`)); err != nil {
		t.Fatal(err)
	}
	if got := watch.seen(); len(got) != 1 || got[0] != admin {
		t.Fatalf("after the press the panels were asked %d time(s), want once with the link's token", len(got))
	}
	if v := readLogin(t, ctx); v.Stored != admin || v.Login || v.Field != "" || !v.SignOut {
		t.Fatalf("after the press: %+v", v)
	}

	// The tab holds a session; a link with another token does not replace
	// it, and loads neither token's figures before a press.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/dashboard?currency=EUR#token="+other)); err != nil {
		t.Fatal(err)
	}
	settled(t, ctx)
	v = readLogin(t, ctx)
	if got := watch.seen(); len(got) != 1 || !v.Login || v.State != "login" || v.Panels != "" {
		t.Fatalf("a link over a session loaded figures by itself: panels asked %d time(s) (want still 1), login form shown %v, state %q",
			len(got), v.Login, v.State)
	}
	if v.Hash != "" || v.Field != other || v.Stored != admin || v.Sub != userA || v.Role != "customer" || !v.Replaces || !v.Keep || !v.SignOut {
		t.Fatalf("the link's token should pre-fill the form, say it replaces the session, and leave the stored one alone: %+v", v)
	}
	// Keeping the session loads its own figures, and the link's token is gone.
	if err := chromedp.Do(ctx, chromedp.Click(`#keep`), chromedp.WaitVisible(`body[data-state="ready"]`)); err != nil {
		t.Fatal(err)
	}
	if got := watch.seen(); len(got) != 2 || got[1] != admin {
		t.Fatalf("keeping the session: panels asked %d time(s), the last with the link's token: %v", len(got), got[len(got)-1] == other)
	}
	if v := readLogin(t, ctx); v.Stored != admin || v.Field != "" || v.Login {
		t.Fatalf("after keeping the session: %+v", v)
	}

	// A link followed inside the open page changes only the fragment: the
	// page reads it there too, and still waits for the press.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`location.hash = "token=`+other+`"; 0`)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.body.dataset.state === "login"`)); err != nil {
		t.Fatalf("a fragment-only link was not read: %v (%+v)", err, readLogin(t, ctx))
	}
	settled(t, ctx)
	v = readLogin(t, ctx)
	if got := watch.seen(); len(got) != 2 || v.Hash != "" || v.Field != other || v.Stored != admin || v.Sub != userA || v.Panels != "" {
		t.Fatalf("a fragment-only link: panels asked %d time(s) (want still 2): %+v", len(got), v)
	}
	if err := chromedp.Do(ctx, chromedp.Click(`#signin`), chromedp.WaitVisible(`body[data-state="ready"]`)); err != nil {
		t.Fatal(err)
	}
	if got := watch.seen(); len(got) != 3 || got[2] != other {
		t.Fatalf("signing in with the link's token: panels asked %d time(s), want a third with it", len(got))
	}
	if v := readLogin(t, ctx); v.Stored != other {
		t.Fatal("the press did not replace the stored token")
	}
	// Signing out forgets the session and hides Sign out: nobody is signed in.
	if err := chromedp.Do(ctx, chromedp.Click(`#signout`), chromedp.WaitVisible(`body[data-state="login"]`)); err != nil {
		t.Fatal(err)
	}
	if v := readLogin(t, ctx); v.Stored != "" || !v.Login || v.SignOut {
		t.Fatalf("after Sign out: %+v", v)
	}
}

// What the login form says about a link's token is text, never markup, and
// a token it cannot read still fills in the form, with a neutral note.
func TestALinksTokenIsDescribedAsText(t *testing.T) {
	_, watch, srv, ctx := watchedDashboard(t)

	b64 := base64.RawURLEncoding.EncodeToString
	sub, role := `<img src=x id=injected onerror="document.title='owned'">`, `<b id=bold>admin</b>`
	forged := b64([]byte(`{"alg":"EdDSA","typ":"JWT"}`)) + "." + b64([]byte(`{"sub":"`+strings.ReplaceAll(sub, `"`, `\"`)+`","role":"`+role+`","exp":1}`)) + ".c2ln"
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/dashboard#token="+forged)); err != nil {
		t.Fatal(err)
	}
	settled(t, ctx)
	v := readLogin(t, ctx)
	marked, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.getElementById("injected") || !!document.getElementById("bold") || document.title === "owned"`))
	if err != nil || marked {
		t.Fatalf("the token's claims became markup (%v)", err)
	}
	if !v.Login || v.Field != forged || v.Sub != sub || v.Role != role || v.Unread != "" || len(watch.seen()) != 0 {
		t.Fatalf("a token with markup in its claims: %+v", v)
	}

	// Not a JWT at all: the form is filled in and says it cannot tell.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/dashboard?currency=USD#token=not-a-jwt")); err != nil {
		t.Fatal(err)
	}
	settled(t, ctx)
	v = readLogin(t, ctx)
	if !v.Login || v.Field != "not-a-jwt" || v.Sub != "" || v.Role != "" || v.Unread == "" || len(watch.seen()) != 0 {
		t.Fatalf("an unreadable token: %+v", v)
	}
}
