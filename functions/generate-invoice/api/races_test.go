package api

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/generate-invoice/invoicing"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// A coupon of three redemptions, asked for at once by customers'
// drafts being finalized, merchants' creations (auto-finalized and not),
// coupon patches and subscriptions: never more than three hold it, and
// times_redeemed counts exactly those that do.
func TestACouponsRedemptionsAreBoundedUnderConcurrency(t *testing.T) {
	g := newRig(t)
	for round := 0; round < 6; round++ {
		promo := "RACE-" + uuid.NewString()[:8]
		must(t, g.asAdmin("POST", "/coupons", map[string]any{"id": promo, "percent_off": "10", "max_redemptions": 3}), 201)
		var calls []func() *httptest.ResponseRecorder
		for i := 0; i < 4; i++ {
			user := uuid.NewString()
			body := invoiceBody(user, g.account(user, "USD"))
			body["coupon"] = promo
			rec := g.asCustomer(user, "POST", "/invoices", body)
			must(t, rec, 201)
			id := decode[map[string]any](t, rec)["id"].(string)
			calls = append(calls, func() *httptest.ResponseRecorder {
				return g.asCustomer(user, "POST", "/invoices/"+id+"/finalize", nil)
			})
		}
		for i := 0; i < 3; i++ {
			user := uuid.NewString()
			draft := g.createInvoice(user, nil)
			auto := invoiceBody(user, g.account(user, "USD"))
			auto["coupon"], auto["auto_finalize"] = promo, i%2 == 0
			calls = append(calls,
				func() *httptest.ResponseRecorder { return g.asAdmin("POST", "/invoices", auto) },
				func() *httptest.ResponseRecorder {
					return g.asAdmin("PATCH", "/invoices/"+draft.ID, map[string]any{"coupon": promo})
				},
				func() *httptest.ResponseRecorder {
					return g.call(call{method: "POST", path: "/subscriptions", sub: g.admin, role: auth.RoleService,
						body: subBody(user, monthly(1000), "coupon", promo)})
				},
			)
		}
		recs := testenv.TogetherResults(calls...)
		ok := 0
		for _, r := range recs {
			if r.Code == 200 || r.Code == 201 {
				ok++
			} else if r.Code != 422 {
				t.Errorf("round %d: %d %s", round, r.Code, r.Body)
			}
		}
		var redeemed, invoices, subs int
		if err := g.d.Pool.QueryRow(t.Context(), `SELECT times_redeemed,
			(SELECT count(*) FROM invoices WHERE coupon_id = $1 AND subscription_id IS NULL AND (status <> 'draft' OR NOT drafted_by_customer)),
			(SELECT count(*) FROM subscriptions WHERE coupon_id = $1)
			FROM coupons WHERE id = $1`, promo).Scan(&redeemed, &invoices, &subs); err != nil {
			t.Fatal(err)
		}
		if redeemed > 3 || redeemed != invoices+subs || ok != redeemed {
			t.Fatalf("round %d: times_redeemed %d, %d invoices and %d subscriptions hold the coupon, %d requests succeeded",
				round, redeemed, invoices, subs, ok)
		}
	}
}

// One open invoice: two out-of-band payments each of 60 % of it, a card
// capture of half of it (delivered twice at once), a void and an
// uncollectible mark, all at once. amount_paid never passes the total,
// and every unit of money that arrived is either paid on it or announced
// as unapplied, once.
func TestAnInvoicePaidFromEverySideAtOnceIsNeverOverpaid(t *testing.T) {
	g := newRig(t)
	for round := 0; round < 10; round++ {
		body := invoiceBody(uuid.NewString(), uuid.NewString())
		body["auto_finalize"] = true
		inv := g.createInvoice("", body) // total 2100
		pid := "pay_" + uuid.NewString()
		capture := event(t, "capture-payment", events.TypePaymentCaptured, pid, payment{PaymentID: pid, AccountID: inv.AccountID,
			InvoiceID: &inv.ID, Currency: "USD", Amount: 1050, AmountCaptured: 1050, Status: "succeeded"})
		deliver := func(ev events.Event) func() *httptest.ResponseRecorder {
			return func() *httptest.ResponseRecorder {
				rec := httptest.NewRecorder()
				g.h.ServeHTTP(rec, g.kit.Delivery(t, ev))
				return rec
			}
		}
		recs := testenv.TogetherResults(
			func() *httptest.ResponseRecorder {
				return g.asAdmin("POST", "/invoices/"+inv.ID+"/pay", map[string]any{"amount": 1260})
			},
			func() *httptest.ResponseRecorder {
				return g.asAdmin("POST", "/invoices/"+inv.ID+"/pay", map[string]any{"amount": 1260})
			},
			deliver(capture), deliver(capture),
			func() *httptest.ResponseRecorder { return g.asAdmin("POST", "/invoices/"+inv.ID+"/void", nil) },
			func() *httptest.ResponseRecorder {
				return g.asAdmin("POST", "/invoices/"+inv.ID+"/mark-uncollectible", nil)
			},
		)
		pays := 0
		for _, r := range recs[:2] {
			if r.Code == 200 {
				pays++
			}
		}
		got := g.invoice(inv.ID)
		var unapplied int64
		for _, ev := range g.events(pid) {
			if ev.Type() == events.TypeInvoicePaymentUnapplied {
				var u events.PaymentUnapplied
				if err := json.Unmarshal(ev.Data(), &u); err != nil {
					t.Fatal(err)
				}
				unapplied += u.Amount
			}
		}
		in := int64(pays)*1260 + 1050
		if got.AmountPaid > got.Total || got.AmountPaid+unapplied != in {
			t.Fatalf("round %d: invoice %s paid %d of %d, %d announced unapplied, %d arrived (%d out-of-band payments; answers %d %d %d %d %d %d)",
				round, got.Status, got.AmountPaid, got.Total, unapplied, in, pays,
				recs[0].Code, recs[1].Code, recs[2].Code, recs[3].Code, recs[4].Code, recs[5].Code)
		}
	}
}

