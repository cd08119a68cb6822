package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/billfn/billfn/shared/money"
	"github.com/billfn/billfn/shared/pan"
	"github.com/billfn/billfn/shared/problem"
)

// Rejection codes: a transfer that breaks one of these rules answers 422
// with the code as its problem type. Those decided against an account's
// state are stored as rejected transfers (with the reason) for audit.
const (
	InsufficientFunds problem.Code = "insufficient_funds"
	AccountFrozen     problem.Code = "account_frozen"
	AccountClosed     problem.Code = "account_closed"
	CurrencyMismatch  problem.Code = "currency_mismatch"
	SameAccount       problem.Code = "same_account"
	AmountInvalid     problem.Code = "amount_invalid"
	AccountNotEmpty   problem.Code = "account_not_empty"
	TransferNotHeld   problem.Code = "transfer_not_held"
	CaptureExceeds    problem.Code = "capture_exceeds_hold"
	BatchRejected     problem.Code = "batch_rejected"
)

func init() {
	problem.Register(InsufficientFunds, http.StatusUnprocessableEntity, "Insufficient funds")
	problem.Register(AccountFrozen, http.StatusUnprocessableEntity, "Account frozen")
	problem.Register(AccountClosed, http.StatusUnprocessableEntity, "Account closed")
	problem.Register(CurrencyMismatch, http.StatusUnprocessableEntity, "Currency mismatch")
	problem.Register(SameAccount, http.StatusUnprocessableEntity, "Same account")
	problem.Register(AmountInvalid, http.StatusUnprocessableEntity, "Invalid amount")
	problem.Register(AccountNotEmpty, http.StatusConflict, "Account not empty")
	problem.Register(TransferNotHeld, http.StatusConflict, "Transfer is not an open hold")
	problem.Register(CaptureExceeds, http.StatusUnprocessableEntity, "Capture exceeds the hold")
	problem.Register(BatchRejected, http.StatusUnprocessableEntity, "Atomic batch rejected")
}

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

// SystemUser owns the system accounts.
const SystemUser = "00000000-0000-0000-0000-000000000000"

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

	fromUser, toUser string // owners, for rendering per caller
}

// forCaller hides the balances of an account the caller does not own: a
// customer paying someone else learns nothing about their balance.
func (t Transfer) forCaller(canSee func(userID string) bool) Transfer {
	if !canSee(t.fromUser) {
		t.FromBalance, t.FromAvailable = nil, nil
	}
	if !canSee(t.toUser) {
		t.ToBalance, t.ToAvailable = nil, nil
	}
	return t
}

// TransferRequest is the body of POST /transfers and the data of
// billfn.transaction.requested. An account is named by id or by number.
type TransferRequest struct {
	FromAccountID     string          `json:"from_account_id,omitempty"`
	ToAccountID       string          `json:"to_account_id,omitempty"`
	FromAccountNumber string          `json:"from_account_number,omitempty"`
	ToAccountNumber   string          `json:"to_account_number,omitempty"`
	Amount            int64           `json:"amount"`
	Currency          string          `json:"currency"`
	Description       string          `json:"description,omitempty"`
	ReferenceID       string          `json:"reference_id,omitempty"`
	Metadata          json.RawMessage `json:"metadata,omitempty"`
	Pending           bool            `json:"pending,omitempty"`
	ExpiresAt         *time.Time      `json:"expires_at,omitempty"`
}

