// Package api is capture-payment's HTTP surface: the route table, thin
// handlers (parse, call the payments domain, write), the event handlers'
// registration and the schedule's tick, and the table from the domain's
// problem codes to HTTP statuses.
package api

import (
	"net/http"

	"github.com/billfn/billfn/functions/capture-payment/payments"
	"github.com/billfn/billfn/functions/capture-payment/store"
	"github.com/billfn/billfn/shared/platform"
)

// API serves capture-payment.
type API struct {
	d       *platform.Deps
	svc     *payments.Service
	store   *store.Store
	sandbox Sandbox
	// idle remembers the payments wanted found terminal.
	idle *payments.Idle
}

// New returns the API of svc and registers its event handlers and tick on
// d's receiver.
func New(d *platform.Deps, svc *payments.Service, st *store.Store, sandbox Sandbox) *API {
	s := &API{d: d, svc: svc, store: st, sandbox: sandbox, idle: &payments.Idle{Max: 1 << 16}}
	svc.Refused = refused
	s.register(d.Events)
	return s
}

// Handler is the function's mux, each route with the function's code →
// status table (Statuses) installed (platform.Deps.Mux).
func (s *API) Handler() *http.ServeMux { return s.d.Mux(s.Routes(), Statuses) }

// db is where a single read runs outside any transaction.
func (s *API) db() payments.Tx { return s.store.Fresh().DB() }
