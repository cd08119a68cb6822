package payments

// Access decides whether the caller may act on a payment (someone else's
// answers 404, as a missing one).
type Access struct {
	User string // "" for admin, service and the function itself
}

// Allows reports whether the caller may act on p.
func (a Access) Allows(p *Payment) bool { return a.User == "" || p.UserID == a.User }

// Anyone is the access of admins, services and the function itself.
var Anyone = Access{}
