package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/process-transaction/api"
	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/testenv"
)

// Closing an account while money moves in and out of it and holds are
// placed on it and to it: a closed account holds nothing and no hold
// into it can still move money there.
func TestClosingRacesTransfersAndHolds(t *testing.T) {
	e := newEnv(t, 2)
	owner := uuid.NewString()
	for round := 0; round < 20; round++ {
		a, b, c := e.account(owner, "USD"), e.account(owner, "USD"), e.account(owner, "USD")
		e.fund(a, 100)
		e.fund(c, 1_000)
		into := e.hold(owner, c, a, 40) // a hold whose capture would credit a
		var mu sync.Mutex
		answers := map[string]string{}
		note := func(k string, r resp) {
			mu.Lock()
			answers[k] = fmt.Sprintf("%d %s", r.Code, r.code())
			mu.Unlock()
		}
		testenv.Together(
			func() { note("out", e.transfer(owner, a, b, 100)) },
			func() {
				note("close", e.do("PATCH", "/accounts/"+a.ID, e.admin, auth.RoleAdmin, map[string]any{"status": "closed"}))
			},
			func() {
				note("close2", e.do("PATCH", "/accounts/"+a.ID, e.admin, auth.RoleAdmin, map[string]any{"status": "closed"}))
			},
			func() { note("in", e.transfer(owner, c, a, 50)) },
			func() {
				note("capture-into", e.do("POST", "/transfers/"+into.ID+"/capture", owner, auth.RoleCustomer, nil, "Idempotency-Key", key()))
			},
			func() {
				note("hold-on", e.do("POST", "/transfers", owner, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
					"amount": 30, "currency": "USD", "pending": true}, "Idempotency-Key", key()))
			},
		)
		got := e.get(a.ID)
		if got.Status == ledger.StatusClosed && (got.Balance != 0 || got.Held != 0) {
			t.Fatalf("round %d: closed account %+v after %v", round, got, answers)
		}
	}
	checkLedger(t, e.d)
}

// One hold, resolved at once by its holder's capture, a second capture,
// a void, an administrator's capture and the expiry sweep (the clock just
// past its expiry for half the rounds): it resolves once.
func TestAHoldResolvedFromEverySideAtOnceResolvesOnce(t *testing.T) {
	e := newEnv(t, 2)
	owner := uuid.NewString()
	a, b := e.account(owner, "USD"), e.account(owner, "USD")
	e.fund(a, 1_000_000)
	for round := 0; round < 30; round++ {
		r := e.do("POST", "/transfers", owner, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
			"amount": 3_000, "currency": "USD", "pending": true, "expires_at": e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
			"Idempotency-Key", key())
		var h Transfer
		r.json(t, &h)
		if r.Code != 201 {
			t.Fatalf("hold: %d %s", r.Code, r.Body)
		}
		if round%2 == 1 {
			e.clock.Advance(time.Hour)
		}
		var mu sync.Mutex
		ok := 0
		count := func(r resp) {
			mu.Lock()
			if r.Code == 200 {
				ok++
			}
			mu.Unlock()
		}
		testenv.Together(
			func() {
				count(e.do("POST", "/transfers/"+h.ID+"/capture", owner, auth.RoleCustomer, map[string]any{"amount": 1_000}, "Idempotency-Key", key()))
			},
			func() {
				count(e.do("POST", "/transfers/"+h.ID+"/capture", owner, auth.RoleCustomer, map[string]any{"amount": 2_000}, "Idempotency-Key", key()))
			},
			func() {
				count(e.do("POST", "/transfers/"+h.ID+"/void", owner, auth.RoleCustomer, nil, "Idempotency-Key", key()))
			},
			func() {
				count(e.do("POST", "/transfers/"+h.ID+"/capture", e.admin, auth.RoleAdmin, nil, "Idempotency-Key", key()))
			},
			func() {
				if err := e.s.Tick(context.Background()); err != nil {
					t.Error(err)
				}
			},
		)
		var status string
		if err := e.d.Pool.QueryRow(context.Background(), `SELECT status FROM transfers WHERE id = $1`, h.ID).Scan(&status); err != nil {
			t.Fatal(err)
		}
		if status == ledger.TransferHeld || (status != ledger.TransferExpired && ok != 1) || (status == ledger.TransferExpired && ok != 0) {
			t.Fatalf("round %d: hold %s with %d successful resolutions", round, status, ok)
		}
	}
	checkLedger(t, e.d)
}

