package ledger

import (
	"time"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/money"
)

// Book is an account's balances while a decision runs: the store loads
// (and locks) it, the rules here change it, the store saves it.
type Book struct {
	ID, UserID, Number, Currency, Status string
	Balance, Held                        int64
	AllowNegative                        bool
	Changed                              int // transfers that changed it in this decision
}

// Available is what the account may still spend: balance − held.
func (b *Book) Available() int64 { return b.Balance - b.Held }

// The posting rule. Money moves only through post (and is reserved and
// released only through reserve and release), always with the
// overflow-safe money helpers: an amount that would overflow a balance is
// amount_invalid and changes neither account.

// post moves amount from → to. Each account's available (balance − held)
// must stay an int64 too: an account allowed a negative balance has no
// other floor.
func post(from, to *Book, amount int64) error {
	fb, err1 := money.Sub(from.Balance, amount)
	tb, err2 := money.Add(to.Balance, amount)
	_, err3 := money.Sub(fb, from.Held)
	_, err4 := money.Sub(tb, to.Held)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return errOverflow()
	}
	from.Balance, to.Balance = fb, tb
	from.Changed++
	to.Changed++
	return nil
}

// reserve holds amount of from's balance.
func reserve(from *Book, amount int64) error {
	held, err := money.Add(from.Held, amount)
	if err == nil {
		_, err = money.Sub(from.Balance, held) // available stays an int64
	}
	if err != nil {
		return errOverflow()
	}
	from.Held = held
	from.Changed++
	return nil
}

// release frees amount of from's holds.
func release(from *Book, amount int64) error {
	held, err := money.Sub(from.Held, amount)
	if err != nil || held < 0 {
		return errOverflow()
	}
	from.Held = held
	from.Changed++
	return nil
}

// Apply decides a new transfer t against the running balances and moves
// the money (or reserves it, for a hold). It sets t's status, reject
// reason, posting time and the balances after it. A rejection is an
// outcome stored with the transfer, not an error.
func Apply(t *Transfer, from, to *Book, now time.Time) {
	reject := func(code apperr.Code) { t.Status, t.RejectReason = TransferRejected, reason(code) }
	switch {
	case t.Currency != from.Currency || t.Currency != to.Currency:
		reject(CurrencyMismatch)
	case from.Status == StatusClosed || to.Status == StatusClosed:
		reject(AccountClosed)
	case from.Status == StatusFrozen:
		reject(AccountFrozen) // a frozen account still receives credits
	case !from.AllowNegative && from.Available() < t.Amount:
		reject(InsufficientFunds)
	case t.Pending:
		if reserve(from, t.Amount) != nil {
			reject(AmountInvalid)
		} else {
			t.Status = TransferHeld
		}
	default:
		if post(from, to, t.Amount) != nil {
			reject(AmountInvalid)
		} else {
			t.Status = TransferPosted
			t.PostedAt = &now
		}
	}
	t.snapshot(from, to)
}

// ResolveHold closes the open hold t: status captured moves amount (> 0)
// by the posting rule and releases the rest; voided and expired (amount 0)
// release everything. A hold's expires_at is a deadline whether or not the
// sweep has released it yet: from then on it can be voided or expire, not
// be captured. On an error neither account changes.
func ResolveHold(t *Transfer, from, to *Book, amount int64, status string, now time.Time) error {
	if err := CheckResolvable(t, amount); err != nil {
		return err
	}
	switch {
	case status == TransferCaptured && amount <= 0:
		return ErrAmountInvalid("amount")
	case status == TransferCaptured && t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return errHoldExpired(t)
	case status != TransferCaptured && (amount != 0 || (status != TransferVoided && status != TransferExpired)):
		return apperr.New(apperr.Internal, "a hold cannot become %s with %d captured", status, amount)
	case amount > 0 && to.Status == StatusClosed:
		return apperr.New(AccountClosed, "the destination account is closed")
	}
	f, d := *from, *to
	if err := release(&f, t.Amount); err != nil {
		return err
	}
	if amount > 0 {
		if err := post(&f, &d, amount); err != nil {
			return err
		}
		t.PostedAt = &now
	}
	*from, *to = f, d
	t.Status, t.CapturedAmount = status, amount
	t.snapshot(from, to)
	return nil
}

// CheckResolvable is the part of ResolveHold that needs no account: t must
// be an open hold and amount at most what it holds.
func CheckResolvable(t *Transfer, amount int64) error {
	if t.Status != TransferHeld {
		return errNotHeld(t)
	}
	if amount > t.Amount {
		return errCaptureExceeds(amount, t.Amount)
	}
	return nil
}
