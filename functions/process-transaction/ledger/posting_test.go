package ledger

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/events"
)

var now = time.Date(2026, 3, 10, 9, 30, 0, 0, time.UTC)

func code(err error) apperr.Code {
	var pe *apperr.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func book(id string, balance, held int64) *Book {
	return &Book{ID: id, UserID: "u-" + id, Currency: "USD", Status: StatusActive, Balance: balance, Held: held}
}

func TestApplyDecidesByTheRulesInOrder(t *testing.T) {
	cases := []struct {
		name        string
		from, to    Book
		amount      int64
		pending     bool
		want        string
		reason      apperr.Code
		fromBalance int64
		fromHeld    int64
		toBalance   int64
	}{
		{"posts", Book{Currency: "USD", Status: StatusActive, Balance: 100}, Book{Currency: "USD", Status: StatusActive}, 40, false, TransferPosted, "", 60, 0, 40},
		{"holds", Book{Currency: "USD", Status: StatusActive, Balance: 100}, Book{Currency: "USD", Status: StatusActive}, 40, true, TransferHeld, "", 100, 40, 0},
		{"insufficient", Book{Currency: "USD", Status: StatusActive, Balance: 100, Held: 70}, Book{Currency: "USD", Status: StatusActive}, 40, false, TransferRejected, InsufficientFunds, 100, 70, 0},
		{"overdraft allowed", Book{Currency: "USD", Status: StatusActive, AllowNegative: true}, Book{Currency: "USD", Status: StatusActive}, 40, false, TransferPosted, "", -40, 0, 40},
		{"currency", Book{Currency: "EUR", Status: StatusActive, Balance: 100}, Book{Currency: "USD", Status: StatusActive}, 40, false, TransferRejected, CurrencyMismatch, 100, 0, 0},
		{"closed destination", Book{Currency: "USD", Status: StatusActive, Balance: 100}, Book{Currency: "USD", Status: StatusClosed}, 40, false, TransferRejected, AccountClosed, 100, 0, 0},
		{"frozen source", Book{Currency: "USD", Status: StatusFrozen, Balance: 100}, Book{Currency: "USD", Status: StatusActive}, 40, false, TransferRejected, AccountFrozen, 100, 0, 0},
		{"frozen destination receives", Book{Currency: "USD", Status: StatusActive, Balance: 100}, Book{Currency: "USD", Status: StatusFrozen}, 40, false, TransferPosted, "", 60, 0, 40},
		{"credit overflows", Book{Currency: "USD", Status: StatusActive, Balance: 100}, Book{Currency: "USD", Status: StatusActive, Balance: math.MaxInt64 - 10}, 40, false, TransferRejected, AmountInvalid, 100, 0, math.MaxInt64 - 10},
		{"debit overflows", Book{Currency: "USD", Status: StatusActive, AllowNegative: true, Balance: math.MinInt64 + 10}, Book{Currency: "USD", Status: StatusActive}, 40, false, TransferRejected, AmountInvalid, math.MinInt64 + 10, 0, 0},
		{"hold overflows", Book{Currency: "USD", Status: StatusActive, AllowNegative: true, Held: math.MaxInt64 - 10}, Book{Currency: "USD", Status: StatusActive}, 40, true, TransferRejected, AmountInvalid, 0, math.MaxInt64 - 10, 0},
	}
	for _, c := range cases {
		from, to := c.from, c.to
		tr := &Transfer{Transfer: events.Transfer{ID: "t", Amount: c.amount, Currency: "USD", Pending: c.pending}}
		Apply(tr, &from, &to, now)
		got := ""
		if tr.RejectReason != nil {
			got = *tr.RejectReason
		}
		if tr.Status != c.want || got != string(c.reason) || from.Balance != c.fromBalance || from.Held != c.fromHeld || to.Balance != c.toBalance {
			t.Errorf("%s: %s %q, from %d held %d, to %d; want %s %q, %d %d %d", c.name, tr.Status, got, from.Balance, from.Held,
				to.Balance, c.want, c.reason, c.fromBalance, c.fromHeld, c.toBalance)
		}
		if *tr.FromBalance != from.Balance || *tr.FromAvailable != from.Available() || *tr.ToBalance != to.Balance {
			t.Errorf("%s: balances after %d/%d/%d, accounts %d/%d/%d", c.name, *tr.FromBalance, *tr.FromAvailable, *tr.ToBalance,
				from.Balance, from.Available(), to.Balance)
		}
		if (tr.Status == TransferPosted) != (tr.PostedAt != nil) {
			t.Errorf("%s: posted_at %v with status %s", c.name, tr.PostedAt, tr.Status)
		}
	}
}

// The drift this package ends: hold resolution did its own arithmetic
// (from.balance -= amount; to.balance += amount) while a transfer used the
// overflow-safe helpers, so a capture whose credit overflowed the
// destination wrapped it around where the same amount as a transfer was
// refused. Both now go through the one posting rule: for every pair of
// balances, a capture is refused exactly when the same transfer is.
func TestCaptureAndTransferObeyTheSamePostingRule(t *testing.T) {
	limits := []int64{math.MinInt64, math.MinInt64 + 5, -100, 0, 100, math.MaxInt64 - 5, math.MaxInt64}
	for _, fb := range limits {
		for _, tb := range limits {
			for _, amount := range []int64{1, 10, math.MaxInt64} {
				from, to := book("a", fb, 0), book("b", tb, 0)
				from.AllowNegative, to.AllowNegative = true, true
				tr := &Transfer{Transfer: events.Transfer{ID: "t", Amount: amount, Currency: "USD"}}
				Apply(tr, from, to, now)
				transferRefused := tr.Status == TransferRejected && *tr.RejectReason == string(AmountInvalid)

				// The same amount captured from a hold on the same balances.
				hf, ht := book("a", fb, amount), book("b", tb, 0)
				hf.AllowNegative, ht.AllowNegative = true, true
				hold := &Transfer{Transfer: events.Transfer{ID: "h", Amount: amount, Currency: "USD", Status: TransferHeld, Pending: true}}
				err := ResolveHold(hold, hf, ht, amount, TransferCaptured, now)
				captureRefused := code(err) == AmountInvalid
				if err != nil && !captureRefused {
					t.Fatalf("capture %d from %d to %d: %v", amount, fb, tb, err)
				}
				if transferRefused != captureRefused {
					t.Errorf("%d from %d to %d: transfer refused %v, capture refused %v", amount, fb, tb, transferRefused, captureRefused)
				}
				if captureRefused && (hf.Balance != fb || hf.Held != amount || ht.Balance != tb || hold.Status != TransferHeld) {
					t.Errorf("a refused capture changed something: from %d held %d, to %d, hold %s", hf.Balance, hf.Held, ht.Balance, hold.Status)
				}
				if !captureRefused && (hf.Balance != from.Balance || ht.Balance != to.Balance || hf.Held != 0) {
					t.Errorf("capture ended at %d/%d, transfer at %d/%d", hf.Balance, ht.Balance, from.Balance, to.Balance)
				}
			}
		}
	}
}

func TestHoldsAreCapturedPartlyVoidedOrExpiredOnce(t *testing.T) {
	from, to := book("a", 1_000, 400), book("b", 0, 0)
	hold := &Transfer{Transfer: events.Transfer{ID: "h", Amount: 400, Currency: "USD", Status: TransferHeld, Pending: true}}
	if err := ResolveHold(hold, from, to, 401, TransferCaptured, now); code(err) != CaptureExceeds {
		t.Fatalf("over-capture: %v", err)
	}
	if err := ResolveHold(hold, from, to, 250, TransferCaptured, now); err != nil {
		t.Fatal(err)
	}
	if from.Balance != 750 || from.Held != 0 || to.Balance != 250 || hold.Status != TransferCaptured || hold.CapturedAmount != 250 ||
		hold.PostedAt == nil || *hold.FromAvailable != 750 {
		t.Fatalf("after capture: from %+v to %+v hold %+v", from, to, hold)
	}
	for _, status := range []string{TransferCaptured, TransferVoided, TransferExpired} {
		if err := ResolveHold(hold, from, to, 0, status, now); code(err) != TransferNotHeld {
			t.Errorf("%s after capture: %v", status, err)
		}
	}
	for _, status := range []string{TransferVoided, TransferExpired} {
		from, to := book("a", 1_000, 400), book("b", 0, 0)
		hold := &Transfer{Transfer: events.Transfer{ID: "h", Amount: 400, Currency: "USD", Status: TransferHeld, Pending: true}}
		if err := ResolveHold(hold, from, to, 0, status, now); err != nil {
			t.Fatal(err)
		}
		if from.Balance != 1_000 || from.Held != 0 || to.Balance != 0 || hold.Status != status || hold.PostedAt != nil {
			t.Errorf("%s: from %+v to %+v hold %+v", status, from, to, hold)
		}
	}
	closed := book("b", 0, 0)
	closed.Status = StatusClosed
	from = book("a", 1_000, 400)
	hold = &Transfer{Transfer: events.Transfer{ID: "h", Amount: 400, Currency: "USD", Status: TransferHeld, Pending: true}}
	if err := ResolveHold(hold, from, closed, 400, TransferCaptured, now); code(err) != AccountClosed || from.Held != 400 {
		t.Errorf("capture into a closed account: %v, held %d", err, from.Held)
	}
	if err := ResolveHold(hold, from, closed, 0, TransferVoided, now); err != nil || from.Held != 0 {
		t.Errorf("void towards a closed account: %v, held %d", err, from.Held)
	}
}

func TestClosingNeedsAnEmptyAccountAndIsFinal(t *testing.T) {
	a := &Account{Status: StatusActive, Balance: 5}
	if _, err := a.SetStatus(StatusClosed); code(err) != AccountNotEmpty || a.Status != StatusActive {
		t.Fatalf("close with a balance: %v", err)
	}
	a.Balance, a.Held = 0, 3
	if _, err := a.SetStatus(StatusClosed); code(err) != AccountNotEmpty {
		t.Fatalf("close with a hold: %v", err)
	}
	a.Held = 0
	if changed, err := a.SetStatus(StatusFrozen); !changed || err != nil {
		t.Fatalf("freeze: %v %v", changed, err)
	}
	if changed, err := a.SetStatus(StatusClosed); !changed || err != nil {
		t.Fatalf("close: %v %v", changed, err)
	}
	if changed, err := a.SetStatus(StatusClosed); changed || err != nil {
		t.Fatalf("close again: %v %v", changed, err)
	}
	if _, err := a.SetStatus(StatusActive); code(err) != apperr.Conflict || a.Status != StatusClosed {
		t.Fatalf("reopen: %v", err)
	}
}
