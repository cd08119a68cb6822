package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/auth"
)

// quiet waits until the function has sent nothing to PostgreSQL for a
// while (the outbox publisher's pass after a request included), and
// returns the round trips it made since m.
func quiet(w *pgWire, m wireMark) [][]string {
	last := -1
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(150 * time.Millisecond) {
		n := len(w.since(m))
		if n == last {
			break
		}
		last = n
	}
	return w.since(m)
}

// publisher reports whether stmt is the outbox publisher's: its pass runs
// after the request, on a kick, and how many passes a request's kicks make
// depends on timing.
func publisher(stmt string) bool {
	s := short(stmt, 200)
	return strings.Contains(s, "FROM outbox WHERE source") || strings.HasPrefix(s, "DELETE FROM outbox") ||
		strings.HasPrefix(s, "UPDATE outbox")
}

// requestTrips are the round trips of trips that are not the publisher's.
func requestTrips(trips [][]string) (mine [][]string, statements int) {
	for _, trip := range trips {
		if !publisher(trip[len(trip)-1]) && !publisher(trip[0]) {
			mine = append(mine, trip)
			statements += len(trip)
		}
	}
	return mine, statements
}

// TestPaymentRoundTrips counts, on the wire, the round trips and
// statements each payment request costs capture-payment in PostgreSQL
// (the outbox publisher's pass left out), and holds them: a payment
// created, confirmed and captured in one POST /payments takes three round
// trips (the intent to charge, which claims the Idempotency-Key in its own
// statement, the sandbox's books, the finishing record in one pipeline); POST /payments/{id}/confirm
// seven, POST /payments/{id}/capture four.
func TestPaymentRoundTrips(t *testing.T) {
	g, w := wiredRig(t)
	confirm := func(id string) {
		decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + id + "/confirm"}), http.StatusOK)
	}
	capture := func(id string) {
		decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments/" + id + "/capture"}), http.StatusOK)
	}
	// As the bench's clients: the account's owner, a customer.
	pay := func(capture string, confirm bool) payments.Payment {
		body := map[string]any{"account_id": g.account, "amount": 1000, "currency": "USD", "payment_method": "pm_card_visa",
			"capture_method": capture, "confirm": confirm}
		return decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", body: body, sub: g.admin, role: auth.RoleCustomer}),
			http.StatusCreated)
	}
	for range 3 { // every statement prepared on the connections the requests use
		pay(payments.CaptureAutomatic, true)
		q := pay(payments.CaptureManual, false)
		confirm(q.ID)
		capture(q.ID)
	}
	check := func(label string, maxTrips, maxStatements int, fn func()) {
		t.Helper()
		quiet(w, w.mark())
		m := w.mark()
		fn()
		all := quiet(w, m)
		mine, statements := requestTrips(all)
		t.Logf("%s: %d round trips, %d statements (and %d round trips of the outbox publisher)", label, len(mine), statements, len(all)-len(mine))
		for _, trip := range mine {
			t.Logf("  round trip:")
			for _, s := range trip {
				t.Logf("      %s", short(s, 140))
			}
		}
		if len(mine) > maxTrips || statements > maxStatements {
			t.Errorf("%s: %d round trips and %d statements, want at most %d and %d", label, len(mine), statements, maxTrips, maxStatements)
		}
	}
	check("create+confirm+capture (one POST /payments)", 3, 14, func() {
		if p := pay(payments.CaptureAutomatic, true); p.Status != payments.Succeeded {
			t.Fatalf("payment %s", p.Status)
		}
	})
	var q payments.Payment
	check("create (POST /payments, no confirm)", 3, 8, func() { q = pay(payments.CaptureManual, false) })
	check("confirm (POST /payments/{id}/confirm)", 7, 16, func() { confirm(q.ID) })
	check("capture (POST /payments/{id}/capture)", 4, 10, func() { capture(q.ID) })
	if p := g.get(q.ID); p.Status != payments.Succeeded || p.AmountCaptured != 1000 {
		t.Fatalf("payment %s, captured %d", p.Status, p.AmountCaptured)
	}
}
