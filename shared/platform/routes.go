package platform

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/billfn/billfn/shared/auth"
	"github.com/billfn/billfn/shared/pan"
	"github.com/billfn/billfn/shared/problem"
)

// Access is who may call a route. A function declares it once, in its
// route table; Mux enforces it, and each function's attack test reads the
// same table, so a route added later cannot be forgotten by either.
type Access string

// The kinds of access a route can have.
const (
	// Public routes take no bearer token: payment-gateway webhooks (they
	// verify their own signature) and static pages.
	Public Access = "public"
	// Customer routes take any valid token. A customer reaches only what it
	// owns; the handler decides that from the function's own data.
	Customer Access = "customer"
	// Privileged routes are for admin and service tokens (403 otherwise).
	Privileged Access = "privileged"
	// Admin routes are for admin tokens only (403 otherwise).
	Admin Access = "admin"
	// Delivery routes receive signed CloudEvent deliveries and schedule
	// ticks; the event receiver authenticates them.
	Delivery Access = "delivery"
)

// Class is a route's rate-limit class.
type Class string

// The rate-limit classes.
const (
	Read  Class = "read"  // GET and HEAD
	Write Class = "write" // other writes
	Money Class = "money" // writes that move money or charge a card
)

// Route is one entry of a function's route table.
type Route struct {
	// Pattern is a Go 1.22 ServeMux pattern, method included: "POST /payments/{id}/capture".
	Pattern string
	Access  Access
	// Class is the rate-limit class; empty means Read for GET and HEAD
	// and Write otherwise.
	Class Class
	// Refs names the kind of resource ("account", "payment", "invoice", …)
	// each reference the route takes names: a path wildcard as "{id}", a
	// query parameter as "?account_id", a JSON body member as
	// "account_id". The attack tests put another customer's resource of
	// that kind in each, and fail for a kind they have no victim of.
	Refs map[string]string
	// Handler serves the route, behind the access check and the rate limit.
	Handler http.Handler
}

// Method is the route's HTTP method.
func (r Route) Method() string {
	m, _, _ := strings.Cut(r.Pattern, " ")
	return m
}

// Path is the route's path pattern, without the method.
func (r Route) Path() string {
	_, p, _ := strings.Cut(r.Pattern, " ")
	return p
}

// RateClass is Class, or the class the method implies.
func (r Route) RateClass() Class {
	if r.Class != "" {
		return r.Class
	}
	if m := r.Method(); m == http.MethodGet || m == http.MethodHead {
		return Read
	}
	return Write
}

// Mux serves a route table: every route behind the access its entry
// declares and the rate limits of its class. A request meets, in order,
// the per-address bucket (before authentication, so floods of bad tokens
// are limited too), the access check, then the per-principal bucket of the
// route's class (see limit). It panics on an entry without an access or a
// handler: a programming error, found at start.
//
// statuses is the function's code → status table (nil: the shared codes
// only). It is installed around each route, inside the mux, so every
// problem a route writes is mapped by it while the server still sees the
// *http.ServeMux: unknown routes and wrong methods are answered with
// problem documents and requests are labelled by their route pattern.
func (d *Deps) Mux(routes []Route, statuses problem.Statuses) *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		if rt.Handler == nil {
			panic(fmt.Sprintf("platform: route %q has no handler", rt.Pattern))
		}
		handler := rt.Handler
		if m := rt.Method(); rt.Access != Public && rt.Access != Delivery && m != http.MethodGet && m != http.MethodHead {
			// A client's body never brings a card number in: refused before
			// the handler, its idempotency record or its decoder see it
			// (shared/pan, docs/security.md "Card numbers").
			handler = pan.Middleware(handler)
		}
		var authn func(http.Handler) http.Handler
		switch rt.Access {
		case Public, Delivery:
		case Customer:
			authn = d.Verifier.Middleware()
		case Privileged:
			authn = d.Verifier.Middleware(auth.RoleAdmin, auth.RoleService)
		case Admin:
			authn = d.Verifier.Middleware(auth.RoleAdmin)
		default:
			panic(fmt.Sprintf("platform: route %q has no access (%q)", rt.Pattern, rt.Access))
		}
		mux.Handle(rt.Pattern, statuses.Middleware(d.limit(rt, handler, authn)))
	}
	return mux
}