// A subscription with a proration pending for its next invoice, its next
// period due: the tick (twice), a cancellation that ends it now and plan
// changes, all at once. The pending proration ends up in exactly one
// place (an invoice, or still pending), never twice nor lost.
func TestASubscriptionsPendingProrationSurvivesTheTickRacingItsChanges(t *testing.T) {
	g := newRig(t)
	g.s.d.Events.TickEvery = time.Nanosecond
	for round := 0; round < 6; round++ {
		g.clock.Set(day("2026-04-01T00:00:00Z"))
		user := uuid.NewString()
		sub := g.subscribe(subBody(user, monthly(3000)))
		g.clock.Set(day("2026-04-16T00:00:00Z"))
		up := map[string]any{"name": "Max", "amount": 6000, "currency": "USD", "interval": "month"}
		must(t, g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"plan": up}), 200)
		g.clock.Set(day("2026-05-01T00:00:00Z"))
		tick := func() *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			g.h.ServeHTTP(rec, g.kit.Tick())
			return rec
		}
		recs := testenv.TogetherResults(tick, tick,
			func() *httptest.ResponseRecorder {
				return g.asAdmin("POST", "/subscriptions/"+sub.ID+"/cancel", map[string]any{"at_period_end": false})
			},
			func() *httptest.ResponseRecorder {
				return g.asAdmin("PATCH", "/subscriptions/"+sub.ID, map[string]any{"proration_behavior": "always_invoice",
					"plan": map[string]any{"name": "Ultra", "amount": 9000, "currency": "USD", "interval": "month"}})
			},
		)
		for _, r := range recs {
			if r.Code >= 500 {
				t.Fatalf("round %d: %d %s", round, r.Code, r.Body)
			}
		}
		s := decode[invoicing.Subscription](t, g.asAdmin("GET", "/subscriptions/"+sub.ID, nil))
		credits, debits := 0, 0
		count := func(ls []invoicing.Line) {
			for _, l := range ls {
				switch l.UnitAmount {
				case -1500:
					credits++
				case 3000:
					if l.Proration {
						debits++
					}
				}
			}
		}
		count(s.PendingLines)
		seen := map[string]int{}
		for _, inv := range g.subInvoices(sub.ID) {
			count(inv.Lines)
			if inv.PeriodStart != nil {
				seen[inv.PeriodStart.String()+inv.BillingReason]++
			}
		}
		if credits != 1 || debits != 1 {
			t.Fatalf("round %d: the April proration appears %d (credit) and %d (debit) times, want once; subscription %s, pending %d",
				round, credits, debits, s.Status, len(s.PendingLines))
		}
		for k, n := range seen {
			if n > 1 {
				t.Fatalf("round %d: period %s billed %d times", round, k, n)
			}
		}
	}
}

// One Idempotency-Key sent at once with different bodies (each a finalized
// invoice, so each would take a number): one invoice, and the numbers stay
// gap-free.
func TestOneKeyWithDifferentInvoicesAtOnceMakesOne(t *testing.T) {
	g := newRig(t)
	for round := 0; round < 8; round++ {
		key := "race-" + uuid.NewString()
		user := uuid.NewString()
		account := g.account(user, "USD")
		var calls []func() *httptest.ResponseRecorder
		for i := 0; i < 6; i++ {
			body := invoiceBody(user, account, map[string]any{"description": "Item", "quantity": "1", "unit_amount": 1000 + i})
			body["auto_finalize"] = true
			calls = append(calls, func() *httptest.ResponseRecorder {
				return g.call(call{method: "POST", path: "/invoices", body: body, sub: g.admin, role: auth.RoleAdmin, key: key})
			})
		}
		recs := testenv.TogetherResults(calls...)
		ids := map[string]bool{}
		for _, r := range recs {
			if r.Code == 201 {
				ids[decode[invoicing.Invoice](t, r).ID] = true
			} else if r.Code != 409 && r.Code != 422 {
				t.Fatalf("round %d: %d %s", round, r.Code, r.Body)
			}
		}
		var n int
		if err := g.d.Pool.QueryRow(t.Context(), `SELECT count(*) FROM invoices WHERE account_id = $1`, account).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 || len(ids) > 1 {
			t.Fatalf("round %d: %d invoices stored, %d told (answers %v)", round, n, len(ids), codesOfRecs(recs))
		}
	}
	var numbered, gaps int
	if err := g.d.Pool.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE prev IS NOT NULL AND
		substring(number from '[0-9]+$')::int <> substring(prev from '[0-9]+$')::int + 1)
		FROM (SELECT number, lag(number) OVER (ORDER BY number) AS prev FROM invoices WHERE number LIKE $1 || '-%') x`,
		g.s.cfg.NumberPrefix).Scan(&numbered, &gaps); err != nil {
		t.Fatal(err)
	}
	if numbered != 8 || gaps != 0 {
		t.Fatalf("%d numbered invoices (want 8), %d gaps in their numbers", numbered, gaps)
	}
}

func codesOfRecs(recs []*httptest.ResponseRecorder) []int {
	out := make([]int, len(recs))
	for i, r := range recs {
		out[i] = r.Code
	}
	return out
}