// Many sources drain one account at once: sync transfers, holds, async
// transfers and atomic batches. It never goes below zero and the ledger
// balances.
func TestDrainingOneAccountFromEveryPathAtOnce(t *testing.T) {
	e := newEnv(t, 3)
	owner := uuid.NewString()
	for round := 0; round < 10; round++ {
		a, b := e.account(owner, "USD"), e.account(owner, "USD")
		e.fund(a, 1_000)
		var calls []func()
		for i := 0; i < 6; i++ {
			calls = append(calls,
				func() { e.transfer(owner, a, b, 300) },
				func() {
					e.do("POST", "/transfers", owner, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
						"amount": 300, "currency": "USD", "pending": true}, "Idempotency-Key", key())
				},
				func() { e.transfer(owner, a, b, 300, "Prefer", "respond-async") },
				func() {
					e.do("POST", "/transfers/batch", owner, auth.RoleCustomer, map[string]any{"atomic": true, "transfers": []map[string]any{
						{"from_account_id": a.ID, "to_account_id": b.ID, "amount": 150, "currency": "USD"},
						{"from_account_id": a.ID, "to_account_id": b.ID, "amount": 150, "currency": "USD"},
					}}, "Idempotency-Key", key())
				},
			)
		}
		testenv.Together(calls...)
		got := e.get(a.ID)
		if got.Balance-got.Held < 0 || got.Balance < 0 {
			t.Fatalf("round %d: account %+v", round, got)
		}
	}
	checkLedger(t, e.d)
}

// Accepted (202) transfers whose requested event arrives several times at
// once — alone, and twice in one batch — while the client retries its
// key: each moves money once.
func TestAnAsyncTransfersEventDeliveredConcurrentlyPostsOnce(t *testing.T) {
	e := newEnv(t, 2)
	alice := uuid.NewString()
	a, b := e.account(alice, "USD"), e.account(alice, "USD")
	e.fund(a, 100_000)
	for round := 0; round < 10; round++ {
		k := key()
		r := e.transfer(alice, a, b, 100, "Prefer", "respond-async", "Idempotency-Key", k)
		if r.Code != 202 {
			t.Fatalf("async: %d %s", r.Code, r.Body)
		}
		var tr Transfer
		r.json(t, &tr)
		evs := e.kafkaEvents("billfn.transaction.requested", a.ID, round+1)
		ev := evs[len(evs)-1]
		testenv.Together(
			func() { e.deliver(ev) }, func() { e.deliver(ev) }, func() { e.deliver(ev, ev) },
			func() { e.transfer(alice, a, b, 100, "Prefer", "respond-async", "Idempotency-Key", k) },
			func() { e.transfer(alice, a, b, 100, "Idempotency-Key", k) },
		)
		if got := e.get(a.ID); got.Balance != 100_000-int64(round+1)*100 {
			t.Fatalf("round %d: balance %d, want %d", round, got.Balance, 100_000-int64(round+1)*100)
		}
	}
	checkLedger(t, e.d)
}

// A refund's hold, resolved at once by capture-payment's capture and void
// requests (each delivered twice), an administrator's void and the sweep
// of a hold just expired: it resolves once.
func TestARefundHoldsResolutionsAtOnceResolveOnce(t *testing.T) {
	e := newEnv(t, 2)
	payer := uuid.NewString()
	a := e.account(payer, "USD")
	e.fund(a, 1_000_000)
	resolve := func(typ, id string) events.Event {
		return events.Must(events.New(context.Background(), api.HoldResolver, typ, id, events.HoldResolution{TransferID: id}))
	}
	for round := 0; round < 20; round++ {
		r := e.do("POST", "/transfers", uuid.NewString(), auth.RoleService, map[string]any{"from_account_id": a.ID,
			"to_account_number": "SYS-CLEARING-USD", "amount": 3_000, "currency": "USD", "pending": true,
			"expires_at": e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339), "metadata": map[string]string{"kind": "refund"}},
			"Idempotency-Key", key())
		var h Transfer
		r.json(t, &h)
		if r.Code != 201 {
			t.Fatalf("hold: %d %s", r.Code, r.Body)
		}
		if round%3 == 2 {
			e.clock.Advance(time.Hour)
		}
		capture, void := resolve(events.TypeHoldCaptureRequested, h.ID), resolve(events.TypeHoldVoidRequested, h.ID)
		testenv.Together(
			func() { e.deliver(capture) }, func() { e.deliver(capture) },
			func() { e.deliver(void) }, func() { e.deliver(void, capture) },
			func() {
				e.do("POST", "/transfers/"+h.ID+"/void", e.admin, auth.RoleAdmin, nil, "Idempotency-Key", key())
			},
			func() { _ = e.s.Tick(context.Background()) },
		)
		var status string
		if err := e.d.Pool.QueryRow(context.Background(), `SELECT status FROM transfers WHERE id = $1`, h.ID).Scan(&status); err != nil {
			t.Fatal(err)
		}
		if status == ledger.TransferHeld {
			t.Fatalf("round %d: still held", round)
		}
	}
	checkLedger(t, e.d)
}

