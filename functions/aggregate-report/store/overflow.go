package store

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/billfn/billfn/shared/apperr"
	"github.com/billfn/billfn/shared/money"
)

// CodeAmountOverflow is the problem of a report whose figure does not fit
// in int64 minor units. Every event's amount fits, but the rollups keep
// their sums in numeric columns (migration 00055: a row that refused the
// next fact let one rejected transfer of math.MaxInt64 have every later
// event of its row parked), and a report adds rows up — over days, over
// reasons, over gateways — so a row or a total of them may not fit. The
// report then says so (422) instead of wrapping to a wrong figure or
// failing with a 500.
const CodeAmountOverflow = apperr.AmountOverflow

// ErrAmountOverflow is the report's overflow problem.
func ErrAmountOverflow() *apperr.Error {
	return apperr.New(CodeAmountOverflow,
		"a figure of this report does not fit in 64-bit minor units; ask for a shorter period, one currency or one account")
}

// readErr turns Postgres's "bigint out of range" (a sum of rollups cast
// back to bigint) into the overflow problem; other errors are kept.
func readErr(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "22003" {
		e := ErrAmountOverflow()
		e.Err = err
		return e
	}
	return err
}

// total adds figures in Go with the overflow check of shared/money and
// keeps the first overflow.
type total struct{ err error }

func (t *total) add(dst *int64, v int64) {
	s, err := money.Add(*dst, v)
	if err != nil {
		if t.err == nil {
			t.err = ErrAmountOverflow()
		}
		return
	}
	*dst = s
}

func (t *total) sub(dst *int64, v int64) {
	s, err := money.Sub(*dst, v)
	if err != nil {
		if t.err == nil {
			t.err = ErrAmountOverflow()
		}
		return
	}
	*dst = s
}
