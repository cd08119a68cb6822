package invoicing

import (
	"github.com/billfn/billfn/shared/apperr"
)

// NotFound is the problem of a resource that does not exist, or that the
// caller may not see: the same answer, so nothing leaks.
func NotFound(what, id string) *apperr.Error {
	return apperr.New(apperr.NotFound, "no %s %s", what, id)
}