// One Idempotency-Key sent at once with different transfers (amounts, a
// hold, async): one transfer is stored under it, and the ledger balances.
func TestOneKeyWithDifferentTransfersAtOnceMovesOnce(t *testing.T) {
	e := newEnv(t, 2)
	alice := uuid.NewString()
	a, b := e.account(alice, "USD"), e.account(alice, "USD")
	e.fund(a, 1_000_000)
	for round := 0; round < 10; round++ {
		k := key()
		var calls []func()
		for i := int64(1); i <= 3; i++ {
			calls = append(calls,
				func() {
					e.do("POST", "/transfers", alice, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
						"amount": i, "currency": "USD"}, "Idempotency-Key", k)
				},
				func() {
					e.do("POST", "/transfers", alice, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
						"amount": 10 * i, "currency": "USD", "pending": i == 2}, "Idempotency-Key", k, "Prefer", "respond-async")
				},
			)
		}
		testenv.Together(calls...)
		var n int
		if err := e.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM transfers WHERE from_account_id = $1 AND idem_key = $2`,
			a.ID, k).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("round %d: %d transfers under one key", round, n)
		}
	}
	checkLedger(t, e.d)
}

// A transfer and a batch sent at once under one Idempotency-Key: the key
// names one request, so exactly one of them takes it. Either the transfer
// is posted and the batch moves nothing, or the whole batch is posted and
// the transfer moves nothing; never the transfer beside the rest of a
// batch whose first item found the key taken.
func TestATransferAndABatchUnderOneKeyAtOnceTakeItOnce(t *testing.T) {
	e := newEnv(t, 2)
	alice := uuid.NewString()
	a, b := e.account(alice, "USD"), e.account(alice, "USD")
	e.fund(a, 1_000_000)
	item := map[string]any{"from_account_id": a.ID, "to_account_id": b.ID, "amount": 1, "currency": "USD"}
	for round := 0; round < 20; round++ {
		k := key()
		var tr, ba resp
		testenv.Together(
			func() { tr = e.do("POST", "/transfers", alice, auth.RoleCustomer, item, "Idempotency-Key", k) },
			func() {
				ba = e.do("POST", "/transfers/batch", alice, auth.RoleCustomer, map[string]any{"transfers": []any{
					map[string]any{"from_account_id": a.ID, "to_account_id": b.ID, "amount": 10, "currency": "USD"}, item, item}},
					"Idempotency-Key", k)
			},
		)
		var posted int
		if err := e.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM transfers
			WHERE from_account_id = $1 AND (idem_key = $2 OR idem_key LIKE $2 || ' %')`, a.ID, k).Scan(&posted); err != nil {
			t.Fatal(err)
		}
		switch {
		case tr.Code == 201 && posted == 1 && ba.Code >= 400 && ba.Code != 500:
		case ba.Code == 200 && posted == 3 && !strings.Contains(ba.Body.String(), `"status":4`) && tr.Code == 422:
		default:
			t.Fatalf("round %d: %d transfers under the key; the transfer %d %s; the batch %d %s", round, posted, tr.Code, tr.Body, ba.Code, ba.Body)
		}
	}
	checkLedger(t, e.d)
}

// A transfer and a capture sent at once under one Idempotency-Key: one of
// them takes the key, the other is refused and moves nothing.
func TestATransferAndACaptureUnderOneKeyAtOnceTakeItOnce(t *testing.T) {
	e := newEnv(t, 2)
	alice := uuid.NewString()
	a, b := e.account(alice, "USD"), e.account(alice, "USD")
	e.fund(a, 1_000_000)
	for round := 0; round < 30; round++ {
		h := e.hold(alice, a, b, 100)
		k := key()
		var tr, cp resp
		testenv.Together(
			func() {
				tr = e.do("POST", "/transfers", alice, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
					"amount": 1, "currency": "USD"}, "Idempotency-Key", k)
			},
			func() {
				cp = e.do("POST", "/transfers/"+h.ID+"/capture", alice, auth.RoleCustomer, nil, "Idempotency-Key", k)
			},
		)
		if tr.Code < 300 && cp.Code < 300 {
			t.Fatalf("round %d: the transfer %d and the capture %d both moved money under one key", round, tr.Code, cp.Code)
		}
	}
	checkLedger(t, e.d)
}
