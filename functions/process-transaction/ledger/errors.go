package ledger

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/billfn/billfn/shared/apperr"
)

// Codes of the ledger's own errors. A transfer that breaks a rule answers
// with the code as its problem type; those decided against an account's
// state are stored as rejected transfers (with the code as the reason)
// for audit. The api package maps each code to its HTTP status.
const (
	InsufficientFunds apperr.Code = "insufficient_funds"
	AccountFrozen     apperr.Code = "account_frozen"
	AccountClosed     apperr.Code = "account_closed"
	CurrencyMismatch  apperr.Code = "currency_mismatch"
	SameAccount       apperr.Code = "same_account"
	AmountInvalid     apperr.Code = "amount_invalid"
	AccountNotEmpty   apperr.Code = "account_not_empty"
	TransferNotHeld   apperr.Code = "transfer_not_held"
	CaptureExceeds    apperr.Code = "capture_exceeds_hold"
	BatchRejected     apperr.Code = "batch_rejected"
	HoldNotYours      apperr.Code = "hold_not_yours"
	HoldExpired       apperr.Code = "hold_expired"
	AccountLimit      apperr.Code = "account_limit_reached"
)

// ErrAlreadyResolved: a hold is already in the state a resolution asks for
// (a duplicate request, which changes nothing).
var ErrAlreadyResolved = errors.New("hold already resolved")

// ErrNoSuchTransfer: an accepted transfer named by an event does not exist.
var ErrNoSuchTransfer = errors.New("no such transfer")

// ErrOtherAccounts: an event deciding an accepted transfer names other
// accounts than the transfer's (the group locked those, not the
// transfer's).
var ErrOtherAccounts = errors.New("the event names other accounts than the transfer's")

func reason(c apperr.Code) *string { s := string(c); return &s }

// Rejected is the error of a transfer a rule rejected: unlike a request
// refused before anything was stored, the attempt is kept, as TransferID.
type Rejected struct {
	Coded      *apperr.Error // the reason's code, with transfer_id for the problem document
	TransferID string
}

func (r *Rejected) Error() string { return r.Coded.Error() }

// Unwrap exposes the coded error: errors.As finds it, and problem
// documents show it with its transfer_id.
func (r *Rejected) Unwrap() error { return r.Coded }

// Rejection is the error a rejected transfer answers: its reason's code,
// and the id the attempt is kept under (transfer_id).
func Rejection(t *Transfer) error {
	code := apperr.Code(*t.RejectReason)
	detail := map[apperr.Code]string{
		InsufficientFunds: "the source account's available balance is lower than the amount",
		AccountFrozen:     "the source account is frozen",
		AccountClosed:     "an account of the transfer is closed",
		CurrencyMismatch:  "the transfer's currency differs from an account's currency",
		AmountInvalid:     "the amount would overflow an account's balance",
	}[code]
	if detail == "" {
		detail = strings.ReplaceAll(string(code), "_", " ")
	}
	e := apperr.New(code, "%s; the attempt is kept as transfer %s", detail, t.ID).With("transfer_id", t.ID)
	return &Rejected{Coded: e, TransferID: t.ID}
}

// IsRejection reports whether err is a decided rejection (the transfer is
// stored), as opposed to a request refused before anything was stored.
func IsRejection(err error) bool {
	var r *Rejected
	return errors.As(err, &r)
}

// ReusedKey is the error of an idempotency key already used for another
// transfer: an HTTP caller's Idempotency-Key, or for an event its id (scope
// "event:<source>"), which the message must name as such.
func ReusedKey(scope, key string) error {
	if src, ok := strings.CutPrefix(scope, "event:"); ok {
		return apperr.New(apperr.IdempotencyKeyReused,
			"event id %q from source %q was already used for a different transfer; a new event needs a new id", key, src)
	}
	return apperr.KeyReused("transfer")
}

// KeyInFlight: another request with the same key is being stored.
func KeyInFlight() error {
	return &apperr.Error{Code: apperr.IdempotencyInFlight, Detail: "a request with this Idempotency-Key is being processed; retry shortly",
		RetryAfter: time.Second}
}

func errNoSource() error      { return apperr.New(apperr.NotFound, "no such source account") }
func errNoDestination() error { return apperr.New(apperr.NotFound, "no such destination account") }
func errSameAccount() error {
	return apperr.New(SameAccount, "a transfer needs two different accounts")
}
func errReopen() error { return apperr.New(apperr.Conflict, "a closed account cannot be reopened") }

func errNotEmpty(balance, held int64) error {
	return apperr.New(AccountNotEmpty, "the account still holds %d (and %d in open holds); move it out before closing", balance, held).
		With("balance", balance).With("held", held)
}

func errNotHeld(t *Transfer) error {
	return apperr.New(TransferNotHeld, "transfer %s is %s, not an open hold", t.ID, t.Status).With("transfer_status", t.Status)
}

func errHoldNotYours() error {
	return apperr.New(HoldNotYours, "this hold was placed by another party (a service or an administrator); only its placer can capture or void it")
}

// HolderMayCapture is the rule "a frozen account refuses debits" for a
// hold: its holder may void it (the money stays), not capture it. A
// privileged placer (capture-payment settling a refund the gateway made,
// an administrator) still captures.
func HolderMayCapture(from *Book) error {
	if from.Status == StatusFrozen {
		return apperr.New(AccountFrozen, "the source account is frozen: its hold can be voided, not captured")
	}
	return nil
}

func errHoldExpired(t *Transfer) error {
	return apperr.New(HoldExpired, "hold %s expired at %s: it can be voided, not captured; the schedule tick releases it",
		t.ID, t.ExpiresAt.UTC().Format(time.RFC3339)).With("expires_at", t.ExpiresAt.UTC())
}

func errCaptureExceeds(amount, held int64) error {
	return apperr.New(CaptureExceeds, "capture of %d exceeds the hold of %d", amount, held).With("held", held)
}

// ErrAmountInvalid is the problem of a non-positive amount (field names the
// offending member, e.g. "amount" or "transfers/3/amount").
func ErrAmountInvalid(field string) error {
	return &apperr.Error{Code: AmountInvalid, Detail: "amount must be a positive integer in minor units",
		Errors: []apperr.FieldError{apperr.Field(field, "must be greater than 0")}}
}

func errOverflow() error {
	return apperr.New(AmountInvalid, "the amount would overflow an account's balance")
}

func errBatchItem() error {
	return apperr.New(BatchRejected, "not applied: another transfer of this atomic batch was rejected")
}

func errBatchRejection(t *Transfer) error {
	return apperr.New(apperr.Code(*t.RejectReason), "%s", fmt.Sprintf("%s (nothing of the atomic batch was applied)", *t.RejectReason))
}

// ErrNotFound is the problem of a resource that does not exist or that the
// caller may not see (the two answer alike).
func ErrNotFound(what string) error { return apperr.New(apperr.NotFound, "no such %s", what) }
