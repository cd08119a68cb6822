// Package legacystatus lets the deprecated apperr.Error.Status method ask
// shared/problem for a code's status without apperr importing net/http or
// problem. It goes away with that method.
package legacystatus

// Of returns the HTTP status of a code; shared/problem sets it at init.
var Of = func(code string) int { return 500 }