var (
	numberRe = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{3,33}$`)
	systemRe = regexp.MustCompile(`^SYS-(EXTERNAL|CLEARING|REVENUE)-([A-Z]{3})$`)
)

const (
	maxDescription = 500
	maxReference   = 200
	maxMetadata    = 8 << 10
)

// validate checks the request's shape (path prefixes field pointers, e.g.
// "transfers/3/"). Rules that need no account — a non-positive amount, the
// same account on both sides — are reported as their rejection codes.
func (r *TransferRequest) validate(path string, now time.Time) error {
	// A card number in a free-text field is refused first, so no other
	// message quotes it; an event's request is checked here too.
	var c pan.Checker
	c.Texts(strings.TrimSuffix(path, "/"), "description", r.Description, "reference_id", r.ReferenceID,
		"from_account_number", r.FromAccountNumber, "to_account_number", r.ToAccountNumber)
	c.JSON(path+"metadata", r.Metadata)
	if err := c.Err(); err != nil {
		return err
	}
	var v problem.Validator
	v.Add(accountRef(path+"from_account", r.FromAccountID, r.FromAccountNumber)...)
	v.Add(accountRef(path+"to_account", r.ToAccountID, r.ToAccountNumber)...)
	cur, err := money.ParseCurrency(r.Currency)
	if err != nil {
		v.Add(problem.Field(path+"currency", "must be an ISO 4217 currency code such as USD"))
	} else {
		r.Currency = string(cur)
	}
	v.Check(utf8.RuneCountInString(r.Description) <= maxDescription, path+"description", "must be at most 500 characters")
	v.Check(utf8.RuneCountInString(r.ReferenceID) <= maxReference, path+"reference_id", "must be at most 200 characters")
	if len(r.Metadata) > 0 && !bytes.Equal(r.Metadata, []byte("null")) {
		trimmed := bytes.TrimSpace(r.Metadata)
		v.Check(len(trimmed) > 0 && trimmed[0] == '{', path+"metadata", "must be a JSON object")
		v.Check(len(r.Metadata) <= maxMetadata, path+"metadata", "must be at most 8 KiB")
	} else {
		r.Metadata = nil
	}
	if r.ExpiresAt != nil {
		v.Check(r.Pending, path+"expires_at", "only a hold (\"pending\": true) can expire")
		v.Check(r.ExpiresAt.After(now), path+"expires_at", "must be in the future")
	}
	if err := v.Err(); err != nil {
		return err
	}
	if r.Amount <= 0 {
		return &problem.Error{Code: AmountInvalid, Detail: "amount must be a positive integer in minor units",
			Errors: []problem.FieldError{problem.Field(path+"amount", "must be greater than 0")}}
	}
	// UUIDs are case-insensitive; accounts are looked up by their
	// canonical, lower-case id (accountRef let only that form through).
	r.FromAccountID, r.ToAccountID = strings.ToLower(r.FromAccountID), strings.ToLower(r.ToAccountID)
	if (r.FromAccountID != "" && r.FromAccountID == r.ToAccountID) ||
		(r.FromAccountNumber != "" && r.FromAccountNumber == r.ToAccountNumber) {
		return problem.New(SameAccount, "a transfer needs two different accounts")
	}
	return nil
}

func accountRef(name, id, number string) []problem.FieldError {
	switch {
	case id == "" && number == "":
		return []problem.FieldError{problem.Field(name+"_id", "required (or "+name+"_number)")}
	case id != "" && number != "":
		return []problem.FieldError{problem.Field(name+"_number", "give either "+name+"_id or "+name+"_number, not both")}
	case id != "":
		if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
			return []problem.FieldError{problem.Field(name+"_id", "must be a UUID")}
		}
	case !numberRe.MatchString(number):
		return []problem.FieldError{problem.Field(name+"_number", "must be 4-34 characters of A-Z, 0-9 and '-'")}
	}
	return nil
}

// isSystemNumber reports whether n names a system account, and its currency.
func isSystemNumber(n string) (currency string, ok bool) {
	m := systemRe.FindStringSubmatch(n)
	if m == nil {
		return "", false
	}
	if _, err := money.ParseCurrency(m[2]); err != nil {
		return "", false
	}
	return m[2], true
}

// reason returns a pointer to a rejection reason.
func reason(c problem.Code) *string { s := string(c); return &s }

// rejection is the problem a rejected transfer answers.
func rejection(t *Transfer) error {
	code := problem.Code(*t.RejectReason)
	detail := map[problem.Code]string{
		InsufficientFunds: "the source account's available balance is lower than the amount",
		AccountFrozen:     "the source account is frozen",
		AccountClosed:     "an account of the transfer is closed",
		CurrencyMismatch:  "the transfer's currency differs from an account's currency",
		AmountInvalid:     "the amount would overflow an account's balance",
	}[code]
	if detail == "" {
		detail = strings.ReplaceAll(string(code), "_", " ")
	}
	return problem.New(code, "%s; the attempt is kept as transfer %s", detail, t.ID).With("transfer_id", t.ID)
}
