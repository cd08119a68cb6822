// Package ledger is process-transaction's domain: accounts, transfers and
// holds, the posting rule that moves money between them, the holds state
// machine, and the errors a rule answers with, each with a stable code.
//
// It knows no HTTP and no SQL: the store loads accounts into Books, the
// rules here decide against them in memory, and the store writes what
// they decided. The same rule serves the group commit (Group) and hold
// resolution (ResolveHold), so the two cannot drift apart.
package ledger

import (
	"github.com/billfn/billfn/shared/events"
)

// Account statuses.
const (
	StatusActive = "active"
	StatusFrozen = "frozen"
	StatusClosed = "closed"
)

// Transfer statuses.
const (
	TransferPending  = "pending"  // accepted asynchronously, not decided yet
	TransferPosted   = "posted"   // money moved
	TransferRejected = "rejected" // a rule said no; nothing moved
	TransferHeld     = "held"     // a hold: funds reserved, not moved
	TransferCaptured = "captured" // a hold whose captured_amount moved
	TransferVoided   = "voided"   // a hold released by request
	TransferExpired  = "expired"  // a hold released by the sweep
)

// TransferStatuses lists every transfer status, for filters.
var TransferStatuses = []string{TransferPending, TransferPosted, TransferRejected, TransferHeld, TransferCaptured,
	TransferVoided, TransferExpired}

// SystemUser owns the system accounts.
const SystemUser = "00000000-0000-0000-0000-000000000000"

// Caller is who asks for a transfer: the rules need only whether it may act
// on a user's accounts (auth.Principal is one).
type Caller interface {
	CanAccess(userID string) bool
	Privileged() bool
}

// Account is an account as the API and its events show it
// (billfn.account.created/updated carry it as events.Account).
type Account events.Account

// SetStatus changes an account's status (an admin's decision). Closing
// needs a zero balance and no open hold; a closed account stays closed. It
// reports whether anything changed.
func (a *Account) SetStatus(status string) (changed bool, err error) {
	if a.Status == status {
		return false, nil
	}
	if a.Status == StatusClosed {
		return false, errReopen()
	}
	if status == StatusClosed && (a.Balance != 0 || a.Held != 0) {
		return false, errNotEmpty(a.Balance, a.Held)
	}
	a.Status = status
	return true, nil
}

// Transfer is a transfer as the API shows it: the events' Transfer (the
// data of billfn.transaction.* and billfn.hold.*) and the owners of its
// two accounts, which decide what a caller may see of it.
type Transfer struct {
	events.Transfer

	FromUser string `json:"-"`
	ToUser   string `json:"-"`
	// PlacedBy is who asked for the transfer, as its idempotency scope
	// says ("process-transaction:<subject>" over HTTP, "event:<source>"):
	// a hold is its placer's to resolve (MayResolve).
	PlacedBy string `json:"-"`
}

// MayResolve decides whether c may capture or void the hold t by c's
// word on the path: a party that may act for its source account, and,
// unless privileged, the one who placed it (scope is c's idempotency
// scope). A hold placed on a customer's account by someone else —
// capture-payment reserving a refund, an administrator — is not the
// customer's to release.
func (t *Transfer) MayResolve(c Caller, scope string) error {
	switch {
	case !c.CanAccess(t.FromUser):
		return ErrNotFound("transfer")
	case !c.Privileged() && t.PlacedBy != scope:
		return errHoldNotYours()
	}
	return nil
}

// MayResolveByEvent decides whether capture-payment's hold event (its
// capture or void requested through its outbox) may resolve t: only a
// refund's hold, which capture-payment places to reserve a refund and
// marks with the kind no customer or integrator may write
// (TransferRequest.ClaimsBillfnKind). A hold its holder placed through
// HTTP is not capture-payment's fact to settle: the event is refused
// (and parked by its handler).
func (t *Transfer) MayResolveByEvent() error {
	if !t.Pending || !metadataKind(t.Metadata, events.KindRefund) {
		return errHoldNotYours()
	}
	return nil
}

// ForCaller hides the balances of an account the caller does not own: a
// customer paying someone else learns nothing about their balance.
func (t Transfer) ForCaller(canSee func(userID string) bool) Transfer {
	if !canSee(t.FromUser) {
		t.FromBalance, t.FromAvailable = nil, nil
	}
	if !canSee(t.ToUser) {
		t.ToBalance, t.ToAvailable = nil, nil
	}
	return t
}

// VisibleTo reports whether c is a party to t (owns one of its accounts).
func (t *Transfer) VisibleTo(c Caller) bool { return c.CanAccess(t.FromUser) || c.CanAccess(t.ToUser) }

// snapshot records the balances of both accounts after t was decided.
func (t *Transfer) snapshot(from, to *Book) {
	fb, fa, tb, ta := from.Balance, from.Available(), to.Balance, to.Available()
	t.FromBalance, t.FromAvailable, t.ToBalance, t.ToAvailable = &fb, &fa, &tb, &ta
}
