package httpx

import (
	"errors"
	"net/http"

	"github.com/billfn/billfn/shared/ids"
	"github.com/billfn/billfn/shared/problem"
)

// Paging reads a list endpoint's paging parameters: "limit" (def when
// absent, 1..max, see Limit) and "cursor" (a cursor this endpoint returned,
// decoded into pos; see DecodeCursor). after reports whether a cursor was
// given. Both parameters are checked and a bad one of each is reported in
// one validation_failed problem.
func Paging(r *http.Request, def, max int, pos any) (limit int, after bool, err error) {
	var v problem.Validator
	limit, lerr := Limit(r, def, max)
	after, cerr := DecodeCursor(r, pos)
	for _, e := range []error{lerr, cerr} {
		var pe *problem.Error
		if errors.As(e, &pe) {
			v.Add(pe.Errors...)
		}
	}
	if err := v.Err(); err != nil {
		return 0, false, err
	}
	return limit, after, nil
}

// IDCursor is the keyset position of a list ordered by id: Page(rows,
// limit, func(x T) any { return IDCursor{ID: x.ID} }).
type IDCursor struct {
	ID string `json:"id"`
}

// PagingByID is Paging for a list ordered by id: afterID is the id the
// cursor names ("" without a cursor), checked by the id rule (shared/ids)
// and in canonical form.
func PagingByID(r *http.Request, def, max int) (limit int, afterID string, err error) {
	var c IDCursor
	limit, after, err := Paging(r, def, max, &c)
	if err != nil || !after {
		return limit, "", err
	}
	id, err := CursorID(c.ID)
	if err != nil {
		return 0, "", err
	}
	return limit, id, nil
}

// CursorID checks the id a decoded cursor names by the id rule
// (shared/ids) and returns it in canonical form: a cursor is client
// input, and an id Postgres cannot cast would be a 500.
func CursorID(id string) (string, error) {
	c, ok := ids.Canonical(id)
	if !ok {
		return "", problem.Invalid(problem.Param("cursor", "is not a cursor this endpoint returned"))
	}
	return c, nil
}
