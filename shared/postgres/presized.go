package postgres

import (
	"database/sql/driver"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Presized returns a bulk statement's arguments, first and rest, with the first wrapped
// so that pgx encodes all of them into one buffer allocated at once, at
// about their encoded size (EncodedSize).
//
// pgx encodes a statement's parameters one after the other into one
// buffer that starts each statement at 256 bytes and grows by append: a
// group write over arrays of a thousand transfers and their events (about
// 1.5 MB) grows it some forty times, each growth a new allocation and a
// copy of everything before it, on fresh pages the kernel must fault in.
// Measured in the batch-transfers bench (2026-12-07, on 2 cores):
// process-transaction spent 22 % of its CPU in runtime.growslice under
// pgx's parameter encoding. With the first argument presized, the
// encoding allocates once.
//
// The wrapping takes effect on the connections of the pools Open and
// OpenWith return (their AfterConnect installs it); on any other
// connection the wrapped argument encodes as itself (a driver.Valuer), so
// a statement is correct either way.
func Presized[T any](first T, rest ...any) []any {
	out := make([]any, 0, 1+len(rest))
	out = append(out, presized[T]{v: first, n: EncodedSize(first) + EncodedSize(rest...)})
	return append(out, rest...)
}

// EncodedSize is about the size of args in PostgreSQL's binary format, as
// pgx encodes them: each array's 20-byte header (one dimension), and for
// each element its 4-byte length and its bytes (a NULL one, the length
// alone). Types it does not know count 16 bytes: the estimate only sizes
// a buffer, which grows past it if it must.
func EncodedSize(args ...any) int {
	n := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		case []string:
			n += 20 + 4*len(v)
			for _, s := range v {
				n += len(s)
			}
		case []*string:
			n += 20 + 4*len(v)
			for _, s := range v {
				if s != nil {
					n += len(*s)
				}
			}
		case [][]byte:
			n += 20 + 4*len(v)
			for _, b := range v {
				n += len(b)
			}
		case []int64:
			n += 20 + 12*len(v)
		case []bool:
			n += 20 + 5*len(v)
		case []time.Time:
			n += 20 + 12*len(v)
		case []*time.Time:
			n += 20 + 12*len(v)
		default:
			n += 16
		}
	}
	return n
}

// presized is an argument that reserves n bytes of the statement's
// parameter buffer before it encodes itself. Generic, so that each type of
// first argument is a type of its own: pgx memoizes a plan per type, and
// the plan it wraps is the one for T.
type presized[T any] struct {
	v T
	n int
}

func (p presized[T]) unwrap() (any, int) { return p.v, p.n }

// Value makes a presized argument encode as its value on a connection
// whose type map lacks the wrapper (driver.Valuer is pgx's last resort).
func (p presized[T]) Value() (driver.Value, error) { return p.v, nil }

// unwrapper is every presized[T].
type unwrapper interface{ unwrap() (any, int) }

// presizeOn installs the presized wrapper on a connection's type map,
// first: pgx tries its wrappers in order, and its own struct wrapper
// would otherwise take a presized for a composite value.
func presizeOn(m *pgtype.Map) {
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapPresized}, m.TryWrapEncodePlanFuncs...)
}

func tryWrapPresized(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	if p, ok := value.(unwrapper); ok {
		v, _ := p.unwrap()
		return &presizedPlan{}, v, true
	}
	return nil, nil, false
}

// presizedPlan grows the buffer, then encodes the value with the plan pgx
// chose for it. The plan is memoized per type, so the size travels with
// the value.
type presizedPlan struct{ next pgtype.EncodePlan }

func (p *presizedPlan) SetNext(next pgtype.EncodePlan) { p.next = next }

func (p *presizedPlan) Encode(value any, buf []byte) ([]byte, error) {
	v, n := value.(unwrapper).unwrap()
	return p.next.Encode(v, slices.Grow(buf, n))
}
