// Package api is process-transaction's edge: the route table, thin HTTP
// handlers (parse, call the ledger through the store, write), the event
// handlers beside them, and the one table from the ledger's error codes to
// HTTP statuses.
package api

import (
	"context"
	"net/http"
	"time"

	"github.com/billfn/billfn/functions/process-transaction/store"
	"github.com/billfn/billfn/shared/events"
	"github.com/billfn/billfn/shared/platform"
	"github.com/billfn/billfn/shared/redis"
)

// Service is process-transaction: a double-entry ledger over HTTP and events.
type Service struct {
	d      *platform.Deps
	now    func() time.Time
	store  *store.Store
	commit *store.Committer
	cache  *redis.Cache
	// AccountsPerCustomer bounds the accounts a customer opens itself
	// (ACCOUNTS_PER_CUSTOMER_MAX; 0: no bound); an administrator or a
	// service may open more for it.
	AccountsPerCustomer int
}

// DefaultAccountsPerCustomer is ACCOUNTS_PER_CUSTOMER_MAX's default.
const DefaultAccountsPerCustomer = 1000

// New wires the service on d and subscribes its event handlers; now is its
// clock (injectable for hold expiry).
func New(d *platform.Deps, now func() time.Time) *Service {
	s := &Service{d: d, now: now, store: store.New(d.Pool, d.Publisher.Writer()), cache: d.Cache("accounts"),
		AccountsPerCustomer: DefaultAccountsPerCustomer}
	s.commit = store.NewCommitter(d.Pool, d.Publisher.Writer(), now, s.changed)
	d.Collect(store.Collectors()...)
	d.Events.OnSelf(events.TypeTransactionRequested, s.onRequested)
	d.Events.SelfBatch = s.onRequestedBatch
	d.Events.OnSelf(events.TypeHoldCaptureRequested, s.onHoldResolve)
	d.Events.OnSelf(events.TypeHoldVoidRequested, s.onHoldResolve)
	d.Events.Tick = s.Tick
	return s
}

// Committer is the group commit, for its configuration before Start.
func (s *Service) Committer() *store.Committer { return s.commit }

// Cache is the account cache (tests look at its keys).
func (s *Service) Cache() *redis.Cache { return s.cache }

// Start runs the group committers. They stop after the server has drained
// (a closer), so requests still in flight at SIGTERM get their answer.
func (s *Service) Start() {
	ctx, stop := context.WithCancel(context.Background())
	for i := 0; i < max(1, s.commit.Workers); i++ {
		go s.commit.Run(ctx)
	}
	s.d.OnClose(func(context.Context) { stop() })
}

// changed runs after every commit that changed accounts: their cached
// copies go before any caller hears back, and the outbox is published.
func (s *Service) changed(accounts []string) {
	s.cache.Invalidate(context.Background(), accounts...)
	s.d.Publisher.Kick()
}

// Handler serves the route table behind the platform's access checks, with
// the function's code → status table (Statuses) installed in each route.
func (s *Service) Handler() *http.ServeMux { return s.d.Mux(s.Routes(), Statuses) }

// Routes is process-transaction's HTTP surface: who may call what
// (docs/process-transaction.md carries the same table), the rate-limit
// class, and the resources each route names, which the attack test
// substitutes with another customer's.
func (s *Service) Routes() []platform.Route {
	idem := s.d.Idempotency.Middleware(false)
	idemRequired := s.d.Idempotency.Middleware(true)
	h := func(f http.HandlerFunc) http.Handler { return f }
	account := map[string]string{"{id}": "account"}
	transfer := func(prefix string) map[string]string {
		return map[string]string{
			prefix + "from_account_id": "account", prefix + "to_account_id": "account",
			prefix + "from_account_number": "account-number", prefix + "to_account_number": "account-number",
		}
	}
	return []platform.Route{
		{Pattern: "POST /accounts", Access: platform.Customer, Refs: map[string]string{"user_id": "user"}, Handler: idem(h(s.createAccount))},
		{Pattern: "GET /accounts", Access: platform.Customer, Refs: map[string]string{"?user_id": "user"}, Handler: h(s.listAccounts)},
		{Pattern: "GET /accounts/{id}", Access: platform.Customer, Refs: account, Handler: h(s.getAccount)},
		{Pattern: "PATCH /accounts/{id}", Access: platform.Admin, Refs: account, Handler: idem(h(s.patchAccount))},
		{Pattern: "GET /accounts/{id}/transactions", Access: platform.Customer, Refs: account, Handler: h(s.history)},
		// POST /transfers keeps its idempotency inside the group commit:
		// the key is stored on the transfer row, with no extra round trip.
		{Pattern: "POST /transfers", Access: platform.Customer, Class: platform.Money, Refs: transfer(""), Handler: h(s.createTransfer)},
		{Pattern: "POST /transfers/batch", Access: platform.Customer, Class: platform.Money, Refs: transfer("transfers/0/"), Handler: idemRequired(h(s.batch))},
		{Pattern: "GET /transfers/{id}", Access: platform.Customer, Refs: map[string]string{"{id}": "transfer"}, Handler: h(s.getTransfer)},
		{Pattern: "POST /transfers/{id}/capture", Access: platform.Customer, Class: platform.Money, Refs: map[string]string{"{id}": "hold"}, Handler: idemRequired(h(s.capture))},
		{Pattern: "POST /transfers/{id}/void", Access: platform.Customer, Class: platform.Money, Refs: map[string]string{"{id}": "hold"}, Handler: idemRequired(h(s.void))},
		{Pattern: "POST /{$}", Access: platform.Delivery, Refs: map[string]string{}, Handler: s.d.Events},
	}
}
