package api

import (
	"net/http"
	"sync"

	"github.com/billfn/billfn/functions/process-transaction/ledger"
	"github.com/billfn/billfn/shared/problem"
)

// statuses is this function's one table from the ledger's error codes to
// HTTP statuses (the codes every function shares are shared/problem's).
var statuses = map[problem.Code]struct {
	status int
	title  string
}{
	ledger.InsufficientFunds: {http.StatusUnprocessableEntity, "Insufficient funds"},
	ledger.AccountFrozen:     {http.StatusUnprocessableEntity, "Account frozen"},
	ledger.AccountClosed:     {http.StatusUnprocessableEntity, "Account closed"},
	ledger.CurrencyMismatch:  {http.StatusUnprocessableEntity, "Currency mismatch"},
	ledger.SameAccount:       {http.StatusUnprocessableEntity, "Same account"},
	ledger.AmountInvalid:     {http.StatusUnprocessableEntity, "Invalid amount"},
	ledger.AccountNotEmpty:   {http.StatusConflict, "Account not empty"},
	ledger.TransferNotHeld:   {http.StatusConflict, "Transfer is not an open hold"},
	ledger.CaptureExceeds:    {http.StatusUnprocessableEntity, "Capture exceeds the hold"},
	ledger.BatchRejected:     {http.StatusUnprocessableEntity, "Atomic batch rejected"},
}

var registerOnce sync.Once

// registerCodes hands the table to shared/problem, which still keeps one
// process-wide registry.
func registerCodes() {
	registerOnce.Do(func() {
		for code, s := range statuses {
			problem.Register(code, s.status, s.title)
		}
	})
}
