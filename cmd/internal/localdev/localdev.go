// Package localdev holds the fixed identities of the local stack, shared by
// the banner of make run (cmd/stack) and make token (cmd/devtoken), so the
// token either one prints names the same caller. Idempotency keys are scoped
// to the caller (function + JWT subject): a retry by hand with the same key
// replays only when the token's subject is the same, which is why these are
// constants and not random per call.
package localdev

import "github.com/billfn/billfn/shared/auth"

// AdminSubject is the user id of the dev admin token: the banner's and
// make token's (ROLE=admin, the default).
const AdminSubject = "00000000-0000-4000-8000-00000000ad01"

// ServiceSubject and CustomerSubject are make token's subjects for the
// other roles when SUB= is not given.
const (
	ServiceSubject  = "00000000-0000-4000-8000-000000005e01"
	CustomerSubject = "00000000-0000-4000-8000-00000000c001"
)

// Subject is the default subject of a dev token of role.
func Subject(role auth.Role) string {
	switch role {
	case auth.RoleService:
		return ServiceSubject
	case auth.RoleCustomer:
		return CustomerSubject
	}
	return AdminSubject
}
