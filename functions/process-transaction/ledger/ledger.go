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
	"encoding/json"
	"time"
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

// Account is an account as the API shows it.
type Account struct {
	ID            string          `json:"id"`
	UserID        string          `json:"user_id"`
	AccountNumber string          `json:"account_number"`
	Currency      string          `json:"currency"`
	Balance       int64           `json:"balance"`   // posted: credits − debits
	Available     int64           `json:"available"` // balance − held
	Held          int64           `json:"held"`      // open holds
	AllowNegative bool            `json:"allow_negative"`
	Status        string          `json:"status"`
	Version       int64           `json:"version"`
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
}

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

// Transfer is a transfer as the API and the events show it.
type Transfer struct {
	ID             string          `json:"id"`
	FromAccountID  string          `json:"from_account_id"`
	ToAccountID    string          `json:"to_account_id"`
	Amount         int64           `json:"amount"`
	Currency       string          `json:"currency"`
	Status         string          `json:"status"`
	RejectReason   *string         `json:"reject_reason"`
	Description    string          `json:"description"`
	ReferenceID    string          `json:"reference_id"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	Pending        bool            `json:"pending"`
	CapturedAmount int64           `json:"captured_amount"`
	ExpiresAt      *time.Time      `json:"expires_at"`
	CreatedAt      time.Time       `json:"created_at"`
	PostedAt       *time.Time      `json:"posted_at"`
	FromBalance    *int64          `json:"from_balance,omitempty"`
	FromAvailable  *int64          `json:"from_available,omitempty"`
	ToBalance      *int64          `json:"to_balance,omitempty"`
	ToAvailable    *int64          `json:"to_available,omitempty"`

	// Owners of the two accounts, for rendering per caller; never shown.
	FromUser string `json:"-"`
	ToUser   string `json:"-"`
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

// Requested is the data of billfn.transaction.requested: a transfer
// request, and for a transfer accepted with 202 the id that decides it.
type Requested struct {
	TransferRequest
	TransferID string `json:"transfer_id,omitempty"`
}

// HoldResolution is the data of billfn.hold.capture_requested and
// billfn.hold.void_requested.
type HoldResolution struct {
	TransferID string `json:"transfer_id"`
	Amount     int64  `json:"amount"` // capture only; 0 = the whole hold
}
