package payments

import (
	"context"
	"time"

	"github.com/billfn/billfn/shared/accounts"
	"github.com/billfn/billfn/shared/auth"
)

// source is the function the events of payments come from.
const source = "capture-payment"

// Service is capture-payment's use cases: payments, refunds and saved
// methods through the gateways, the invoice collection and dunning the
// events ask for, and the reconciliation of what waited on a gateway.
type Service struct {
	Store    Store
	Gateways map[string]Gateway
	Routing  Routes
	// Accounts is the read model of the accounts payments charge and pay
	// into: who owns each, its currency and status. Ownership is decided
	// from it, never from what the caller says.
	Accounts Accounts
	// Invoices reads an invoice whose event has not arrived (nil: none).
	Invoices InvoiceSource
	// Ledger reserves a refund's amount before the gateway is asked.
	Ledger Ledger
	// Now is the clock (Postgres keeps microseconds: so does it).
	Now func() time.Time
	// GatewayTimeout bounds one gateway call, retries included.
	GatewayTimeout time.Duration
	// ReconcileAfter is how long a payment may wait on a gateway before
	// reconciliation asks the gateway for the truth.
	ReconcileAfter time.Duration
	// AuthorizationTTL is how long an uncaptured authorization lives.
	AuthorizationTTL time.Duration
	// Kick tells the outbox publisher that events were written (nil: none).
	Kick func()
	// Refused reports whether err refuses the request (the api's table
	// maps its code to a 4xx) rather than failing it: collection takes a
	// refusal as an outcome, and a refused reservation removes its refund.
	Refused func(error) bool
	// Observe times a gateway call (nil: not timed).
	Observe func(gateway, op string, start time.Time, st Status, err error)
}

// Accounts is the read model of accounts (shared/accounts' Directory).
type Accounts interface {
	// For returns the facts of account id for pr: a 404 problem for a
	// malformed id, an unknown account, or one pr does not own.
	For(ctx context.Context, pr auth.Principal, id string) (accounts.Facts, error)
	// Lookup returns the facts of account id, whoever asks.
	Lookup(ctx context.Context, id string) (accounts.Facts, error)
}

// InvoiceSource reads an invoice from generate-invoice.
type InvoiceSource interface {
	Invoice(ctx context.Context, id string) (InvoiceFacts, error)
}

// Ledger is process-transaction's side of a refund.
type Ledger interface {
	// Reserve places the refund's hold and returns its transfer id. A
	// refusal by the ledger is a 4xx problem (insufficient_funds, or
	// refund_not_reservable); anything else is an error the caller
	// answers with a 503.
	Reserve(ctx context.Context, h Hold) (string, error)
}

func (s *Service) now() time.Time { return s.Now() }

func (s *Service) kick() {
	if s.Kick != nil {
		s.Kick()
	}
}

func (s *Service) observe(gateway, op string, start time.Time, st Status, err error) {
	if s.Observe != nil {
		s.Observe(gateway, op, start, st, err)
	}
}

// db is where a single statement runs outside any transaction.
func (s *Service) db() Tx { return s.Store.Fresh().DB() }
