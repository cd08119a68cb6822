package main

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/shared/auth"
)

// tupleUpdates are a table's row updates as pg_stat_user_tables counts
// them, and how many of them were HOT (the new version on the old one's
// page, no index entry added).
type tupleUpdates struct{ all, hot int64 }

func updatesOf(t testing.TB, pool *pgxpool.Pool, table string) tupleUpdates {
	t.Helper()
	var u tupleUpdates
	// A new transaction each time: the statistics snapshot is taken anew.
	if err := pool.QueryRow(context.Background(), `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
		WHERE relname = $1`, table).Scan(&u.all, &u.hot); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestPaymentUpdatesAreHOT holds how PostgreSQL writes the rows a payment
// updates after inserting them, for payments made as the bench makes them
// (POST /payments confirmed and captured at once, an Idempotency-Key, 16
// clients at a time): the Idempotency-Key's completion (the claim's row
// given its response) and the attempt's outcome are HOT updates, the new
// version on the page of the old, no index entry added; with full pages
// most were not (idempotency_keys: 13 % HOT, payment_attempts: 88 %),
// each then a new entry in every index of the table. The fillfactors of
// migrations 00005 and 00036 keep the room. (The payment's own finishing
// update cannot be HOT: it changes indexed columns, status and
// gateway_payment_id.)
func TestPaymentUpdatesAreHOT(t *testing.T) {
	g := newRig(t)
	pool := g.d.Pool
	pay := func() {
		body := map[string]any{"account_id": g.account, "amount": 1000, "currency": "USD", "payment_method": "pm_card_visa",
			"confirm": true, "description": "as the bench's"}
		p := decode[payments.Payment](t, g.do(req{method: "POST", path: "/payments", body: body, sub: g.admin, role: auth.RoleCustomer}),
			http.StatusCreated)
		if p.Status != payments.Succeeded {
			t.Errorf("payment %s: %s", p.ID, p.Status)
		}
	}
	tables := []string{"idempotency_keys", "payment_attempts"}
	before := map[string]tupleUpdates{}
	for _, table := range tables {
		before[table] = updatesOf(t, pool, table)
	}
	const clients, each = 16, 25
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				pay()
			}
		}()
	}
	wg.Wait()
	for _, table := range tables {
		// A backend reports its counts within 10 s of going idle.
		var u tupleUpdates
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			u = updatesOf(t, pool, table)
			u.all -= before[table].all
			u.hot -= before[table].hot
			if u.all >= clients*each || time.Now().After(deadline) {
				break
			}
		}
		t.Logf("%s: %d updates, %d HOT", table, u.all, u.hot)
		if u.all < clients*each {
			t.Fatalf("%s: %d updates reported, want at least %d (one per payment)", table, u.all, clients*each)
		}
		if u.hot*100 < u.all*95 {
			t.Errorf("%s: %d of %d updates HOT, want at least 95 %%", table, u.hot, u.all)
		}
	}
}
