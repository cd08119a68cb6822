package api

import (
	"net/http"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/problem"
)

// Statuses is this function's one table from the ledger's error codes to
// HTTP statuses (the codes every function shares are problem.Common's).
// Handler installs it in front of every route, the event receiver's too.
var Statuses = problem.Statuses{
	ledger.InsufficientFunds: {Status: http.StatusUnprocessableEntity, Title: "Insufficient funds"},
	ledger.AccountFrozen:     {Status: http.StatusUnprocessableEntity, Title: "Account frozen"},
	ledger.AccountClosed:     {Status: http.StatusUnprocessableEntity, Title: "Account closed"},
	ledger.CurrencyMismatch:  {Status: http.StatusUnprocessableEntity, Title: "Currency mismatch"},
	ledger.SameAccount:       {Status: http.StatusUnprocessableEntity, Title: "Same account"},
	ledger.AmountInvalid:     {Status: http.StatusUnprocessableEntity, Title: "Invalid amount"},
	ledger.AccountNotEmpty:   {Status: http.StatusConflict, Title: "Account not empty"},
	ledger.TransferNotHeld:   {Status: http.StatusConflict, Title: "Transfer is not an open hold"},
	ledger.HoldNotYours:      {Status: http.StatusForbidden, Title: "Hold placed by another party"},
	ledger.AccountLimit:      {Status: http.StatusUnprocessableEntity, Title: "Account limit reached"},
	ledger.HoldExpired:       {Status: http.StatusConflict, Title: "Hold expired"},
	ledger.CaptureExceeds:    {Status: http.StatusUnprocessableEntity, Title: "Capture exceeds the hold"},
	ledger.BatchRejected:     {Status: http.StatusUnprocessableEntity, Title: "Atomic batch rejected"},
}
