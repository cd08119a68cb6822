package main

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/billfn/billfn/functions/process-transaction/api"
	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/events"
)

// A refund's hold is resolved by capture-payment through its outbox: the
// resolution is applied once, however often it is delivered, and only
// from capture-payment.
func TestRefundHoldIsResolvedByEventFromCapturePaymentOnly(t *testing.T) {
	e := newEnv(t)
	payer := uuid.NewString()
	a := e.account(payer, "USD")
	e.fund(a, 10_000)
	hold := func(amount int64) Transfer {
		r := e.do("POST", "/transfers", uuid.NewString(), auth.RoleService, map[string]any{"from_account_id": a.ID,
			"to_account_number": "SYS-CLEARING-USD", "amount": amount, "currency": "USD", "pending": true,
			"metadata": map[string]string{"kind": "refund"}}, "Idempotency-Key", key())
		var t0 Transfer
		r.json(t, &t0)
		if r.Code != 201 || t0.Status != ledger.TransferHeld {
			t.Fatalf("hold: %d %s", r.Code, r.Body)
		}
		return t0
	}
	resolve := func(source, typ, id string, amount int64) events.Event {
		ev, err := events.New(context.Background(), source, typ, id, events.HoldResolution{TransferID: id, Amount: amount})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}

	// A forged capture (another source) is parked: nothing moves.
	h1 := hold(3_000)
	if r := e.deliver(resolve("generate-invoice", events.TypeHoldCaptureRequested, h1.ID, 0)); r.Code >= 300 {
		t.Fatalf("forged capture delivery: %d %s", r.Code, r.Body)
	}
	if got := e.get(a.ID); got.Balance != 10_000 || got.Held != 3_000 {
		t.Fatalf("after a forged capture %+v", got)
	}

	// capture-payment's capture, delivered twice (two event ids), moves it once.
	capture := resolve(api.HoldResolver, events.TypeHoldCaptureRequested, h1.ID, 0)
	for i := 0; i < 2; i++ {
		if r := e.deliver(capture); r.Code >= 300 {
			t.Fatalf("capture delivery %d: %d %s", i, r.Code, r.Body)
		}
	}
	if r := e.deliver(resolve(api.HoldResolver, events.TypeHoldCaptureRequested, h1.ID, 0)); r.Code >= 300 {
		t.Fatalf("a second capture request: %d %s", r.Code, r.Body)
	}
	if got := e.get(a.ID); got.Balance != 7_000 || got.Held != 0 || got.Available != 7_000 {
		t.Fatalf("after the capture %+v", got)
	}

	// A void releases a hold; voiding it again changes nothing.
	h2 := hold(2_000)
	for i := 0; i < 2; i++ {
		if r := e.deliver(resolve(api.HoldResolver, events.TypeHoldVoidRequested, h2.ID, 0)); r.Code >= 300 {
			t.Fatalf("void delivery %d: %d %s", i, r.Code, r.Body)
		}
	}
	if got := e.get(a.ID); got.Balance != 7_000 || got.Held != 0 {
		t.Fatalf("after the void %+v", got)
	}
	var parked int
	if err := e.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE type = $1`, events.TypeHoldCaptureRequested).Scan(&parked); err != nil {
		t.Fatal(err)
	}
	if parked != 1 {
		t.Fatalf("%d hold events parked, want 1 (the forged one)", parked)
	}
	checkLedger(t, e.d)
}

// A capture moves money by the same posting rule as a transfer: a credit
// that would overflow the destination's balance is refused as
// amount_invalid and nothing moves. Hold resolution did its own arithmetic
// without the overflow-safe money helpers, so such a capture wrapped the
// balance around to a large negative number while the same amount sent as
// a transfer was refused.
func TestCaptureThatWouldOverflowABalanceIsRefusedLikeATransfer(t *testing.T) {
	e := newEnv(t)
	alice, rich := uuid.NewString(), uuid.NewString()
	a, b := e.account(alice, "USD"), e.account(rich, "USD")
	e.fund(a, 1_000)
	// From another system account than fund's: SYS-EXTERNAL-USD cannot go
	// below math.MinInt64 either.
	if r := e.do("POST", "/transfers", e.admin, auth.RoleAdmin, map[string]any{"from_account_number": "SYS-CLEARING-USD",
		"to_account_id": b.ID, "amount": int64(math.MaxInt64 - 50), "currency": "USD"}, "Idempotency-Key", key()); r.Code != 201 {
		t.Fatalf("fund near the limit: %d %s", r.Code, r.Body)
	}
	if r := e.transfer(alice, a, b, 100); r.Code != 422 || r.code() != "amount_invalid" {
		t.Fatalf("a transfer overflowing the destination: %d %s", r.Code, r.Body)
	}
	hold := e.hold(alice, a, b, 100)
	r := e.do("POST", "/transfers/"+hold.ID+"/capture", alice, auth.RoleCustomer, nil, "Idempotency-Key", key())
	if r.Code != 422 || r.code() != "amount_invalid" {
		t.Fatalf("a capture overflowing the destination: %d %s", r.Code, r.Body)
	}
	if got := e.get(b.ID); got.Balance != math.MaxInt64-50 {
		t.Fatalf("destination balance %d, want %d", got.Balance, int64(math.MaxInt64-50))
	}
	if got := e.get(a.ID); got.Balance != 1_000 || got.Held != 100 {
		t.Fatalf("source after the refused capture %+v", got)
	}
	checkLedger(t, e.d)
}

// A hold placed by someone other than the account's holder (capture-payment
// reserving a refund, an administrator) is its placer's: the holder may not
// void or capture it. Otherwise the customer voids the refund's hold (its
// id is on the refund, ledger_hold_id, and in the account's history),
// spends the money, and capture-payment's capture after the gateway
// refunded the card is parked: the books no longer match the gateway.
// The holder still resolves the holds it placed itself.
func TestOnlyAHoldsPlacerResolvesIt(t *testing.T) {
	e := newEnv(t)
	payer, friend := uuid.NewString(), uuid.NewString()
	a, b := e.account(payer, "USD"), e.account(friend, "USD")
	e.fund(a, 10_000)

	r := e.do("POST", "/transfers", uuid.NewString(), auth.RoleService, map[string]any{"from_account_id": a.ID,
		"to_account_number": "SYS-CLEARING-USD", "amount": 6_000, "currency": "USD", "pending": true,
		"metadata": map[string]string{"kind": "refund"}}, "Idempotency-Key", key())
	var refund Transfer
	r.json(t, &refund)
	if r.Code != 201 || refund.Status != ledger.TransferHeld {
		t.Fatalf("refund hold: %d %s", r.Code, r.Body)
	}
	for _, op := range []string{"void", "capture"} {
		v := e.do("POST", "/transfers/"+refund.ID+"/"+op, payer, auth.RoleCustomer, nil, "Idempotency-Key", key())
		if v.Code != 403 || v.code() != string(ledger.HoldNotYours) {
			t.Errorf("the holder's %s of capture-payment's hold: %d %s", op, v.Code, v.Body)
		}
	}
	if sp := e.transfer(payer, a, b, 6_000); sp.code() != string(ledger.InsufficientFunds) {
		t.Errorf("the holder spent what the refund reserved: %d %s", sp.Code, sp.Body)
	}
	ev, err := events.New(context.Background(), api.HoldResolver, events.TypeHoldCaptureRequested, refund.ID,
		events.HoldResolution{TransferID: refund.ID, Amount: 6_000})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.deliver(ev); r.Code >= 300 {
		t.Fatalf("capture-payment's capture: %d %s", r.Code, r.Body)
	}
	if got := e.get(a.ID); got.Balance != 4_000 || got.Held != 0 {
		t.Errorf("after capture-payment's capture the account is %+v, want balance 4000, nothing held", got)
	}

	// The holder's own hold: theirs to void.
	own := e.hold(payer, a, b, 1_000)
	if v := e.do("POST", "/transfers/"+own.ID+"/void", payer, auth.RoleCustomer, nil, "Idempotency-Key", key()); v.Code != 200 {
		t.Errorf("the holder's void of its own hold: %d %s", v.Code, v.Body)
	}
}

// "Frozen refuses debits": a holder whose account an administrator froze
// cannot move its money out by capturing a hold it placed before the
// freeze. It may void it (the money stays), and an administrator may
// still capture.
func TestAFrozenAccountsHolderCannotCaptureItsHold(t *testing.T) {
	e := newEnv(t)
	owner, other := uuid.NewString(), uuid.NewString()
	a, b := e.account(owner, "USD"), e.account(other, "USD")
	e.fund(a, 10_000)
	h1, h2, h3 := e.hold(owner, a, b, 3_000), e.hold(owner, a, b, 3_000), e.hold(owner, a, b, 3_000)
	if r := e.do("PATCH", "/accounts/"+a.ID, e.admin, auth.RoleAdmin, map[string]any{"status": "frozen"}, "Idempotency-Key", key()); r.Code != 200 {
		t.Fatalf("freeze: %d %s", r.Code, r.Body)
	}
	c := e.do("POST", "/transfers/"+h1.ID+"/capture", owner, auth.RoleCustomer, nil, "Idempotency-Key", key())
	if c.Code != 422 || c.code() != string(ledger.AccountFrozen) {
		t.Errorf("the holder's capture from its frozen account: %d %s", c.Code, c.Body)
	}
	if got := e.get(a.ID); got.Balance != 10_000 || got.Held != 9_000 {
		t.Fatalf("after a refused capture the account is %+v", got)
	}
	if v := e.do("POST", "/transfers/"+h2.ID+"/void", owner, auth.RoleCustomer, nil, "Idempotency-Key", key()); v.Code != 200 {
		t.Errorf("the holder's void on its frozen account: %d %s", v.Code, v.Body)
	}
	if c := e.do("POST", "/transfers/"+h3.ID+"/capture", e.admin, auth.RoleAdmin, nil, "Idempotency-Key", key()); c.Code != 200 {
		t.Errorf("an administrator's capture from the frozen account: %d %s", c.Code, c.Body)
	}
	if got := e.get(a.ID); got.Balance != 7_000 || got.Held != 3_000 {
		t.Errorf("the account ends %+v, want balance 7000 with 3000 held", got)
	}
}

// A hold's expires_at is a deadline whether or not the tick has swept it
// yet: past it, nobody captures the hold (409 hold_expired, the money
// stays held until the sweep releases it), as Stripe refuses to capture
// an authorization that has lapsed. A void still releases it.
func TestAHoldPastItsExpiryCannotBeCaptured(t *testing.T) {
	e := newEnv(t)
	owner := uuid.NewString()
	a, b := e.account(owner, "USD"), e.account(owner, "USD")
	e.fund(a, 10_000)
	place := func() Transfer {
		r := e.do("POST", "/transfers", owner, auth.RoleCustomer, map[string]any{"from_account_id": a.ID, "to_account_id": b.ID,
			"amount": 3_000, "currency": "USD", "pending": true, "expires_at": e.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
			"Idempotency-Key", key())
		var h Transfer
		r.json(t, &h)
		if r.Code != 201 {
			t.Fatalf("hold: %d %s", r.Code, r.Body)
		}
		return h
	}
	h1, h2 := place(), place()
	e.clock.Advance(61 * time.Minute) // past expires_at, before any tick
	for _, who := range []struct {
		sub  string
		role auth.Role
	}{{owner, auth.RoleCustomer}, {e.admin, auth.RoleAdmin}} {
		c := e.do("POST", "/transfers/"+h1.ID+"/capture", who.sub, who.role, nil, "Idempotency-Key", key())
		if c.Code != 409 || c.code() != string(ledger.HoldExpired) {
			t.Errorf("%s's capture of a lapsed hold: %d %s", who.role, c.Code, c.Body)
		}
	}
	if got := e.get(a.ID); got.Balance != 10_000 || got.Held != 6_000 {
		t.Fatalf("after refused captures the account is %+v", got)
	}
	if v := e.do("POST", "/transfers/"+h2.ID+"/void", owner, auth.RoleCustomer, nil, "Idempotency-Key", key()); v.Code != 200 {
		t.Errorf("void of a lapsed hold: %d %s", v.Code, v.Body)
	}
	if err := e.s.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.get(a.ID); got.Balance != 10_000 || got.Held != 0 {
		t.Errorf("after the sweep the account is %+v", got)
	}
	if r := e.do("GET", "/transfers/"+h1.ID, owner, auth.RoleCustomer, nil); !strings.Contains(r.Body.String(), `"status":"expired"`) {
		t.Errorf("the lapsed hold after the sweep: %s", r.Body)
	}
	checkLedger(t, e.d)
}

// The README promises RFC 9457 problems. A second void of a captured hold
// (docs/process-transaction.md's hold example pasted twice) answered
// {"status":409,…,"status":"captured"}: the hold's status as an extension
// member named like the problem's own HTTP status, so a client's JSON
// parser (the last member wins) read status "captured", and a decoder into
// RFC 9457's integer status failed. The hold's status is transfer_status.
func TestAProblemCarriesTheHTTPStatusOnce(t *testing.T) {
	e := newEnv(t)
	alice, shop := uuid.NewString(), uuid.NewString()
	a, s := e.account(alice, "USD"), e.account(shop, "USD")
	e.fund(a, 10_000)
	hold := e.hold(alice, a, s, 4_000)
	if r := e.do("POST", "/transfers/"+hold.ID+"/capture", alice, auth.RoleCustomer, nil, "Idempotency-Key", key()); r.Code != 200 {
		t.Fatalf("capture: %d %s", r.Code, r.Body)
	}
	r := e.do("POST", "/transfers/"+hold.ID+"/void", alice, auth.RoleCustomer, nil, "Idempotency-Key", key())
	if r.Code != 409 || r.code() != "transfer_not_held" {
		t.Fatalf("void after capture: %d %s", r.Code, r.Body)
	}
	if n := strings.Count(r.Body.String(), `"status":`); n != 1 {
		t.Fatalf("the problem names status %d times: %s", n, r.Body)
	}
	var p struct {
		Status         int    `json:"status"`
		TransferStatus string `json:"transfer_status"`
	}
	r.json(t, &p)
	if p.Status != 409 || p.TransferStatus != "captured" {
		t.Fatalf("problem %+v: %s", p, r.Body)
	}
}

// "A fact is accepted only from its owner": capture-payment resolves by
// event the holds it placed, a refund's reservation, and no other. A hold a
// customer placed through HTTP on its own account (say, paying a friend
// later) is not capture-payment's: its capture or void by event is parked
// and the hold stays as its placer left it.
func TestCapturePaymentResolvesOnlyItsOwnHoldsByEvent(t *testing.T) {
	e := newEnv(t)
	payer, friend := uuid.NewString(), uuid.NewString()
	a, b := e.account(payer, "USD"), e.account(friend, "USD")
	e.fund(a, 10_000)
	for _, typ := range []string{events.TypeHoldCaptureRequested, events.TypeHoldVoidRequested} {
		h := e.hold(payer, a, b, 4_000)
		ev := events.Must(events.New(context.Background(), api.HoldResolver, typ, h.ID, events.HoldResolution{TransferID: h.ID}))
		if r := e.deliver(ev); r.Code >= 300 {
			t.Fatalf("%s delivery: %d %s", typ, r.Code, r.Body)
		}
		var status string
		if err := e.d.Pool.QueryRow(context.Background(), `SELECT status FROM transfers WHERE id = $1`, h.ID).Scan(&status); err != nil {
			t.Fatal(err)
		}
		if status != ledger.TransferHeld {
			t.Errorf("capture-payment's %s resolved the customer's hold: %s", typ, status)
		}
		var parked int
		if err := e.d.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dead_letters WHERE event_id = $1`, ev.ID()).Scan(&parked); err != nil {
			t.Fatal(err)
		}
		if parked != 1 {
			t.Errorf("capture-payment's %s of the customer's hold was not parked", typ)
		}
		if v := e.do("POST", "/transfers/"+h.ID+"/void", payer, auth.RoleCustomer, nil, "Idempotency-Key", key()); v.Code != 200 {
			t.Fatalf("the placer's own void: %d %s", v.Code, v.Body)
		}
	}
	if got := e.get(a.ID); got.Balance != 10_000 || got.Held != 0 {
		t.Errorf("payer %+v, want balance 10000, nothing held", got)
	}
	if got := e.get(b.ID); got.Balance != 0 {
		t.Errorf("payee %+v, want nothing", got)
	}
	checkLedger(t, e.d)
}
