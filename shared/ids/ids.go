// Package ids is billfn's one rule for ids: every resource id is a UUID,
// written in its 36-character hyphenated form. Upper case is read and
// compared in lower case (the canonical form Postgres returns); the other
// forms uuid.Parse would take (braces, urn:uuid:, no hyphens) are not ids,
// so one resource has one spelling in URLs, events and logs.
package ids

import "github.com/google/uuid"

// Len is the length of an id.
const Len = 36

// Valid reports whether s is an id.
func Valid(s string) bool {
	_, ok := Canonical(s)
	return ok
}

// Canonical returns s in canonical (lower-case) form and whether s is an
// id; a caller compares and stores the canonical form.
func Canonical(s string) (string, bool) {
	if len(s) != Len {
		return "", false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// New returns a new id: a UUIDv7, so ids sort by creation time.
func New() string { return uuid.Must(uuid.NewV7()).String() }
