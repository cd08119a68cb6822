package main

import (
	"context"
	"strings"
	"testing"

	"github.com/billfn/billfn/functions/capture-payment/payments"
)

// TestEveryWriteRouteRefusesCardNumbers: a card number in a free-text
// field of each write route family — payments, their confirm, capture,
// cancel and refunds, saved methods — is a 422 card_number_rejected that
// does not echo it, and nothing is written (no payment, attempt, refund,
// method or idempotency record; no event, since no row).
func TestEveryWriteRouteRefusesCardNumbers(t *testing.T) {
	g := newRig(t)
	p := g.pay(9000, "USD", "pm_card_visa", "manual", true)
	m := g.saveMethod(t, "pm_card_visa", false)
	count := func() (n int) {
		t.Helper()
		err := g.d.Pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM payments) + (SELECT count(*) FROM payment_attempts) + (SELECT count(*) FROM refunds) +
			(SELECT count(*) FROM payment_methods) + (SELECT count(*) FROM idempotency_keys)`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	create := map[string]any{"account_id": g.account, "amount": 100, "currency": "USD", "description": "card 3782.822463.10005"}
	cases := []struct {
		name, path string
		body       any
	}{
		{"payment description", "/payments", create},
		{"payment metadata", "/payments", map[string]any{"account_id": g.account, "amount": 100, "currency": "USD", "metadata": map[string]any{"k": "3782/822463/10005"}}},
		{"confirm method", "/payments/" + p.ID + "/confirm", map[string]any{"payment_method": "3782_822463_10005"}},
		{"capture", "/payments/" + p.ID + "/capture", map[string]any{"amount": 378282246310005}},
		{"cancel reason", "/payments/" + p.ID + "/cancel", map[string]any{"cancellation_reason": "３７８２ ８２２４６３ １０００５"}},
		{"refund reason", "/payments/" + p.ID + "/refunds", map[string]any{"amount": 100, "reason": "3782-822463 10005"}},
		{"save method", "/accounts/" + g.account + "/payment-methods", map[string]any{"token": "378282246310005"}},
		{"default method", "/accounts/" + g.account + "/payment-methods/" + m.ID + "/default", map[string]any{"note": "٣٧٨٢٨٢٢٤٦٣١٠٠٠٥"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := count()
			rec := g.do(req{method: "POST", path: c.path, body: c.body})
			if code := problemCode(t, rec, 422); code != string(payments.CodeCardNumber) {
				t.Fatalf("%s", code)
			}
			for _, frag := range []string{"822463", "８２２４６３", "٨٢٢٤٦٣"} {
				if strings.Contains(rec.Body.String(), frag) {
					t.Fatalf("the answer echoes the card number: %s", rec.Body)
				}
			}
			if after := count(); after != before {
				t.Fatalf("%d rows written", after-before)
			}
		})
	}
}
